"""One request with its retries, as a flow (effects.py): the policy of backoff.py applied."""

from __future__ import annotations

from . import errors
from .backoff import RetryPolicy, parse_retry_after
from .effects import Flow, OpenStream, Send, Sleep
from .wire import Reply, Request

__all__ = ["call"]


def call(policy: RetryPolicy, request: Request, *, read_timeout: float | None = None,
         ) -> Flow[Reply]:
    """Send ``request`` (as a stream when ``read_timeout`` is given), retrying as ``policy``
    says; the last answer is returned whatever its status. Raises APIConnectionError when no
    answer came after the retries."""
    attempt = 0
    while True:
        try:
            if read_timeout is None:
                reply: Reply = yield Send(request)
            else:
                reply = yield OpenStream(request, read_timeout)
        except errors.APIConnectionError as exc:
            delay = policy.delay_for_failure(attempt, exc.sent, request.repeatable)
            if delay is None:
                raise
        else:
            if reply.status < 400:
                return reply
            after = parse_retry_after(reply.header("retry-after"))
            delay = policy.delay_for_status(attempt, reply.status, after, request.repeatable)
            if delay is None:
                return reply
        yield Sleep(delay)
        attempt += 1
