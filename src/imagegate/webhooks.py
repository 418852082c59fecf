"""Callback delivery (CONTRACT.md §12): when a callback task ends, its status envelope is POSTed
to ``callback_url`` from a persisted delivery row, so a restart loses nothing (at-least-once).

A 2xx answer within the timeout is a delivery. Anything else, a redirect included (never
followed), is recorded and retried on the configured schedule with jitter, then given up. The body
is fixed when the task ends and sent byte for byte on every attempt; ``webhook-id`` is the
delivery id, stable across attempts. The address is checked again at every attempt (DNS can
change between attempts).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from imagegate.clock import Clock
from imagegate.config import Settings
from imagegate.errors import InvalidRequest
from imagegate.events import TaskEvents
from imagegate.fetch import Resolver, is_public_address, resolve_host
from imagegate.store.base import Delivery, DeliveryAttempt, Store

log = logging.getLogger("imagegate.webhooks")

LEASE_MS = 120_000


class DeliveryState:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # given up after the last attempt


def next_delay_s(schedule: Sequence[float], attempts_made: int,
                 rand: Callable[[], float] = random.random) -> float:
    """Delay after ``attempts_made`` (>= 1) failed attempts: the schedule's entry for it (the
    last entry repeats), with +-10% jitter."""
    base = schedule[min(attempts_made, len(schedule)) - 1]
    return base * (0.9 + 0.2 * rand())


@dataclass(frozen=True)
class CallbackPolicy:
    """Which callback URLs may be called: https and public addresses unless allowed."""

    allow_http: bool = False
    allow_private: bool = False
    resolver: Resolver = resolve_host

    def check_url_shape(self, url: str) -> None:
        """At submit: raise InvalidRequest(field callback_url) for a URL we will never call."""
        parts = urlsplit(url)
        if parts.scheme != "https" and not (self.allow_http and parts.scheme == "http"):
            raise InvalidRequest("callback_url must be an https URL", field="callback_url")
        literal = _ip_literal(parts.hostname or "")
        if literal is not None and not self.allow_private and not is_public_address(literal):
            raise InvalidRequest(f"callback_url address {literal} is not public",
                                 field="callback_url")

    async def refusal(self, url: str) -> str | None:
        """At each attempt: why this URL may not be called now, or None."""
        try:
            self.check_url_shape(url)
        except InvalidRequest as exc:
            return exc.error
        if self.allow_private:
            return None
        parts = urlsplit(url)
        try:
            default_port = 443 if parts.scheme == "https" else 80
            async with asyncio.timeout(10):
                addresses = await self.resolver(parts.hostname or "", parts.port or default_port)
        except TimeoutError:
            return f"resolving {parts.hostname} took more than 10 s"
        except OSError as exc:
            return f"cannot resolve {parts.hostname}: {exc}"
        for text in addresses:
            ip = ipaddress.ip_address(text.split("%")[0])
            if not is_public_address(ip):
                return f"callback address {ip} is not public"
        return None


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class Dispatcher:
    """Sends due deliveries; several at once, each at most once at a time (leased rows)."""

    def __init__(self, store: Store, client: httpx.AsyncClient, policy: CallbackPolicy,
                 settings: Settings, clock: Clock, events: TaskEvents,
                 concurrency: int = 16) -> None:
        self.store = store
        self.client = client
        self.policy = policy
        self.settings = settings
        self.clock = clock
        self.events = events
        self.concurrency = concurrency

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                sent = await self.dispatch_once()
            except Exception:
                log.exception("dispatching callbacks failed; trying again shortly")
                sent = 0
            if not sent:
                waiter = asyncio.create_task(self.events.wait_for_deliveries(1.0))
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()

    async def dispatch_once(self) -> int:
        due = await self.store.claim_deliveries(self.clock.now_ms(), LEASE_MS, self.concurrency)
        await asyncio.gather(*(self.deliver(d) for d in due))
        return len(due)

    async def deliver(self, delivery: Delivery) -> DeliveryAttempt:
        attempt_no = delivery.attempts + 1
        started_ms = self.clock.now_ms()
        t0 = time.monotonic()
        status, error = await self._post(delivery, started_ms)
        attempt = DeliveryAttempt(delivery.id, attempt_no, started_ms,
                                  int((time.monotonic() - t0) * 1000), status, error)
        state, next_ms = self._next(attempt_no, error, started_ms)
        if not await self.store.record_delivery_attempt(attempt, state, next_ms):
            log.warning("callback %s attempt %d was recorded by another dispatcher",
                        delivery.id, attempt_no)
            return attempt
        log.info("callback %s for task %s attempt %d: %s", delivery.id, delivery.task_id,
                 attempt_no, error or f"delivered ({status})")
        return attempt

    def _next(self, attempt_no: int, error: str | None, now_ms: int) -> tuple[str, int]:
        if error is None:
            return DeliveryState.DELIVERED, now_ms
        if attempt_no >= self.settings.callbacks_max_attempts:
            return DeliveryState.FAILED, now_ms
        delay = next_delay_s(self.settings.retry_schedule_s, attempt_no)
        return DeliveryState.PENDING, now_ms + int(delay * 1000)

    async def _post(self, delivery: Delivery, now_ms: int) -> tuple[int | None, str | None]:
        refusal = await self.policy.refusal(delivery.url)
        if refusal is not None:
            return None, refusal
        try:
            response = await self.client.post(
                delivery.url, content=delivery.body.encode(),
                headers=self.headers(delivery, now_ms), follow_redirects=False,
                timeout=self.settings.callbacks_timeout_seconds)
        except httpx.TimeoutException:
            return None, f"no answer within {self.settings.callbacks_timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]
        return response.status_code, _judge(response)

    def headers(self, delivery: Delivery, now_ms: int) -> Mapping[str, str]:
        """Headers of one attempt. Signing adds to these (webhook-signature)."""
        return {"content-type": "application/json", "user-agent": "imagegate-webhooks/1",
                "webhook-id": delivery.id, "webhook-timestamp": str(now_ms // 1000)}


def _judge(response: httpx.Response) -> str | None:
    if 200 <= response.status_code < 300:
        return None
    if response.is_redirect:
        target = response.headers.get("location", "?")
        return f"HTTP {response.status_code} redirect to {target[:200]} (not followed)"
    return f"HTTP {response.status_code}"
