"""Logging set-up for the processes imagegate starts. Secrets never reach a log line: keys are
logged by id, upstream API keys not at all."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("imagegate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
