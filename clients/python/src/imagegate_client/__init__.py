"""The Python client of imagegate's task API, and of any APIXO-style one (docs/sdk.md).

    from imagegate_client import Client

    with Client("http://127.0.0.1:8000", "ig_...") as client:
        generation = client.generate("a fox in watercolor", aspect_ratio="16:9")
        generation.images[0].save(".")
"""

from __future__ import annotations

from .async_client import AsyncClient
from .client import Client
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
