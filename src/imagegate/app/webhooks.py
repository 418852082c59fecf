"""Webhooks as a client sees them: a task's delivery log, redelivery now, a signed test event,
and the account's signing secrets with rotation."""

from __future__ import annotations

from imagegate.app.tasks import Tasks
from imagegate.clock import Clock
from imagegate.errors import InvalidRequest, NotFound, quoted
from imagegate.signing import new_secret
from imagegate.store.base import ApiKey, Delivery, DeliveryAttempt, Store, WebhookSecret
from imagegate.webhooks import Dispatcher, TestResult

MAX_OVERLAP_S = 30 * 86400


class Webhooks:
    """``dispatcher`` sends the manual deliveries (its loop need not run in this process)."""

    def __init__(self, store: Store, tasks: Tasks, dispatcher: Dispatcher, clock: Clock, *,
                 default_overlap_s: float) -> None:
        self.store = store
        self.tasks = tasks
        self.dispatcher = dispatcher
        self.clock = clock
        self.default_overlap_s = default_overlap_s

    async def delivery_log(self, key: ApiKey, task_id: str,
                           ) -> list[tuple[Delivery, list[DeliveryAttempt]]]:
        """The task's callback deliveries, each with every attempt made."""
        task = await self.tasks.owned(key, task_id)
        deliveries = await self.store.deliveries_for_task(task.id)
        return [(d, await self.store.delivery_attempts(d.id)) for d in deliveries]

    async def redeliver(self, key: ApiKey, task_id: str) -> tuple[Delivery, DeliveryAttempt]:
        """Send the task's callback again now: same webhook-id and body, a new signature."""
        task = await self.tasks.owned(key, task_id)
        deliveries = await self.store.deliveries_for_task(task.id)
        if not deliveries:
            raise NotFound(f"task {quoted(task_id)} has no callback to deliver "
                           "(not a callback task, or not finished yet)")
        attempt = await self.dispatcher.deliver(deliveries[-1], manual=True)
        return deliveries[-1], attempt

    async def test_event(self, key: ApiKey, url: str) -> TestResult:
        """POST a signed test event to ``url`` now; nothing is stored."""
        return await self.dispatcher.send_test(key.account_id, url)

    async def secrets(self, key: ApiKey) -> list[WebhookSecret]:
        now = self.clock.now_ms()
        return await self.store.webhook_secrets(key.account_id, now, create=new_secret())

    async def rotate(self, key: ApiKey, overlap_s: float | None) -> list[WebhookSecret]:
        overlap = self.default_overlap_s if overlap_s is None else overlap_s
        if not 0 <= overlap <= MAX_OVERLAP_S:
            raise InvalidRequest("overlapSeconds must be 0 to 2592000 (30 days)",
                                 field="overlapSeconds")
        return await self.store.rotate_webhook_secret(
            key.account_id, new_secret(), self.clock.now_ms(), int(overlap * 1000))
