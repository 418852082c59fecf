"""Logging set-up for the processes imagegate starts. Secrets never reach a log line: keys are
logged by id, upstream API keys not at all.

Two formats (``log_format``):

    text  ``TIME LEVEL LOGGER: MESSAGE``, for people
    json  one JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
          ``message``, the ``FIELDS`` a line carries (``task_id``, ``route``, ``model``,
          ``delivery_id``), and ``exception`` with the traceback when there is one

A line carries a field when it is logged with it as an extra, ``extra=task_fields(task)``
or ``extra={"delivery_id": ...}``; the text format leaves the fields out (the messages name
what they are about). The ASGI server's own lines take the same format (``granian_logging``).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imagegate.tasks import Task

__all__ = ["FIELDS", "JsonFormatter", "configure_logging", "granian_logging", "task_fields"]

FIELDS = ("task_id", "route", "model", "delivery_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(log_format: str = "text") -> logging.Formatter:
    return JsonFormatter() if log_format.lower() == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str = "info", log_format: str = "text") -> None:
    """Send imagegate's log lines to stderr at ``level``, in ``log_format`` (text or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger("imagegate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def granian_logging(log_format: str = "text") -> dict[str, Any] | None:
    """The ``logging.config`` dictionary for the ASGI server's own loggers in ``log_format``:
    None (its own text format) for text; for json, its lines through ``JsonFormatter`` on
    stderr, as imagegate's are."""
    if log_format.lower() != "json":
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json",
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"console": handler, "access": handler},
        "loggers": {"_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
                    "granian.access": {"handlers": ["access"], "level": "INFO",
                                       "propagate": False}},
    }


def task_fields(task: Task) -> dict[str, str]:
    """The fields of a log line about ``task``: ``extra=task_fields(task)``."""
    return {"task_id": task.id, "model": task.model}
