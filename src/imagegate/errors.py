"""Every error imagegate raises on purpose.

    ImagegateError
    ├── RequestError            answered to the client with an HTTP status (docs/contract.md §8)
    │   ├── InvalidRequest      400, names the field at fault
    │   ├── Unauthorized        401
    │   ├── PaymentRequired     402
    │   ├── Forbidden           403
    │   ├── NotFound            404
    │   ├── Conflict            409, the task's state refuses the request
    │   ├── Gone                410
    │   ├── PayloadTooLarge     413
    │   ├── UnsupportedMedia    415
    │   ├── TooManyRequests     429, carries retry_after seconds
    │   └── NotReady            503
    ├── TaskError               ends (or retries) a task; carries a failCode (docs/contract.md §7)
    │   ├── RouteError          raised by a route
    │   │   └── RouteUnavailable  the route's upstream no longer serves its model
    │   └── ReferenceImageError a reference image could not be fetched or decoded
    ├── StoreUnavailable        the database cannot be written (or read) now: 503 to a client
    ├── StorageFull             no space left for result files
    ├── StorageUnavailable      the result storage (an S3 bucket) cannot be reached or refuses
    └── ConfigError             bad settings, found at start

Foreign exceptions are translated where they enter (``raise RouteError(...) from exc``).
The one place that catches broadly is the worker's task boundary.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "Conflict",
    "FailCode",
    "Forbidden",
    "Gone",
    "ImagegateError",
    "InvalidRequest",
    "NotFound",
    "NotReady",
    "PayloadTooLarge",
    "PaymentRequired",
    "ReferenceImageError",
    "RequestError",
    "RouteError",
    "RouteUnavailable",
    "StorageFull",
    "StorageUnavailable",
    "StoreUnavailable",
    "TaskError",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMedia",
    "quoted",
]


def quoted(value: str, limit: int = 64) -> str:
    """A value a client sent, as an error message repeats it: quoted with control characters
    escaped (``repr``), cut to ``limit`` characters."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."


class FailCode:
    """The failCode values imagegate emits (docs/contract.md §7)."""

    PROMPT_INVALID = "PromptInvalid"
    SENSITIVE_CONTENT = "SensitiveContent"
    IMAGE_FORMAT_INCORRECT = "ImageFormatIncorrect"
    MISSING_PARAMETER = "MissingParameter"
    RATE_LIMITED = "RateLimited"
    TIMEOUT = "Timeout"
    UNKNOWN = "Unknown error"
    CANCELED = "Canceled"

    ALL = (
        PROMPT_INVALID,
        SENSITIVE_CONTENT,
        IMAGE_FORMAT_INCORRECT,
        MISSING_PARAMETER,
        RATE_LIMITED,
        TIMEOUT,
        UNKNOWN,
    )
    # Codes for which trying again (same route later, or another route) may help.
    RETRYABLE = frozenset({RATE_LIMITED, TIMEOUT, UNKNOWN})


class ImagegateError(Exception):
    """Base of every error imagegate raises on purpose."""


class RequestError(ImagegateError):
    """A request the service answers with a non-2xx status; ``reason`` names the refusal in
    metrics (``imagegate_submits_total``)."""

    status = 400
    default_message = "Bad request"
    reason = "bad_request"

    def __init__(self, error: str | None = None, *, field: str | None = None) -> None:
        self.error = error or self.default_message
        self.field = field
        super().__init__(self.error)


class InvalidRequest(RequestError):
    status = 400
    default_message = "Invalid request"
    reason = "invalid_request"


class Unauthorized(RequestError):
    status = 401
    default_message = "Missing or invalid API key"
    reason = "unauthorized"


class PaymentRequired(RequestError):
    status = 402
    default_message = "Insufficient balance"
    reason = "payment_required"


class Forbidden(RequestError):
    status = 403
    default_message = "This API key may not use this model"
    reason = "forbidden"


class NotFound(RequestError):
    status = 404
    default_message = "Not found"
    reason = "not_found"


class Conflict(RequestError):
    status = 409
    default_message = "The task's state does not allow this"
    reason = "conflict"


class Gone(RequestError):
    status = 410
    default_message = "This result has expired"
    reason = "gone"


class PayloadTooLarge(RequestError):
    status = 413
    default_message = "Request body too large"
    reason = "payload_too_large"


class UnsupportedMedia(RequestError):
    status = 415
    default_message = "Content-Type must be application/json"
    reason = "unsupported_media"


class TooManyRequests(RequestError):
    """Refused for a limit: ``reason`` says which (``rate_limited``: the submit rate;
    ``unfinished_limit``: the key's unfinished tasks)."""

    status = 429
    default_message = "Too many requests"

    def __init__(self, error: str | None = None, *, retry_after: float = 1.0,
                 reason: str = "rate_limited") -> None:
        super().__init__(error)
        self.retry_after = retry_after
        self.reason = reason


class NotReady(RequestError):
    status = 503
    default_message = "Service not ready"
    reason = "not_ready"


class TaskError(ImagegateError):
    """Ends a task with ``fail_code``, unless ``retryable`` and attempts remain.

    ``failover``: another route may succeed where this one failed.
    ``retry_after``: seconds the source asked us to wait before trying it again.
    ``injected``: the client asked for this failure (the sandbox's test mode): it ends or retries
    its own task with its own code and says nothing about the route's health.
    ``incident``: names one failure that several tasks share (a batch of tasks run as one call
    that failed): each task fails, but the route's health counts the failure once.
    """

    def __init__(self, fail_code: str, message: str, *, retryable: bool = False,
                 failover: bool = False, retry_after: float | None = None,
                 injected: bool = False, incident: str | None = None) -> None:
        super().__init__(message)
        self.fail_code = fail_code
        self.message = message
        self.retryable = retryable
        self.failover = failover
        self.retry_after = retry_after
        self.injected = injected
        self.incident = incident

    def __str__(self) -> str:
        return f"{self.fail_code}: {self.message}"


class RouteError(TaskError):
    """A route could not produce images. Routes raise nothing else."""

    @classmethod
    def of(cls, fail_code: str, message: str, *, retry_after: float | None = None) -> RouteError:
        """A route error whose retry and failover flags follow from its failCode."""
        retryable = fail_code in FailCode.RETRYABLE
        return cls(fail_code, message, retryable=retryable, failover=retryable,
                   retry_after=retry_after)


class RouteUnavailable(RouteError):
    """The route's upstream does not serve its model (shut down, renamed or misspelt): the
    router marks the route unavailable until a check finds the model again, and fails over.
    Trying the route again would not help, so it is never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(FailCode.UNKNOWN, message, retryable=False, failover=True)


class ReferenceImageError(TaskError):
    """A reference image failed a guard of docs/contract.md §10."""

    def __init__(self, url: str, reason: str) -> None:
        shown = url if len(url) <= 200 else url[:197] + "..."
        super().__init__(FailCode.IMAGE_FORMAT_INCORRECT, f"reference image {shown}: {reason}")
        self.url = url
        self.reason = reason


class StoreUnavailable(ImagegateError):
    """The database cannot be written (or read) now: a full disk, an I/O error, a lock held
    too long. Nothing was changed; trying again after ``retry_after`` seconds may work."""

    def __init__(self, message: str, *, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class StorageFull(ImagegateError):
    """No space is left where result files are stored; nothing was written."""


class StorageUnavailable(ImagegateError):
    """The result storage cannot be reached, or refused a request (a bucket that is gone,
    credentials it does not accept): nothing was stored or read; trying later may work."""


class ConfigError(ImagegateError):
    """Settings that cannot work; raised at start, naming the setting."""
