"""The paging stage: delivers the pages the grouper says are due, records each attempt, dead-letters what fails.

Pages are a persisted state machine (grouping.py). On each tick the stage parks the pages the
grouper gave up on, then makes one attempt per due page, all at once and triggers first: a slow or
failing receiver costs one attempt per tick for its own incident only. An attempt that fails for a
reason worth retrying (services/common/errors.py: rate_limited, server_error, timeout, network)
leaves the page due, backing off from the group's state; a rejected one (client_error, auth_error)
is dead-lettered at once. The group's state is written before the attempt's record goes to `pages`
(the page history the console shows, with the failure's reason), so a restart resumes the page.

After the pages, the open incidents' Alertmanager alerts that are a heartbeat old are re-posted
(heartbeat.py), so they stay firing for as long as the incident is open.

`send` is the other way to page: a one-off page outside the grouper (an SLA escalation), retried in
place with the delivery policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from services.common import codec, topics
from services.common.codec import pb
from services.common.logging import get_logger
from services.common.timeutil import ts_from_epoch
from services.router import metrics as router_metrics
from services.router.config import RouterSettings
from services.router.dead_letters import DeadLetters
from services.router.delivery import ReceiverGuard, RetryPolicy, attempt_once, call_with_retry
from services.router.grouping import IncidentGrouper, Page, PageAction
from services.router.heartbeat import AlertHeartbeat
from services.router.receivers import Pager
from services.router.state import StateLog

log = get_logger("router")


def failed_detail(reason: str, text: str) -> str:
    """A failed attempt's page-history detail, led by its reason (e.g. `auth_error: rejected by ...`)."""
    return f"{reason}: {text}" if reason else text


class PagingStage:
    """Delivers pages: the grouper's due pages (`tick`) and one-off pages (`send`).

    Example:

        stage = PagingStage(settings, grouper, receivers.pagers, guards, state, producer, dead_letters)
        await stage.tick(now)                          # give up, then one attempt per due page
        delivered = await stage.send("oncall", page)   # an escalation, retried in place
    """

    def __init__(self, settings: RouterSettings, grouper: IncidentGrouper, pagers: dict[str, Pager],
                 guards: dict[str, ReceiverGuard], state: StateLog, producer: AIOKafkaProducer,
                 dead_letters: DeadLetters, clock: Callable[[], float]):
        self.settings = settings
        self.grouper = grouper
        self.pagers = pagers
        self.guards = guards
        self.state = state
        self.producer = producer
        self.dead_letters = dead_letters
        self.clock = clock
        self.heartbeat = AlertHeartbeat()
        self.delivery_policy = RetryPolicy(settings.delivery_attempts, settings.delivery_backoff_seconds,
                                           settings.delivery_backoff_max_seconds)
        # Attempts are unbounded in count (bounded by page_retry_budget_seconds); triggers and resolves back off
        # to at most page_retry_max_seconds, updates to the delivery maximum.
        self.urgent_policy = RetryPolicy(1, settings.page_retry_backoff_seconds, settings.page_retry_max_seconds)
        self.update_policy = RetryPolicy(1, settings.page_retry_backoff_seconds,
                                         max(settings.page_retry_max_seconds, settings.delivery_backoff_max_seconds))

    async def tick(self, now: float) -> None:
        for page, reason, attempts in self.grouper.give_up(now, self.settings.page_retry_budget_seconds):
            await self.given_up(page, reason, attempts)
        await asyncio.gather(*(self.attempt(page) for page in self.grouper.due(now)))
        await self.heartbeat.run(self.grouper.open_groups(), self.pagers, now)
        router_metrics.OPEN_INCIDENTS.set(len(self.grouper.open_groups()))
        router_metrics.PAGES_RETRYING.clear()
        for (receiver, action), n in self.grouper.retrying().items():
            router_metrics.PAGES_RETRYING.labels(receiver, action).set(n)

    async def attempt(self, page: Page) -> None:
        """One delivery attempt of a due page. Delivered: the group moves on. Failed: the group keeps the page
        due and backs off (persisted, so a restart resumes it); a rejection (4xx) is dead-lettered at once."""
        g = page.group
        name = g.receiver
        guard = self.guards.get(name)
        if guard is not None and guard.bucket is not None:
            keep = guard.bucket.burst * self.settings.page_update_reserve if page.action == PageAction.UPDATE else 0
            if not guard.bucket.take(keep):
                router_metrics.RATE_LIMITED.labels(name).inc()  # still due: the next tick tries again, triggers first
                return
        count, incident_count, mentions = g.count, g.incident_mentions, g.mentions  # as the page shows them
        attempt = int(g.outbox.get("attempts", 0)) + 1
        due_since = float(g.outbox.get("since", page.at))
        outcome = await attempt_once(name, lambda: self.pagers[name].notify(page))
        reason = str(outcome.reason or "")
        if outcome.delivered:
            self.grouper.mark_sent(page, count, str(outcome.result or ""), incident_count)
            state, detail = "delivered", f"{mentions} mentions"
            router_metrics.PAGES.labels(name, page.action, "sent", "").inc()
            router_metrics.PAGE_DELAY.labels(page.action).observe(max(0.0, self.clock() - due_since))
        elif not outcome.retriable:
            self.grouper.abandon(g, page.action, page.at, reason)
            state, detail = "dead_lettered", f"rejected by the receiver: {outcome.error}"
        else:
            policy = self.update_policy if page.action == PageAction.UPDATE else self.urgent_policy
            retry_in = policy.delay(attempt, outcome.retry_after)
            self.grouper.mark_failed(page, page.at, outcome.error, retry_in, reason)
            state, detail = "retrying", f"attempt {attempt} failed, next in {retry_in:.1f} s: {outcome.error}"
        await (await self.state.put(f"group:{g.key}", g.to_json(), g.key))
        futs = [await self._record(page, name, state, attempt, failed_detail(reason, detail))]
        if state == "dead_lettered":
            futs.append(await self._dead_letter(page, name, failed_detail(reason, detail), attempt, reason))
        await asyncio.gather(*futs)
        (log.info if state == "delivered" else log.warning)(
            "page_attempt", action=page.action, receiver=name, incident=g.id, mentions=mentions, state=state,
            attempt=attempt, reason=reason, error=outcome.error[:200] if not outcome.delivered else "")

    async def given_up(self, page: Page, reason: str, attempts: int) -> None:
        """`give_up` ended a pending page: persist the group, record it, and park the page in the DLQ."""
        g = page.group
        detail = failed_detail(g.failure_reason, reason)
        # The DLQ and the record first, then the group's state: a crash in between parks the page again after the
        # restart (at least once) instead of persisting a group that ended without its page in the DLQ.
        await asyncio.gather(await self._record(page, g.receiver, "dead_lettered", attempts, detail),
                             await self._dead_letter(page, g.receiver, detail, attempts, g.failure_reason))
        await (await self.state.put(f"group:{g.key}", g.to_json(), g.key))
        log.warning("page_dead_lettered", action=page.action, receiver=g.receiver, incident=g.id,
                    reason=g.failure_reason, error=reason[:300])

    async def send(self, receiver: str, page: Page) -> bool:
        """A one-off page outside the grouper (an SLA escalation): retried in place with the delivery policy,
        recorded on `pages`, dead-lettered when it still failed (for `triage dlq replay`)."""
        count = page.group.mentions
        outcome = await call_with_retry(receiver, lambda: self.pagers[receiver].notify(page),
                                        self.delivery_policy, self.guards.get(receiver))
        reason = str(outcome.reason or "")
        if outcome.delivered:
            router_metrics.PAGES.labels(receiver, page.action, "sent", "").inc()
        state = "delivered" if outcome.delivered else "dead_lettered"
        detail = f"{count} mentions" if outcome.delivered else failed_detail(reason, outcome.error)
        futs = [await self._record(page, receiver, state, outcome.attempts, detail)]
        if not outcome.delivered:
            futs.append(await self._dead_letter(page, receiver, detail, outcome.attempts, reason))
        await asyncio.gather(*futs)
        log.info("page", action=page.action, receiver=receiver, incident=page.group.id, mentions=count,
                 delivered=outcome.delivered, reason=reason)
        return outcome.delivered

    async def _record(self, page: Page, receiver: str, state: str, attempt: int, detail: str) -> asyncio.Future[Any]:
        """The `pages` audit record of one attempt (after the group's state is durable)."""
        rec = pb.PageRecord(incident_id=page.group.id, receiver=receiver, action=page.action,
                            delivered=state == "delivered", detail=detail[:500], state=state, attempt=attempt)
        rec.at.CopyFrom(ts_from_epoch(page.at))
        return await self.producer.send(topics.PAGES, codec.encode(rec), key=page.group.id.encode())

    async def _dead_letter(self, page: Page, receiver: str, detail: str, attempts: int,
                           reason: str) -> asyncio.Future[Any]:
        router_metrics.PAGES.labels(receiver, page.action, "failed", reason).inc()
        return await self.dead_letters.page(page, receiver, detail, attempts)
