"""Prometheus metrics (docs/metrics.md): what this process did, and what the fleet has to do.

    per process  counted where the work happens, in this process's own registry: route calls
                 and their latency, circuit breakers, tasks finished, submits accepted or
                 refused, webhook attempts. Each process counts only its own: sum them across
                 instances.
    fleet-wide   read from the database by one statement at each scrape (``Store.fleet_stats``):
                 queue depth and age per model, unfinished tasks by state, money held, the
                 webhook backlog. Every process reports the same values: take max() across
                 instances, never sum().

Each ``Metrics`` has a registry of its own, never prometheus_client's global one, so several
apps in one process (tests) never collide. Counting costs a counter increment; nothing here
touches the database except ``Scrape.page``, once per scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from imagegate.clock import Clock
from imagegate.concurrency import Slots
from imagegate.errors import RequestError, StoreUnavailable
from imagegate.events import TaskEvents
from imagegate.health import Circuit, HealthBook
from imagegate.store.base import FleetStats, Store

__all__ = ["CONTENT_TYPE", "Metrics", "Scrape", "fleet_families", "refusal_reason"]

log = logging.getLogger("imagegate.metrics")

# The text exposition format generate_latest writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# A route call takes from a fraction of a second (the sandbox, a cached answer) to minutes (a
# busy upstream, a large image).
ROUTE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
CIRCUITS = (Circuit.CLOSED, Circuit.OPEN, Circuit.HALF_OPEN, Circuit.UNAVAILABLE)


def refusal_reason(exc: BaseException) -> str:
    """How ``imagegate_submits_total`` names a refused submit."""
    if isinstance(exc, RequestError):
        return exc.reason
    if isinstance(exc, StoreUnavailable):
        return "store_unavailable"
    return "error"


class Metrics:
    """The metrics one process counts, in its own ``registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.route_seconds = Histogram(
            "imagegate_route_call_seconds", "Duration of route calls (one try of a task on "
            "one route), whatever their outcome.", ["route"], buckets=ROUTE_BUCKETS,
            registry=r)
        self.route_calls = Counter(
            "imagegate_route_calls", "Route calls by outcome: success, or the failCode.",
            ["route", "outcome"], registry=r)
        self.tasks_finished = Counter(
            "imagegate_tasks_finished", "Tasks this process ended, by model, final state and "
            "failCode (empty on success).", ["model", "state", "fail_code"], registry=r)
        self.submits = Counter(
            "imagegate_submits", "Submits answered: accepted, or the reason they were "
            "refused.", ["outcome"], registry=r)
        self.webhook_attempts = Counter(
            "imagegate_webhook_attempts", "Callback delivery attempts: delivered, failed (to "
            "be retried) or given_up (the last one failed).", ["outcome"], registry=r)
        self.waiting = Gauge(
            "imagegate_waiting_clients", "Clients of this process waiting for a task to end "
            "(Prefer: wait, statusTask's wait) or following one (streamTask).", registry=r)
        self.circuits = Circuits()
        r.register(self.circuits)
        self.route_slots = RouteSlots()
        r.register(self.route_slots)
        self._accepted = self.submits.labels("accepted")  # the hot path: one increment

    def route_called(self, route: str, outcome: str, seconds: float) -> None:
        self.route_seconds.labels(route).observe(seconds)
        self.route_calls.labels(route, outcome).inc()

    def task_finished(self, model: str, state: str, fail_code: str | None) -> None:
        self.tasks_finished.labels(model, state, fail_code or "").inc()

    def submit_accepted(self) -> None:
        self._accepted.inc()

    def submit_refused(self, exc: BaseException) -> None:
        self.submits.labels(refusal_reason(exc)).inc()

    def webhook_attempted(self, outcome: str) -> None:
        self.webhook_attempts.labels(outcome).inc()

    def watch_waiters(self, events: TaskEvents) -> None:
        """Report the clients waiting on ``events`` at each scrape."""
        self.waiting.set_function(lambda: events.watching)


class Circuits(Collector):
    """The circuit of each route a process runs, read from its ``HealthBook`` at scrape time."""

    def __init__(self) -> None:
        self.books: list[tuple[HealthBook, Sequence[str]]] = []

    def watch(self, health: HealthBook, routes: Iterable[str]) -> None:
        self.books.append((health, sorted(routes)))

    def collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "imagegate_route_circuit_state", "1 for the state a route's circuit breaker is "
            "in (closed, open, half-open, unavailable), 0 for the others.",
            labels=["route", "state"])
        failures = GaugeMetricFamily(
            "imagegate_route_failures_in_a_row", "Health failures of a route since its last "
            "success.", labels=["route"])
        for health, routes in self.books:
            for route in routes:
                now = health.circuit(route)
                for circuit in CIRCUITS:
                    state.add_metric([route, circuit], 1.0 if circuit == now else 0.0)
                failures.add_metric([route], float(health.failures(route)))
        return [state, failures]


class RouteSlots(Collector):
    """The ``max_in_flight`` slots of each limited route a process runs, read from its router's
    ``Slots`` at scrape time: the limit, the slots held and the tasks waiting for one."""

    def __init__(self) -> None:
        self.slots: list[Slots] = []

    def watch(self, slots: Slots) -> None:
        self.slots.append(slots)

    def collect(self) -> Iterable[Metric]:
        limit = GaugeMetricFamily("imagegate_route_max_in_flight", "The max_in_flight limit "
                                  "of a route in this process.", labels=["route"])
        held = GaugeMetricFamily("imagegate_route_in_flight", "Calls of a limited route open "
                                 "now in this process.", labels=["route"])
        waiting = GaugeMetricFamily("imagegate_route_slot_waiters", "Tasks of this process "
                                    "waiting for a slot of a limited route.", labels=["route"])
        for slots in self.slots:
            for route in sorted(slots.limits):
                limit.add_metric([route], float(slots.limits[route]))
                held.add_metric([route], float(slots.held(route)))
                waiting.add_metric([route], float(slots.waiting(route)))
        return [limit, held, waiting]


def fleet_families(stats: FleetStats | None, now_ms: int,
                   models: Iterable[str] = ()) -> list[Metric]:
    """The fleet-wide metrics of ``stats`` at ``now_ms``; every model of ``models`` (the
    catalogue) appears, with 0 when it has nothing queued. ``stats`` None (the database did
    not answer): only ``imagegate_database_up`` 0."""
    up = GaugeMetricFamily("imagegate_database_up", "1 when this scrape read the fleet-wide "
                           "metrics from the database; 0 when it could not (they are absent).",
                           value=0.0 if stats is None else 1.0)
    if stats is None:
        return [up]
    depth = GaugeMetricFamily("imagegate_queue_depth", "Queued tasks of a model, fleet-wide "
                              "(retries waiting for their time included).", labels=["model"])
    age = GaugeMetricFamily("imagegate_queue_oldest_age_seconds", "Time since the oldest "
                            "queued task of a model was submitted; 0 when none is queued.",
                            labels=["model"])
    for model in sorted({*models, *stats.queued}):
        depth.add_metric([model], float(stats.queued.get(model, 0)))
        age.add_metric([model], _age_s(stats.oldest_queued_ms.get(model), now_ms))
    unfinished = GaugeMetricFamily("imagegate_tasks_unfinished", "Unfinished tasks, "
                                   "fleet-wide, by state.", labels=["state"])
    unfinished.add_metric(["queued"], float(sum(stats.queued.values())))
    unfinished.add_metric(["running"], float(sum(stats.running.values())))
    held = GaugeMetricFamily("imagegate_money_held_usd", "Sum of the charges held for "
                             "unfinished tasks, in USD.", value=stats.held_micros / 1_000_000)
    backlog = GaugeMetricFamily("imagegate_webhook_backlog", "Callback deliveries pending "
                                "(not yet delivered nor given up), fleet-wide.",
                                value=float(stats.pending_deliveries))
    oldest = GaugeMetricFamily("imagegate_webhook_oldest_pending_age_seconds", "Time since "
                               "the oldest pending callback delivery was created (its task "
                               "ended); 0 when none is pending.",
                               value=_age_s(stats.oldest_pending_ms, now_ms))
    return [up, depth, age, unfinished, held, backlog, oldest]


def _age_s(since_ms: int | None, now_ms: int) -> float:
    return 0.0 if since_ms is None else max(0, now_ms - since_ms) / 1000


@dataclass(frozen=True)
class _Families(Collector):
    families: Sequence[Metric]

    def collect(self) -> Iterable[Metric]:
        return self.families


class Scrape:
    """The metrics page of a process: its own metrics, then the fleet's, read now."""

    def __init__(self, metrics: Metrics, store: Store, clock: Clock,
                 models: Iterable[str] = ()) -> None:
        self.metrics = metrics
        self.store = store
        self.clock = clock
        self.models = sorted(models)

    async def page(self) -> bytes:
        """The text exposition; the fleet-wide part is left out (``imagegate_database_up``
        0, with a warning logged) when the database does not answer."""
        stats: FleetStats | None
        try:
            stats = await self.store.fleet_stats()
        except StoreUnavailable as exc:
            log.warning("metrics: the fleet-wide values could not be read: %s", exc.message)
            stats = None
        fleet = _Families(fleet_families(stats, self.clock.now_ms(), self.models))
        return generate_latest(self.metrics.registry) + generate_latest(fleet)
