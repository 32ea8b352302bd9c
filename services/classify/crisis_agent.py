"""The thin Faust layer of crisis detection: per classify batch, tag mentions with open incidents and
publish incident updates; a timer resolves incidents that went quiet; state lives in a Faust table.

`CrisisMonitor.annotate(scored)` runs the pure `CrisisEngine` over a scored batch (after scoring, before
producing): it sets `incident_id` on each mention that belongs to an open incident, recomputes its
priority with `priority.decide(..., Signals(incident_id=...))` (P1, reason "part of open incident <id>")
and returns the `Incident` messages to produce on `incidents`, keyed by incident id.

State and partitioning (docs/scaling.md): under Faust, scoring runs on the partitions of `mentions.raw`
(keyed by mention id) and the monitor runs on `triage.classify.crisis-input`, keyed by brand, so every mention
of a brand reaches the one replica that owns the brand's partition (`owns`). Each brand's state is held in
memory by the engine and checkpointed (JSON) into a changelog-backed `GlobalTable` written with
`use_partitioner=True` (key = brand; every replica recovers all partitions), so a brand that moves in a
rebalance is restored by its new owner (`reassign`), open incidents and cooldowns included, and a
restarted worker never re-opens a resolved one.
Checkpoints are taken at most every `crisis_checkpoint_seconds` per brand, and at once whenever an
incident changes; after a crash the un-checkpointed mentions are re-delivered (at-least-once) and counted
again into the restored windows, so at most `crisis_checkpoint_seconds` of data is seen twice.

Event time (`crisis_event_time`): live, a mention's time is its `received_at`; for a replay of history
(`triage replay --event-time --speed N`) set `created_at`: the engine's clock is then the largest
created_at seen, the watermark trails it by `crisis_lateness_seconds`, and mentions behind the watermark
are counted (`triage_classify_crisis_late_events_total`) but kept out of the windows, so they can neither
open nor re-open an incident. On a quiet stream the timer advances the clock at wall speed from the last
event time seen (Flink's idle-source watermark).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import replace
from typing import Any

from prometheus_client import Counter, Gauge

from services.classify.config import ClassifySettings
from services.classify.crisis import CrisisConfig, CrisisEngine
from services.classify.priority import PriorityPolicy, Signals, decide
from services.common import codec, topics
from services.common.codec import pb
from services.common.logging import get_logger

log = get_logger("classify.crisis")

INCIDENT_UPDATES = Counter("triage_classify_incident_updates_total", "Incident updates produced",
                           ["kind", "state"])
INCIDENTS_OPEN = Gauge("triage_classify_incidents_open", "Crisis incidents currently open in this worker")
LATE_EVENTS = Counter("triage_classify_crisis_late_events_total",
                      "Mentions behind the crisis watermark (older than the clock - crisis_lateness_seconds): "
                      "counted, kept out of the windows")

VOLUME_HELD = Counter("triage_classify_crisis_volume_held_total",
                      "Volume spikes not opened as incidents, by reason (incoherent: the window's posts share no "
                      "topic and shift neither sentiment nor intents, e.g. a collection artefact)", ["reason"])

EMERGING_CLUSTERS = Gauge("triage_classify_crisis_emerging_clusters",
                          "Emerging-issue clusters held in this worker (at most crisis emerging.max_clusters a brand)")
UNCLUSTERED = Counter("triage_classify_crisis_unclustered_total",
                      "Negative posts that reached crisis detection without an embedding sketch (not clustered "
                      "for emerging issues: a scorer that does not set ScoredMention.embedding_sketch)")

STATE_TABLE = "crisis-state"


class CrisisMonitor:
    """The engine plus its checkpoints and the priority re-decision; no Kafka inside (the store is a mapping:
    a Faust table in the worker, a dict in tests)."""

    def __init__(self, engine: CrisisEngine | None = None, store: MutableMapping[Any, Any] | None = None,
                 policy: PriorityPolicy | None = None, checkpoint_seconds: float = 5.0,
                 clock: Callable[[], float] = time.time, key: Callable[[str], Any] = str):
        self.engine = engine or CrisisEngine(CrisisConfig())
        self.store = store if store is not None else {}
        self.policy = policy or PriorityPolicy()
        self.checkpoint_seconds = checkpoint_seconds
        self.clock = clock
        self.key = key
        self.loaded = False
        self.lag = 0.0   # wall clock - event time at the last batch
        self.saved_at: dict[str, float] = {}
        # Scale-out: which brands this worker owns (their partition of the crisis input); all by default.
        self.owns: Callable[[str], bool] = lambda _brand: True

    def load(self) -> int:
        """Restore the owned brands this worker does not hold yet from the store (after table recovery, and
        again after a rebalance gave it new brands); returns how many."""
        if self.loaded:
            return 0
        n = 0
        for value in list(self.store.values()):
            brand = (value or {}).get("brand", "")
            if value and brand not in self.engine.brands and self.owns(brand):
                self.engine.load_brand_state(value)
                n += 1
        self.engine.clock = max([self.engine.clock, *(_brand_clock(v) for v in self.store.values() if v)])
        self.loaded = True
        log.info("crisis_state_loaded", brands=n, open_incidents=len(self.engine.open_incidents()))
        return n

    def reassign(self, owns: Callable[[str], bool]) -> list[str]:
        """A rebalance moved brands: checkpoint and forget the ones lost (their new owner restores them from
        the store), and load the ones gained at the next batch or tick; returns the brands dropped."""
        self.owns = owns
        lost = [b for b in self.engine.brands if not owns(b)]
        for brand in lost:
            self.store[self.key(brand)] = self.engine.brand_state(brand)
            self.engine.drop_brand(brand)
        self.loaded = False
        INCIDENTS_OPEN.set(len(self.engine.open_incidents()))
        if lost:
            log.info("crisis_brands_released", brands=len(lost))
        return lost

    def annotate(self, scored: Iterable[pb.ScoredMention], now: float | None = None,
                 brands: list[str] | None = None) -> list[pb.Incident]:
        """Tag the batch's mentions in place; returns the incident updates to produce. `brands[i]`, when
        given, is the one brand the i-th mention is counted for (the crisis input's key; see create_app)."""
        self.load()
        wall = self.clock() if now is None else now
        updates: list[pb.Incident] = []
        seen = False
        late, unclustered = self.engine.late, self.engine.unclustered
        for i, sm in enumerate(scored):
            # Event time drives the engine: a worker catching up on a backlog judges the windows as they
            # were, not all at "now" (which would also defeat the persistence condition).
            iid, ups = self.engine.observe(sm, brands=[brands[i]] if brands is not None else None)
            seen = True
            updates += ups
            if iid and sm.incident_id != iid:
                self.retag(sm, iid)
        if seen:
            self.lag = max(0.0, wall - self.engine.clock)
        if self.engine.late > late:
            LATE_EVENTS.inc(self.engine.late - late)
        if self.engine.unclustered > unclustered:
            UNCLUSTERED.inc(self.engine.unclustered - unclustered)
        self.checkpoint(wall, force=bool(updates))
        self._count(updates)
        return updates

    def forget(self, mention_ids: list[str]) -> list[pb.Incident]:
        """Deleted posts out of the held open incidents' samples; the updates to produce (checkpointed now)."""
        if not mention_ids:
            return []
        self.load()
        updates = self.engine.forget(mention_ids)
        if updates:
            self.checkpoint(self.clock(), force=True)
        return updates

    def tick(self, now: float | None = None) -> list[pb.Incident]:
        self.load()
        wall = self.clock() if now is None else now
        # On a quiet stream the engine's clock follows the wall clock, minus the event-time lag last seen
        # (so a lagging stream's windows are not emptied ahead of its events).
        updates = self.engine.tick(wall - self.lag)
        self.checkpoint(wall, force=bool(updates))
        self._count(updates)
        return updates

    def retag(self, sm: pb.ScoredMention, incident_id: str) -> None:
        """Join an open incident: set the id and re-decide priority/urgency/reasons with it (P1)."""
        verdict = decide(sm.sentiment.negative, sm.sentiment.positive, dict(sm.intents),
                         Signals.from_mention(sm.mention, incident_id), self.policy)
        sm.incident_id = incident_id
        sm.priority = verdict.priority  # type: ignore[assignment]
        sm.urgency = verdict.urgency
        del sm.reasons[:]
        sm.reasons.extend(verdict.reasons)

    def checkpoint(self, now: float, force: bool = False) -> None:
        dirty = self.engine.take_dirty()
        for brand in dirty:
            if force or now - self.saved_at.get(brand, 0.0) >= self.checkpoint_seconds:
                self.store[self.key(brand)] = self.engine.brand_state(brand)
                self.saved_at[brand] = now
            else:
                self.engine.dirty.add(brand)   # not yet: keep it for the next checkpoint

    def _count(self, updates: list[pb.Incident]) -> None:
        for brand, reason, detail in self.engine.take_held():
            VOLUME_HELD.labels(reason).inc()
            log.info("volume_spike_held", brand=brand, reason=reason, detail=detail)
        for inc in updates:
            INCIDENT_UPDATES.labels(pb.IncidentKind.Name(inc.kind), pb.IncidentState.Name(inc.state)).inc()
            log.info("incident", id=inc.id, state=pb.IncidentState.Name(inc.state), brand=inc.brand,
                     severity=round(inc.severity, 3), mentions=inc.mention_count)
        INCIDENTS_OPEN.set(len(self.engine.open_incidents()))
        EMERGING_CLUSTERS.set(sum(len(st.emerging.clusters) for st in self.engine.brands.values()))


def _brand_clock(state: dict[str, Any]) -> float:
    recent = state.get("recent") or []
    return max([0.0, *(float(r[1]) for r in recent)])


async def produce_incidents(producer: Any, updates: list[pb.Incident]) -> list[Any]:
    """send() every update keyed by incident id (compacted topic: the latest state per incident wins)."""
    return [await producer.send(topics.INCIDENTS, codec.encode(inc), key=inc.id.encode()) for inc in updates]


def crisis_config(settings: ClassifySettings) -> CrisisConfig:
    """The detectors' defaults with the event-time settings (`crisis_event_time`, `crisis_lateness_seconds`)."""
    base = CrisisConfig()
    return replace(base, event_time=settings.crisis_event_time,
                   incident=replace(base.incident, lateness_seconds=settings.crisis_lateness_seconds))


def attach_crisis(app: Any, worker: Any, settings: ClassifySettings | None = None,
                  config: CrisisConfig | None = None) -> CrisisMonitor:
    """Create the state table, the monitor and the resolve timer on a Faust app; returns the monitor.

    The worker calls `monitor.annotate(scored)` per batch and produces the result with
    `produce_incidents(producer, updates)` before awaiting the batch's futures (see the module docstring).
    """
    settings = settings or ClassifySettings()
    table = app.GlobalTable(STATE_TABLE, default=None, partitions=settings.crisis_state_partitions,
                            use_partitioner=True,   # keys and values are JSON (Faust's default for tables)
                            help="per-brand crisis detection state (JSON), see services/classify/crisis_agent.py")
    policy = getattr(getattr(worker, "scorer", None), "policy", None)
    monitor = CrisisMonitor(CrisisEngine(config or crisis_config(settings)), table, policy,
                            settings.crisis_checkpoint_seconds, key=str)

    @app.timer(interval=settings.crisis_tick_seconds)
    async def crisis_tick() -> None:
        recovery = getattr(app.tables, "recovery", None)
        if recovery is not None and not recovery.completed.is_set():
            return   # the table is still being restored: judging now would forget open incidents
        updates = monitor.tick()
        if updates:
            import asyncio
            producer = await worker.start_producer()
            await asyncio.gather(*await produce_incidents(producer, updates))

    return monitor
