"""Builds everything from Settings (the one place that wires the seams together) and offers the
operations the HTTP layer calls: authenticate, submit, status, balance, result files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from imagegate.availability import RouteMonitor, ask
from imagegate.blobs.base import BlobStore
from imagegate.blobs.local import LocalBlobStore
from imagegate.catalogue import RouteConfig
from imagegate.clock import Clock, SystemClock
from imagegate.completion import Completion
from imagegate.config import Settings
from imagegate.contract import parse_submit
from imagegate.errors import (
    ConfigError,
    Forbidden,
    Gone,
    InvalidRequest,
    NotFound,
    StoreUnavailable,
    TooManyRequests,
    Unauthorized,
    quoted,
)
from imagegate.events import TaskEvents
from imagegate.fetch import FetchLimits, ReferenceFetcher
from imagegate.health import HealthBook
from imagegate.keys import KeyCache, bearer_token, hash_key
from imagegate.limits import InMemoryRateLimiter, RateLimiter
from imagegate.money import ChargeState, task_price
from imagegate.router import Router
from imagegate.routes.base import Route, RouteCheck
from imagegate.routes.gemini import GeminiRoute
from imagegate.routes.relay import RelayRoute
from imagegate.routes.sandbox import SandboxRoute
from imagegate.signing import new_secret
from imagegate.store.base import ApiKey, Delivery, DeliveryAttempt, Store, WebhookSecret
from imagegate.store.sqlite import SqliteStore
from imagegate.sweeper import Sweeper
from imagegate.tasks import ResultFile, Task, TaskState, new_task_id, render_status
from imagegate.webhooks import CallbackPolicy, Dispatcher
from imagegate.worker import Worker

log = logging.getLogger("imagegate")


def open_store(settings: Settings) -> Store:
    url = settings.database
    if url.startswith("sqlite:"):
        return SqliteStore.from_url(url)
    raise ConfigError(f"database_url {url!r}: only sqlite:/// is supported by this build")


def build_routes(settings: Settings, client: httpx.AsyncClient) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    for name, cfg in settings.routes.items():
        routes[name] = _build_route(cfg, settings, client)
    return routes


def _build_route(cfg: RouteConfig, settings: Settings, client: httpx.AsyncClient) -> Route:
    if cfg.type == "sandbox":
        delay = float(cfg.options.get("delay_seconds", settings.sandbox_delay_seconds))
        return SandboxRoute(cfg.name, delay_s=delay)
    if cfg.type == "gemini":
        return GeminiRoute.from_options(cfg.name, cfg.options, client, settings)
    if cfg.type == "relay":
        return RelayRoute.from_options(cfg.name, cfg.options, client, settings)
    raise ConfigError(f"routes.{cfg.name}: unknown route type {cfg.type!r}; "
                      "known: sandbox, gemini, relay")


def routes_in_use(settings: Settings) -> list[str]:
    """The names of the routes some model of the catalogue uses, sorted."""
    return sorted({name for model in settings.models.values() for name in model.routes})


async def check_routes(settings: Settings) -> dict[str, RouteCheck]:
    """Ask the upstream of every route in use whether its model is served (no state kept)."""
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        routes = {name: _build_route(settings.routes[name], settings, client)
                  for name in routes_in_use(settings)}
        try:
            return await ask(routes)
        finally:
            for route in routes.values():
                await route.close()


@dataclass
class ResultDownload:
    file: ResultFile
    chunks: AsyncIterator[bytes]


@dataclass
class Services:
    settings: Settings
    store: Store
    blobs: BlobStore
    client: httpx.AsyncClient
    router: Router
    clock: Clock
    events: TaskEvents
    limiter: RateLimiter
    completion: Completion
    worker: Worker
    sweeper: Sweeper
    dispatcher: Dispatcher
    monitor: RouteMonitor
    key_cache: KeyCache[ApiKey] = field(default_factory=lambda: KeyCache(1.0))
    draining: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _loops: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, *, store: Store | None = None,
              blobs: BlobStore | None = None, clock: Clock | None = None,
              transport: httpx.AsyncBaseTransport | None = None,
              routes: Mapping[str, Route] | None = None) -> Services:
        """Wire every seam from ``settings``; tests pass fakes for any of them."""
        store = store or open_store(settings)
        blobs = blobs or LocalBlobStore(settings.results_dir)
        clock = clock or SystemClock()
        client = httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False,
                                   timeout=httpx.Timeout(30.0, connect=10.0))
        health = HealthBook(settings.router_failure_threshold, settings.router_cooldown_seconds)
        routes = routes or build_routes(settings, client)
        monitor = RouteMonitor({n: routes[n] for n in routes_in_use(settings) if n in routes},
                               settings.routes, health, recheck_s=settings.router_recheck_seconds)
        router = Router(settings.models, routes, health, on_unavailable=monitor.mark_unavailable)
        events = TaskEvents()
        completion = Completion(store, settings, clock, events)
        fetcher = ReferenceFetcher(client, FetchLimits(
            max_bytes=settings.fetch_max_image_bytes, max_pixels=settings.fetch_max_image_pixels,
            timeout_s=settings.fetch_timeout_seconds,
            allow_private=settings.allow_private_networks))
        worker = Worker(store, blobs, router, fetcher, completion, settings, clock, events)
        sweeper = Sweeper(store, blobs, completion, settings, clock, events)
        policy = CallbackPolicy(allow_http=settings.allow_http_callbacks,
                                allow_private=settings.allow_private_networks)
        dispatcher = Dispatcher(store, client, policy, settings, clock, events)
        return cls(settings, store, blobs, client, router, clock, events,
                   InMemoryRateLimiter(), completion, worker, sweeper, dispatcher, monitor,
                   key_cache=KeyCache(settings.auth_cache_seconds))

    # Lifecycle --------------------------------------------------------------------------------

    async def start(self, *, background: bool = True) -> None:
        """Migrate the store; with ``background``, check that every route's model is served
        (a route whose model is gone is reported and skipped; the start goes on) and start the
        worker, sweeper, dispatcher and route monitor."""
        await self.store.migrate()
        if background:
            if self.settings.router_check_models:
                await self.monitor.check()
            for name, loop in (("worker", self.worker.run), ("sweeper", self.sweeper.run),
                               ("dispatcher", self.dispatcher.run),
                               ("monitor", self.monitor.run)):
                self._loops.append(asyncio.create_task(loop(self._stop), name=name))

    async def stop(self) -> None:
        self.draining = True
        self._stop.set()
        if self._loops:
            # Running attempts get one lease period to finish; what is cut off after that is
            # requeued by the sweeper of the next start, once its lease expires.
            _, late = await asyncio.wait(self._loops, timeout=self.settings.worker_lease_seconds)
            for loop in late:
                loop.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for routes in self.router.routes.values():
            with contextlib.suppress(Exception):
                await routes.close()
        await self.client.aclose()
        await self.blobs.close()
        await self.store.close()

    async def ready(self) -> bool:
        if self.draining:
            return False
        try:
            await self.store.ping()
        except StoreUnavailable as exc:
            log.warning("not ready: %s", exc.message)
            return False
        except Exception:
            log.exception("readiness check: the store does not answer")
            return False
        return True

    def route_health(self) -> dict[str, dict[str, object]]:
        """Each route in use: its circuit (closed, open, half-open, unavailable), failures in a
        row, and why it is unavailable when it is."""
        return {name: self.router.health.view(name) for name in self.monitor.routes}

    # Operations -------------------------------------------------------------------------------

    async def authenticate(self, authorization: str | None) -> ApiKey:
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized("missing or malformed Authorization: Bearer header")
        key_hash = hash_key(token)
        now = time.monotonic()
        key = self.key_cache.get(key_hash, now)
        if key is None:
            key = await self.store.key_by_hash(key_hash)
            if key is None or not key.active:
                raise Unauthorized("invalid or revoked API key")
            self.key_cache.put(key_hash, key, now)
        return key

    def check_model(self, key: ApiKey, model_id: str) -> None:
        self.router.model(model_id)
        if key.models is not None and model_id not in key.models:
            raise Forbidden(f"this API key may not use model {quoted(model_id)}")

    async def check_rate(self, key: ApiKey) -> None:
        rate = key.submit_rate or self.settings.limits_submit_rate
        burst = key.submit_burst or self.settings.limits_submit_burst
        wait = await self.limiter.acquire(key.id, rate, burst)
        if wait > 0:
            raise TooManyRequests(f"submit rate limit of {rate:g}/s reached", retry_after=wait)

    async def submit(self, key: ApiKey, model_id: str, body: Any) -> str:
        """Validate, price, and store the task with its hold in one transaction."""
        model = self.router.model(model_id)
        request = parse_submit(body, model.limits)
        self.router.check_routable(model_id, request.input, request.provider)
        if request.callback_url:
            await self.dispatcher.policy.check_url(request.callback_url)
        task = Task(
            id=new_task_id(), account_id=key.account_id, key_id=key.id, model=model_id,
            input=request.input, state=TaskState.QUEUED, created_ms=self.clock.now_ms(),
            price_micros=task_price(model.prices, request.input.resolution,
                                    request.input.num_images),
            charge_state=ChargeState.HELD, result_token=secrets.token_urlsafe(18),
            request_type=request.request_type, callback_url=request.callback_url,
            provider=request.provider, source=request.source)
        limit = key.max_concurrent_tasks or self.settings.limits_max_concurrent_tasks
        await self.store.insert_task(task, limit)
        self.events.work_available()
        return task.id

    async def status(self, key: ApiKey, model_id: str, task_id: str) -> dict[str, Any]:
        task = await self.store.get_task(task_id)
        if task is None or task.account_id != key.account_id or task.model != model_id:
            raise NotFound(f"no task {quoted(task_id)} for model {quoted(model_id)}")
        return render_status(task, self.settings.base_url)

    async def balance_usd_micros(self, key: ApiKey) -> int:
        account = await self.store.get_account(key.account_id)
        if account is None:
            raise Unauthorized("the account of this API key no longer exists")
        return account.balance_micros

    async def owned_task(self, key: ApiKey, task_id: str) -> Task:
        task = await self.store.get_task(task_id)
        if task is None or task.account_id != key.account_id:
            raise NotFound(f"no task {quoted(task_id)}")
        return task

    async def delivery_log(self, key: ApiKey, task_id: str,
                           ) -> list[tuple[Delivery, list[DeliveryAttempt]]]:
        """The task's callback deliveries, each with every attempt made."""
        task = await self.owned_task(key, task_id)
        deliveries = await self.store.deliveries_for_task(task.id)
        return [(d, await self.store.delivery_attempts(d.id)) for d in deliveries]

    async def redeliver(self, key: ApiKey, task_id: str) -> tuple[Delivery, DeliveryAttempt]:
        """Send the task's callback again now: same webhook-id and body, a new signature."""
        task = await self.owned_task(key, task_id)
        deliveries = await self.store.deliveries_for_task(task.id)
        if not deliveries:
            raise NotFound(f"task {quoted(task_id)} has no callback to deliver "
                           "(not a callback task, or not finished yet)")
        attempt = await self.dispatcher.deliver(deliveries[-1], manual=True)
        return deliveries[-1], attempt

    async def webhook_secrets(self, key: ApiKey) -> list[WebhookSecret]:
        now = self.clock.now_ms()
        return await self.store.webhook_secrets(key.account_id, now, create=new_secret())

    async def rotate_webhook_secret(self, key: ApiKey, overlap_s: float | None,
                                    ) -> list[WebhookSecret]:
        overlap = self.settings.callbacks_rotation_overlap_seconds if overlap_s is None \
            else overlap_s
        if not 0 <= overlap <= 30 * 86400:
            raise InvalidRequest("overlapSeconds must be 0 to 2592000 (30 days)",
                                 field="overlapSeconds")
        return await self.store.rotate_webhook_secret(
            key.account_id, new_secret(), self.clock.now_ms(), int(overlap * 1000))

    async def result(self, task_id: str, token: str, name: str) -> ResultDownload:
        task = await self.store.get_task(task_id)
        # Bytes: compare_digest refuses str with non-ASCII characters, which a URL may hold.
        if task is None or not secrets.compare_digest(task.result_token.encode(),
                                                      token.encode()):
            raise NotFound("no such result")
        file = next((r for r in task.results if r.name == name), None)
        if file is None or task.state is not TaskState.SUCCEEDED:
            raise NotFound("no such result")
        if task.expire_ms is not None and self.clock.now_ms() >= task.expire_ms:
            raise Gone("this result has expired and was deleted")
        if await self.blobs.size(file.key) is None:
            raise Gone("this result has expired and was deleted")
        return ResultDownload(file, self.blobs.stream(file.key))
