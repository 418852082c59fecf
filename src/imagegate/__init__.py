"""imagegate: a self-hostable image-generation task service, wire-compatible with APIXO's task
API. The server runs with ``imagegate serve``; this top-level package only offers what a
receiver of imagegate's callbacks needs, and imports nothing beyond the standard library."""

from __future__ import annotations

from importlib import metadata

from imagegate.signing import ReplayGuard, WebhookVerificationError, verify

try:
    __version__ = metadata.version("imagegate")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0.0.0"

__all__ = ["ReplayGuard", "WebhookVerificationError", "__version__", "verify"]
