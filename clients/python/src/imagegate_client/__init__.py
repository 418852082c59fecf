"""The Python client of imagegate's task API, and of any APIXO-style one (docs/sdk.md).

    from imagegate_client import Client

    with Client("http://127.0.0.1:8000", "ig_...") as client:
        generation = client.generate("a fox in watercolor", aspect_ratio="16:9")
        generation.images[0].save(".")

Inside: ``wire_models.py`` holds the API's JSON as msgspec structs (shared with the service),
``wire.py`` turns requests and answers into them and back, and ``records.py`` holds what the
client hands its caller, apart from the wire.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    Conflict,
    ImagegateError,
    InsufficientBalance,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    TaskFailed,
    WaitTimeout,
)
from .images import image_data_uri
from .records import (
    Cancellation,
    GeneratedImage,
    Generation,
    ModelInfo,
    Progress,
    TaskPage,
    TaskStatus,
)
from .webhooks import ReplayGuard, WebhookVerificationError, verify_webhook

if TYPE_CHECKING:
    from .async_client import AsyncClient
    from .client import Client

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "Cancellation",
    "Client",
    "Conflict",
    "GeneratedImage",
    "Generation",
    "ImagegateError",
    "InsufficientBalance",
    "InvalidRequest",
    "ModelInfo",
    "NotFound",
    "PermissionDenied",
    "Progress",
    "RateLimited",
    "ReplayGuard",
    "ServerError",
    "TaskFailed",
    "TaskPage",
    "TaskStatus",
    "WaitTimeout",
    "WebhookVerificationError",
    "image_data_uri",
    "verify_webhook",
]
__version__ = "0.1.0"

# The clients are imported on first use, so that a webhook receiver (and the service, which
# verifies with this package's webhooks.py) loads the standard library only, not httpx.
_LAZY = {"Client": ".client", "AsyncClient": ".async_client"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
