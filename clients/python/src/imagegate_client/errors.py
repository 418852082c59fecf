"""Every exception the client raises, in one hierarchy.

    ImagegateError                      anything this package raises on purpose
    ├── APIError                        the server answered an error (.status, .field, .body)
    │   ├── InvalidRequest              400, 413, 415, 422: the request breaks a rule (.field)
    │   ├── AuthenticationError         401: missing, unknown or revoked API key
    │   ├── InsufficientBalance         402: the account cannot pay for the task
    │   ├── PermissionDenied            403: the key may not use this model
    │   ├── NotFound                    404: unknown model or task
    │   ├── Conflict                    409: task already ended; Idempotency-Key reused
    │   ├── RateLimited                 429, after the retries (.retry_after)
    │   └── ServerError                 5xx, after the retries
    ├── APIConnectionError              no usable answer (connect, read, timeout, a body that
    │                                   cannot be decoded, endless redirects), after the retries
    ├── TaskFailed                      the task ended failed (.task, .fail_code, .fail_msg)
    ├── WaitTimeout                     the task did not end within the wait's timeout
    └── WebhookVerificationError        a webhook delivery is not authentic or fresh
                                        (defined in webhooks.py, which a receiver imports)

Every one carries ``task_id``: the task it leaves behind, when a task had been submitted (an
error in ``wait``, or in ``generate`` after its submit, names the task, which may still end);
None otherwise.

httpx's exceptions never leave the client: they are translated where they enter (the shells in
client.py and async_client.py) into ``APIConnectionError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .records import TaskStatus

__all__ = ["APIConnectionError", "APIError", "AuthenticationError", "Conflict",
           "ImagegateError", "InsufficientBalance", "InvalidRequest", "NotFound",
           "PermissionDenied", "RateLimited", "ServerError", "TaskFailed", "WaitTimeout"]


class ImagegateError(Exception):
    """Base of every error this client raises on purpose; ``task_id`` names the task it leaves
    behind, when one had been submitted."""

    task_id: str | None = None


class APIError(ImagegateError):
    """The server answered with an error status; ``status`` is the HTTP status, ``field`` the
    request field at fault when the server named one, ``body`` the decoded answer (JSON, or the
    text when it was not JSON)."""

    def __init__(self, message: str, *, status: int, field: str | None = None,
                 body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
        self.body = body

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        return f"HTTP {self.status}: {self.message}{where}"


class InvalidRequest(APIError):
    """The request breaks a rule of the contract (400, 413, 415, 422); ``field`` names it."""


class AuthenticationError(APIError):
    """The API key is missing, malformed, unknown or revoked (401)."""


class InsufficientBalance(APIError):
    """The account cannot pay for the task (402); nothing was stored or charged."""


class PermissionDenied(APIError):
    """The key may not use this model (403)."""


class NotFound(APIError):
    """Unknown model, unknown task, or a task of another account (404)."""


class Conflict(APIError):
    """The request conflicts with the task's state or an Idempotency-Key's first use (409)."""


class RateLimited(APIError):
    """Too many requests (429), still so after the retries; ``retry_after`` in seconds."""

    def __init__(self, message: str, *, status: int = 429, field: str | None = None,
                 body: Any = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status, field=field, body=body)
        self.retry_after = retry_after


class ServerError(APIError):
    """The server failed (5xx), still so after the retries."""


class APIConnectionError(ImagegateError):
    """No answer came back (connection refused or cut, timeout), still so after the retries.
    ``sent``: False when the request surely never reached the server (it could not connect).
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class TaskFailed(ImagegateError):
    """The task ended failed; ``task`` is its final status."""

    def __init__(self, task: TaskStatus) -> None:
        super().__init__(f"task {task.task_id} failed: {task.fail_code}: {task.fail_msg}")
        self.task = task
        self.task_id = task.task_id

    @property
    def fail_code(self) -> str | None:
        return self.task.fail_code

    @property
    def fail_msg(self) -> str | None:
        return self.task.fail_msg


class WaitTimeout(ImagegateError):
    """The task had not ended when the wait's timeout (seconds) ran out; it may still end."""

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(f"task {task_id} did not end within {timeout:g} s")
        self.task_id = task_id
        self.timeout = timeout
