"""The triage stage: incident groups of `triage: true` routes wait for a person before they page.

The hold itself is the grouper's (grouping.py, "Triage"): a held group sends no trigger until a decision
or its `triage_timeout`. This stage is what the hold looks like from outside the router:

- `decide`: a `TriageDecision` from the console (`triage.decisions`, compacted, keyed by the group key and
  co-partitioned with the page requests, so it reaches the replica that owns the group) becomes the
  grouper's `decide`; the group's new state is written to the state topic before the offset is committed,
  so a restart keeps the decision, and a decision read twice changes nothing the second time.
- `tick`: each transition of a hold (held, then one of paged_now / dismissed / timed_out / resolved;
  `grouping.triage_transition`) is recorded once on `pages` as a PageRecord with action "triage", the
  group key and the hold's end: the console's Triage page lists the held ones from these records. The
  record goes first and the group's state after it, with the transition's own time, so a crash in
  between sends the same record again (the console folds it once) and never skips it.
- the chat notice: a held group of a route with `triage_notify` is posted once to that Slack receiver
  ("held for triage", with "Page now" and "Dismiss" buttons the console's Slack endpoint answers, and a link
  to the console's Triage page, where the same two actions are),
  attempted each tick until Slack accepts it or 5 attempts failed.

A page now triggers through the paging stage on the next tick; a timeout triggers there by itself (the
grouper's `wanted`), exactly once, as any trigger (its delivery state is persisted).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from services.common import codec, topics
from services.common.codec import pb
from services.common.logging import get_logger
from services.common.timeutil import epoch, ts_from_epoch
from services.router import metrics as router_metrics
from services.router.delivery import attempt_once
from services.router.grouping import (
    TRIAGE_DISMISS,
    TRIAGE_PAGE_NOW,
    TRIAGE_RECORD_ACTION,
    Group,
    IncidentGrouper,
    Page,
    triage_notice_due,
    triage_transition,
)
from services.router.receivers import Pager
from services.router.state import StateLog

log = get_logger("router")

NOTICE_ACTION = "triage"  # Page.action of the chat notice (render.slack_message)
# grouper.decide's answers -> the `reason` label of triage_router_triage_decisions_ignored_total
IGNORED = {"unknown group": "unknown_group", "not held for triage": "not_held", "already paged": "already_paged",
           "already resolved": "already_resolved"}


def decision_name(msg: Any) -> str:
    """The grouper's name of a TriageDecision's decision ("page_now" / "dismissed"; "dismiss" accepted too)."""
    d = str(msg.decision)
    return TRIAGE_DISMISS if d == "dismiss" else d


class TriageStage:
    """Takes triage decisions and tells the console (and a Slack channel) what is held.

    Example:

        stage = TriageStage(grouper, receivers.pagers, state, producer, clock=time.time)
        await stage.decide(codec.decode(raw, pb.TriageDecision))   # persisted: commit now
        await stage.tick(now)                                      # records on `pages`, chat notices
    """

    def __init__(self, grouper: IncidentGrouper, pagers: dict[str, Pager], state: StateLog,
                 producer: AIOKafkaProducer, clock: Callable[[], float]):
        self.grouper = grouper
        self.pagers = pagers
        self.state = state
        self.producer = producer
        self.clock = clock

    async def decide(self, msg: Any) -> str:
        """Apply one decision on the group this replica owns; returns what happened ("decided" or why not)."""
        decision = decision_name(msg)
        if decision not in (TRIAGE_PAGE_NOW, TRIAGE_DISMISS):
            router_metrics.TRIAGE_DECISIONS_IGNORED.labels("invalid").inc()
            log.warning("triage_decision_invalid", group=msg.group_key[:200], decision=decision[:40])
            return "invalid"
        g, outcome = self.grouper.decide(msg.group_key, decision, msg.responder, epoch(msg.at) or self.clock())
        if outcome != "decided" or g is None:
            again = outcome.startswith("already decided")
            reason = "already_decided" if again else IGNORED.get(outcome, "invalid")
            router_metrics.TRIAGE_DECISIONS_IGNORED.labels(reason).inc()
            log.info("triage_decision_ignored", group=msg.group_key[:200], decision=decision, outcome=outcome)
            if again and g is not None:
                # Maybe the retry of a decision whose state write failed: write the group again (idempotent).
                await (await self.state.put(f"group:{g.key}", g.to_json(), g.key))
            return outcome
        await (await self.state.put(f"group:{g.key}", g.to_json(), g.key))
        log.info("triage_decided", incident=g.id, receiver=g.receiver, decision=decision, by=msg.responder)
        return outcome

    async def tick(self, now: float) -> None:
        groups = self.grouper.triage_groups()
        await asyncio.gather(*(self._record(g, now) for g in groups))
        await asyncio.gather(*(self._notice(g, now) for g in groups if triage_notice_due(g, now)))
        held = Counter(g.receiver for g in self.grouper.held(now))
        router_metrics.TRIAGE_HELD.clear()
        for receiver, n in held.items():
            router_metrics.TRIAGE_HELD.labels(receiver).set(n)

    async def _record(self, g: Group, now: float) -> None:
        while (step := triage_transition(g, now)) is not None:
            state, at = step
            rec = pb.PageRecord(incident_id=g.id, receiver=g.receiver, action=TRIAGE_RECORD_ACTION,
                                delivered=False, state=state, group_key=g.key, detail=self._detail(g, state)[:500],
                                labels=g.labels)
            rec.at.CopyFrom(ts_from_epoch(at))
            rec.hold_until.CopyFrom(ts_from_epoch(g.triage_until))
            await (await self.producer.send(topics.PAGES, codec.encode(rec), key=g.id.encode()))
            g.triage_recorded = state
            await (await self.state.put(f"group:{g.key}", g.to_json(), g.key))
            router_metrics.TRIAGE.labels(g.receiver, state).inc()
            log.info("triage", incident=g.id, receiver=g.receiver, state=state, mentions=g.mentions)

    @staticmethod
    def _detail(g: Group, state: str) -> str:
        reasons = "; ".join(r for r, _ in g.top_reasons(3))
        return {
            "held": f"held for triage: {g.mentions} mentions, pages by itself when not handled in time ({reasons})",
            "paged_now": f"page now, by {g.triage_by}",
            "dismissed": f"dismissed by {g.triage_by}: not paged",
            "timed_out": "not handled within triage_timeout: paged by itself",
            "resolved": "the incident ended while held for triage: not paged",
        }[state]

    async def _notice(self, g: Group, now: float) -> None:
        """The Slack notice of a hold: one attempt this tick; delivered once, or given up after 5 failures."""
        pager = self.pagers.get(g.triage_notify)
        if pager is None:
            return
        outcome = await attempt_once(g.triage_notify, lambda: pager.notify(Page(NOTICE_ACTION, g, now)))
        if outcome.delivered:
            g.triage_noticed_at = now
            router_metrics.TRIAGE_NOTICES.labels(g.triage_notify, "sent", "").inc()
        else:
            g.triage_notice_attempts += 1
            router_metrics.TRIAGE_NOTICES.labels(g.triage_notify, "failed", str(outcome.reason or "")).inc()
            log.warning("triage_notice_failed", incident=g.id, receiver=g.triage_notify,
                        attempt=g.triage_notice_attempts, error=outcome.error[:200])
        await (await self.state.put(f"group:{g.key}", g.to_json(), g.key))
