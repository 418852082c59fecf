"""Builds exactly what one process kind needs from ``Settings``, and nothing more.

    serve    the API and the whole runtime in one process (embedded: SQLite, local disk)
    api      the API alone: use cases over the store and blobs; it builds no route and runs no
             loop (several run behind a load balancer)
    worker   claims and runs tasks with the routes it is given (``--models``, ``--routes``), and
             keeps those routes' availability
    sweeper  requeues expired leases, fails queued tasks past their deadline, deletes expired
             results and the records past their retention, and delivers callbacks

``Seams`` are the outside world of a process (store, blobs, HTTP client, clock, events) and its
metrics registry; ``Api`` and ``Runtime`` are built over them. Tests pass fakes for any seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from imagegate.app.access import Access
from imagegate.app.files import Files
from imagegate.app.generation import Generations
from imagegate.app.key_slots import KeySlots
from imagegate.app.models import Models
from imagegate.app.queue_positions import QueuePositions
from imagegate.app.stream import MAX_STREAMS_PER_KEY, Streams
from imagegate.app.stream_keys import StreamKeys
from imagegate.app.tasks import Tasks
from imagegate.app.webhooks import Webhooks
from imagegate.availability import RouteMonitor, ask
from imagegate.blobs.base import BlobStore
from imagegate.blobs.local import LocalBlobStore
from imagegate.clock import Clock, SystemClock
from imagegate.completion import Completion
from imagegate.config import Settings
from imagegate.errors import ConfigError, StoreUnavailable
from imagegate.events import TaskEvents
from imagegate.fetch import FetchLimits, ReferenceFetcher
from imagegate.health import HealthBook
from imagegate.limits import InMemoryRateLimiter
from imagegate.metrics import Metrics, Scrape
from imagegate.net.transport import outbound_transport
from imagegate.router import Router
from imagegate.routes.base import Route, RouteCheck, StartingRoute
from imagegate.routes.registry import build_route, declared_capabilities
from imagegate.routing import Routing
from imagegate.store.base import Store
from imagegate.sweeper import Sweeper
from imagegate.webhooks import CallbackPolicy, Dispatcher
from imagegate.worker import Worker

__all__ = ["Api", "Runtime", "Seams", "build_api", "build_runtime", "check_routes", "fleet_api",
           "open_blobs", "open_seams", "open_store", "prepare_database", "routes_in_use",
           "routing_of", "scrape_of", "serve_api"]

log = logging.getLogger("imagegate")

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
SHARED_FILE_RECHECK_S = 2.0


# Seams ------------------------------------------------------------------------------------------


def open_store(settings: Settings) -> Store:
    """The store ``settings.database`` names: ``sqlite:///PATH``, ``postgresql://...``, or
    ``memory:`` (nothing kept: tests and experiments)."""
    url = settings.database
    if url.startswith("sqlite:"):
        from imagegate.store.sqlite import SqliteStore

        return SqliteStore.from_url(url)
    if url.startswith(("postgresql:", "postgres:")):
        from imagegate.store.postgres import PostgresStore

        return PostgresStore.from_url(url)
    if url == "memory:":
        from imagegate.store.memory import MemoryStore

        return MemoryStore()
    raise ConfigError(f"database_url {url!r}: use sqlite:///PATH, postgresql://... or memory:")


def routing_of(settings: Settings) -> Routing:
    """The catalogue with each route's capabilities as its configuration declares them."""
    return Routing(settings.models, declared_capabilities(settings.routes))


def routes_in_use(settings: Settings) -> list[str]:
    """The names of the routes some model of the catalogue uses, sorted."""
    return sorted({name for model in settings.models.values() for name in model.routes})


@dataclass
class Seams:
    settings: Settings
    store: Store
    blobs: BlobStore
    client: httpx.AsyncClient
    clock: Clock
    events: TaskEvents
    routing: Routing
    callbacks: CallbackPolicy
    metrics: Metrics = field(default_factory=Metrics)  # this process's own registry

    async def start(self) -> None:
        await self.events.start()

    async def close(self) -> None:
        await self.events.close()
        await self.client.aclose()
        await self.blobs.close()
        await self.store.close()


def open_seams(settings: Settings, *, store: Store | None = None, blobs: BlobStore | None = None,
               clock: Clock | None = None, transport: httpx.AsyncBaseTransport | None = None,
               events: TaskEvents | None = None,
               callbacks: CallbackPolicy | None = None) -> Seams:
    """Every seam from ``settings``; tests pass fakes for any of them (``callbacks`` with its
    resolver, ``transport`` for every outbound request)."""
    client = httpx.AsyncClient(transport=transport or outbound_transport(),
                               follow_redirects=False, trust_env=False,
                               timeout=httpx.Timeout(30.0, connect=10.0))
    policy = callbacks or CallbackPolicy(allow_http=settings.allow_http_callbacks,
                                         allow_private=settings.allow_private_networks)
    return Seams(settings, store or open_store(settings),
                 blobs or open_blobs(settings), client, clock or SystemClock(),
                 events or open_events(settings), routing_of(settings), policy)


def open_blobs(settings: Settings,
               transport: httpx.AsyncBaseTransport | None = None) -> BlobStore:
    """Result files where ``settings`` put them: the S3 bucket ``s3_bucket`` names (its
    credentials found now, ``ConfigError`` when there are none), else the local directory
    ``results_dir``. ``transport`` carries the S3 requests (tests)."""
    if not settings.s3_bucket:
        return LocalBlobStore(settings.results_dir)
    from imagegate.blobs.credentials import find_credentials
    from imagegate.blobs.s3 import Addressing, S3BlobStore

    credentials = find_credentials(settings.s3_access_key_id, settings.s3_secret_access_key)
    style: Addressing = "path" if settings.s3_addressing_style == "path" else "virtual"
    return S3BlobStore(settings.s3_bucket, credentials, prefix=settings.s3_key_prefix,
                       endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                       addressing_style=style, transport=transport)


def open_events(settings: Settings) -> TaskEvents:
    """Events shared by every process of the database (PostgreSQL's LISTEN/NOTIFY), or of this
    process alone (SQLite, memory: other processes find work by polling, and a client waiting
    on a task reads it again every ``SHARED_FILE_RECHECK_S``, since processes on one host may
    share a SQLite file and SQLite tells none of them about the others' changes)."""
    if settings.database.startswith(("postgresql:", "postgres:")):
        from imagegate.events_postgres import PostgresEvents

        return PostgresEvents.from_url(settings.database)
    if settings.database == "memory:":
        return TaskEvents()
    return TaskEvents(recheck_s=SHARED_FILE_RECHECK_S)


def _dispatcher(seams: Seams) -> Dispatcher:
    return Dispatcher(seams.store, seams.client, seams.callbacks, seams.settings, seams.clock,
                      seams.events, metrics=seams.metrics)


def scrape_of(seams: Seams) -> Scrape:
    """The /metrics page of the process over ``seams``: its own metrics and the fleet's."""
    return Scrape(seams.metrics, seams.store, seams.clock, seams.settings.models)


# The runtime: workers, sweeper, dispatcher, route monitor ---------------------------------------


@dataclass
class Runtime:
    """The loops of a process and what they own. ``start`` starts the routes that need it
    (``StartingRoute``: a model is loaded before any task is claimed), checks the routes' models
    (when asked) and starts the loops; ``stop`` lets running attempts finish for ``grace_s``, then
    cancels what is left (its leases expire and the tasks run again elsewhere)."""

    seams: Seams
    loops: dict[str, Loop]
    router: Router | None = None
    monitor: RouteMonitor | None = None
    routes: Mapping[str, Route] = field(default_factory=dict)
    worker: Worker | None = None
    sweeper: Sweeper | None = None
    dispatcher: Dispatcher | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _running: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        for route in self.routes.values():
            if isinstance(route, StartingRoute):
                await route.start()
        if self.monitor is not None and self.seams.settings.router_check_models:
            await self.monitor.check()
        for name, loop in self.loops.items():
            self._running.append(asyncio.create_task(loop(self._stop), name=name))

    async def wait(self) -> None:
        """Until every loop has ended (after ``stop``, or when one fails)."""
        if self._running:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_EXCEPTION)

    async def stop(self, grace_s: float) -> None:
        self._stop.set()
        if self._running:
            _, late = await asyncio.wait(self._running, timeout=grace_s)
            for loop in late:
                loop.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for route in self.routes.values():
            with contextlib.suppress(Exception):
                await route.close()

    def route_health(self) -> dict[str, dict[str, object]]:
        """Each route this process runs: circuit, failures in a row, why it is unavailable."""
        if self.router is None or self.monitor is None:
            return {}
        return {name: self.router.health.view(name) for name in self.monitor.routes}


def build_runtime(seams: Seams, *, work: bool = True, sweep: bool = True, deliver: bool = True,
                  models: Sequence[str] | None = None, route_names: Sequence[str] | None = None,
                  routes: Mapping[str, Route] | None = None,
                  concurrency: int | None = None) -> Runtime:
    """The loops of one process. A worker builds the routes it runs (``route_names``, default
    every route in use; tests pass ``routes``) and claims only tasks of models they serve
    (within ``models`` when given)."""
    settings = seams.settings
    loops: dict[str, Loop] = {}
    completion = Completion(seams.store, settings, seams.clock, seams.events,
                            metrics=seams.metrics)
    runtime = Runtime(seams, loops)
    if work:
        built = routes if routes is not None else _build_routes(seams, route_names)
        health = HealthBook(settings.router_failure_threshold, settings.router_cooldown_seconds)
        monitor = RouteMonitor(dict(built), settings.routes, health,
                               recheck_s=settings.router_recheck_seconds)
        router = Router(seams.routing, built, health, on_unavailable=monitor.mark_unavailable,
                        metrics=seams.metrics, max_in_flight=_max_in_flight(settings, built))
        seams.metrics.circuits.watch(health, built)
        seams.metrics.route_slots.watch(router.slots)
        fetcher = ReferenceFetcher(seams.client, FetchLimits(
            max_bytes=settings.fetch_max_image_bytes, max_pixels=settings.fetch_max_image_pixels,
            timeout_s=settings.fetch_timeout_seconds,
            allow_private=settings.allow_private_networks))
        worker = Worker(seams.store, seams.blobs, router, fetcher, completion, settings,
                        seams.clock, seams.events, models=_claimable(seams, built, models),
                        concurrency=concurrency)
        loops.update(worker=worker.run, monitor=monitor.run)
        runtime.router, runtime.monitor, runtime.routes = router, monitor, built
        runtime.worker = worker
    if sweep:
        runtime.sweeper = Sweeper(seams.store, seams.blobs, completion, settings, seams.clock,
                                  seams.events)
        loops["sweeper"] = runtime.sweeper.run
    if deliver:
        runtime.dispatcher = _dispatcher(seams)
        loops["dispatcher"] = runtime.dispatcher.run
    return runtime


async def check_routes(settings: Settings) -> dict[str, RouteCheck]:
    """Ask the upstream of every route in use whether its model is served (no state kept)."""
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        routes = {name: build_route(settings.routes[name], settings, client)
                  for name in routes_in_use(settings)}
        try:
            return await ask(routes)
        finally:
            for route in routes.values():
                await route.close()


def _build_routes(seams: Seams, names: Sequence[str] | None) -> dict[str, Route]:
    settings = seams.settings
    chosen = routes_in_use(settings) if names is None else list(names)
    unknown = [n for n in chosen if n not in settings.routes]
    if unknown:
        raise ConfigError(f"--routes names unknown route {unknown[0]!r}; configured: "
                          f"{', '.join(settings.routes)}")
    return {name: build_route(settings.routes[name], settings, seams.client) for name in chosen}


def _max_in_flight(settings: Settings, routes: Mapping[str, Route]) -> dict[str, int]:
    """The ``max_in_flight`` limit of each route this process runs that has one."""
    limits = {name: settings.routes[name].max_in_flight for name in routes
              if name in settings.routes}
    return {name: limit for name, limit in limits.items() if limit is not None}


def _claimable(seams: Seams, routes: Mapping[str, Route],
               models: Sequence[str] | None) -> list[str] | None:
    """The models a worker with ``routes`` may claim: those with one of its routes (within
    ``models``); None, every model, when it runs every route in use."""
    settings = seams.settings
    if models is None and set(routes) >= set(routes_in_use(settings)):
        return None
    unknown = [m for m in models or () if m not in settings.models]
    if unknown:
        raise ConfigError(f"--models names unknown model {unknown[0]!r}; the catalogue has "
                          f"{', '.join(settings.models)}")
    claimable = [m for m, cfg in settings.models.items()
                 if (models is None or m in models) and set(cfg.routes) & set(routes)]
    if not claimable:
        raise ConfigError("this worker has no model to claim: none of the models it may run "
                          "is served by one of its routes")
    return claimable


# The API ----------------------------------------------------------------------------------------


@dataclass
class Api:
    """What the HTTP layer calls: the use cases, readiness, and (in ``serve``) the runtime."""

    settings: Settings
    seams: Seams
    access: Access
    tasks: Tasks
    files: Files
    webhooks: Webhooks
    scrape: Scrape
    models: Models
    streams: Streams
    generations: Generations
    runtime: Runtime | None = None
    migrate: bool = True  # apply every migration (serve); else only on an empty database
    draining: bool = False

    async def start(self) -> None:
        await prepare_database(self.seams.store, upgrade=self.migrate)
        await self.seams.start()
        if self.runtime is not None:
            await self.runtime.start()

    def end_held_requests(self) -> None:
        """The process is asked to stop: end its streams and answer its waits now, so that the
        server, which waits for every open answer before it stops, is not held by them."""
        self.streams.end_all()
        self.tasks.end_waits()

    async def stop(self) -> None:
        self.draining = True
        await self.streams.close()  # their clients resume elsewhere
        if self.runtime is not None:
            # Running attempts get one lease period to finish; what is cut off after that is
            # requeued by a sweeper once its lease expires.
            await self.runtime.stop(self.settings.worker_lease_seconds)
        await self.seams.close()

    async def ready(self) -> bool:
        if self.draining:
            return False
        try:
            await self.seams.store.ping()
        except StoreUnavailable as exc:
            log.warning("not ready: %s", exc.message)
            return False
        except Exception:
            log.exception("readiness check: the store does not answer")
            return False
        return True

    def route_health(self) -> dict[str, dict[str, object]]:
        return self.runtime.route_health() if self.runtime is not None else {}


def build_api(seams: Seams, runtime: Runtime | None = None, *, shared_rates: bool = False,
              migrate: bool = True) -> Api:
    settings = seams.settings
    access = Access(seams.store, seams.routing, InMemoryRateLimiter(), seams.clock,
                    shared_rates=shared_rates, cache_s=settings.auth_cache_seconds,
                    default_rate=settings.limits_submit_rate,
                    default_burst=settings.limits_submit_burst)
    completion = Completion(seams.store, settings, seams.clock, seams.events,
                            metrics=seams.metrics)
    tasks = Tasks(seams.store, seams.routing, seams.callbacks, seams.clock, seams.events,
                  completion, base_url=settings.base_url,
                  max_unfinished=settings.limits_max_concurrent_tasks,
                  record_retention_ms=settings.record_retention_ms)
    webhooks = Webhooks(seams.store, tasks, _dispatcher(seams), seams.clock,
                        default_overlap_s=settings.callbacks_rotation_overlap_seconds)
    files = Files(seams.store, seams.blobs, seams.clock,
                  redirect=settings.results_delivery == "redirect")
    models = Models(seams.routing, [name for name, cfg in settings.routes.items()
                                    if cfg.type == "sandbox"])
    stream_slots = KeySlots(MAX_STREAMS_PER_KEY, settings.limits_max_concurrent_tasks)
    streams = Streams(tasks, seams.events, QueuePositions(seams.store, seams.clock),
                      StreamKeys(seams.store, stream_slots))
    seams.metrics.watch_waiters(seams.events)
    generations = Generations(tasks, seams.blobs, base_url=settings.base_url,
                              wait_s=settings.facades_wait_seconds)
    return Api(settings, seams, access, tasks, files, webhooks, scrape_of(seams), models,
               streams, generations, runtime, migrate)


def serve_api(settings: Settings) -> Api:
    """``serve``: the API with the whole runtime; the database is brought up to date."""
    seams = open_seams(settings)
    return build_api(seams, build_runtime(seams), migrate=True)


def fleet_api(settings: Settings) -> Api:
    """``api``: the API alone, its submit rates counted in the database (shared by every API
    process); a database that is not empty must be at this code's version."""
    seams = open_seams(settings)
    return build_api(seams, shared_rates=True, migrate=False)


async def prepare_database(store: Store, *, upgrade: bool) -> None:
    """Bring the schema up to date (``upgrade``), or apply it only to an empty database and
    refuse one that is older or newer than this code (``ConfigError``)."""
    if upgrade:
        await store.migrate()
        return
    current, known = await store.schema_version()
    if current == 0:
        await store.migrate()
    elif current != known:
        raise ConfigError(f"the database is at schema version {current} and this imagegate "
                          f"needs {known}: run imagegate migrate" if current < known else
                          f"the database has schema version {current}, newer than this "
                          f"imagegate knows ({known}): upgrade imagegate")
