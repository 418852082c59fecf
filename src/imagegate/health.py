"""Per-route health: a circuit breaker for each route, kept by the router of one worker process.

closed     the route is tried.
open       ``threshold`` failures in a row that speak of the route's health (rate limits,
           timeouts, unknown errors) open it for ``cooldown_s``; it is skipped meanwhile. A rate
           limit with a known retry delay also keeps it out for that long.
half-open  after the cooldown one trial task is let through: success closes the circuit, a
           failure opens it for another cooldown.
unavailable  the route's upstream does not serve its model (a check said so, or a call was
           answered NOT_FOUND): skipped, whatever the circuit, until a check finds the model or
           a call succeeds. Unlike an open circuit it does not pass with time.

A failure several tasks share (one failed batch: the errors carry the same ``incident``) counts
once: the first task's report counts, the others' are recognised and only free the trial slot.

Content outcomes (SensitiveContent, PromptInvalid, ImageFormatIncorrect, MissingParameter) say
nothing about the route's health and leave the breaker alone; so do failures a client injected
(the sandbox's test mode), which the router never reports here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from imagegate.errors import TaskError


class Circuit:
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"
    UNAVAILABLE = "unavailable"


@dataclass
class _State:
    failures: int = 0
    open_until: float = 0.0
    tripped: bool = False  # opened by failures (a half-open trial is due after open_until)
    trial_running: bool = False
    last_code: str = ""
    unavailable: str = ""  # why the route is unavailable; "" when it is not
    # The incidents counted lately: a batch's tasks report its failure one by one, close together.
    incidents: deque[str] = field(default_factory=lambda: deque(maxlen=_INCIDENTS_KEPT))


_INCIDENTS_KEPT = 64


class HealthBook:
    def __init__(self, threshold: int = 5, cooldown_s: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._now = monotonic
        self._states: dict[str, _State] = {}

    def _state(self, route: str) -> _State:
        return self._states.setdefault(route, _State())

    def circuit(self, route: str) -> str:
        s = self._state(route)
        if s.unavailable:
            return Circuit.UNAVAILABLE
        if self._now() < s.open_until:
            return Circuit.OPEN
        return Circuit.HALF_OPEN if s.tripped else Circuit.CLOSED

    def mark_unavailable(self, route: str, reason: str) -> None:
        self._state(route).unavailable = reason

    def mark_available(self, route: str) -> None:
        self._state(route).unavailable = ""

    def unavailable(self, route: str) -> str | None:
        """Why the route is unavailable, or None when it is not."""
        return self._state(route).unavailable or None

    def acquire(self, route: str) -> bool:
        """May a task try this route now? A half-open route admits one trial at a time; an
        unavailable route admits none."""
        state = self.circuit(route)
        if state == Circuit.CLOSED:
            return True
        s = self._state(route)
        if state == Circuit.HALF_OPEN and not s.trial_running:
            s.trial_running = True
            return True
        return False

    def wait_s(self, route: str) -> float:
        """Seconds until the route may be tried again (0 when it may now)."""
        return max(0.0, self._state(route).open_until - self._now())

    def succeeded(self, route: str) -> None:
        self._states[route] = _State()

    def failed(self, route: str, error: TaskError) -> None:
        s = self._state(route)
        s.trial_running = False
        if not error.failover:
            return  # a content outcome, not a health signal
        if error.incident is not None:
            if error.incident in s.incidents:
                return  # counted when the first task of its batch reported it
            s.incidents.append(error.incident)
        s.failures += 1
        s.last_code = error.fail_code
        if error.retry_after:
            s.open_until = max(s.open_until, self._now() + error.retry_after)
        if s.tripped or s.failures >= self.threshold:
            s.tripped = True
            s.open_until = max(s.open_until, self._now() + self.cooldown_s)

    def failures(self, route: str) -> int:
        """Health failures of the route since its last success."""
        return self._state(route).failures

    def last_code(self, route: str) -> str:
        """The failCode of the route's last health failure ("" when none)."""
        return self._state(route).last_code

    def release(self, route: str) -> None:
        """A trial that ended without a verdict (cancelled) frees the half-open slot."""
        self._state(route).trial_running = False

    def view(self, route: str) -> dict[str, object]:
        """The route's health for people: circuit, failures in a row, seconds until it may be
        tried again, and why it is unavailable when it is."""
        s = self._state(route)
        view: dict[str, object] = {"circuit": self.circuit(route), "failures": s.failures,
                                   "retryInS": round(self.wait_s(route), 1)}
        if s.unavailable:
            view["reason"] = s.unavailable
        return view
