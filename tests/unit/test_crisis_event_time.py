"""Event-time crisis detection (`crisis_event_time=created_at`): a replay of history through the pipeline,
where ingest stamps received_at with the replay's wall clock, is judged on created_at, like the backtest."""

from __future__ import annotations

import random

import pytest
from prometheus_client import REGISTRY

from services.analysis.backtest import run_backtest
from services.classify.config import ClassifySettings
from services.classify.crisis import CrisisConfig, CrisisEngine
from services.classify.crisis_agent import CrisisMonitor, crisis_config
from services.common.codec import pb
from services.common.timeutil import epoch, ts_from_epoch

T0 = 1_793_577_600.0      # history: 2026-11-02T00:00:00Z
WALL0 = 1_800_000_000.0   # the replay's wall clock, months later
SPEED = 20.0


def mention(i: int, created: float, outage: bool, brand: str = "acme") -> pb.ScoredMention:
    sm = pb.ScoredMention(language="en", priority=pb.P3)
    m = sm.mention
    m.mention_id, m.external_id = f"x:{brand}-{i}", f"{brand}-{i}"
    m.text = f"app down cannot log in #{i}" if outage else f"ordinary post {i} about cards and fees"
    m.brands.append(brand)
    m.created_at.CopyFrom(ts_from_epoch(created))
    m.received_at.CopyFrom(ts_from_epoch(WALL0 + (created - T0) / SPEED))   # what ingest stamps on replay
    sm.intents["outage_report"] = 0.9 if outage else 0.01
    sm.intents["complaint"] = 0.6 if outage else 0.05
    sm.sentiment.negative = 0.8 if outage else 0.1
    return sm


def history(seed: int = 1) -> list[pb.ScoredMention]:
    """3 h of calm traffic (~4/min) with 40 outage reports from 02:30 over 80 s."""
    rng = random.Random(seed)
    out, t, i = [], T0, 0
    while t < T0 + 3 * 3600:
        t += rng.expovariate(4 / 60)
        out.append(mention(i, t, False))
        i += 1
    out += [mention(10_000 + k, T0 + 150 * 60 + 2 * k, True) for k in range(40)]
    return sorted(out, key=lambda sm: epoch(sm.mention.created_at))


def replay_through_monitor(scored: list[pb.ScoredMention], config: CrisisConfig) -> list[pb.Incident]:
    """What the worker does on a replay: batches of 16 at their wall arrival, a tick between batches."""
    wall = [WALL0]
    mon = CrisisMonitor(CrisisEngine(config), store={}, checkpoint_seconds=0, clock=lambda: wall[0])
    updates: list[pb.Incident] = []
    for k in range(0, len(scored), 16):
        batch = scored[k:k + 16]
        wall[0] = max(epoch(sm.mention.received_at) for sm in batch) + 0.05
        updates += mon.annotate(batch)
        updates += mon.tick()
    return updates


def test_settings_choose_the_event_time_and_lateness():
    cfg = crisis_config(ClassifySettings(crisis_event_time="created_at", crisis_lateness_seconds=120))
    assert cfg.event_time == "created_at" and cfg.incident.lateness_seconds == 120
    assert crisis_config(ClassifySettings()).event_time == "received_at"
    with pytest.raises(ValueError, match="event_time"):
        CrisisConfig(event_time="published")


def test_replayed_history_is_judged_on_created_at_like_the_backtest():
    cfg = crisis_config(ClassifySettings(crisis_event_time="created_at"))
    scored = history()
    updates = replay_through_monitor(scored, cfg)
    opened = [u for u in updates if u.state == pb.OPEN]
    assert [(u.brand, u.kind) for u in opened] == [("acme", pb.OUTAGE_CLUSTER)]
    at = epoch(opened[0].opened_at)
    assert T0 + 150 * 60 <= at <= T0 + 150 * 60 + 90      # in event time: during the burst
    predicted = [e for e in run_backtest(history(), cfg).opened()]
    assert [(e["brand"], e["kind"]) for e in predicted] == [("acme", "OUTAGE_CLUSTER")]
    # Judged on arrival instead (the live default), every replayed post is months older than its arrival,
    # i.e. an engagement update of an old post, not volume: the replay would page nothing (issue 16).
    live = replay_through_monitor(history(), CrisisConfig())
    assert not [u for u in live if u.state == pb.OPEN]


def test_late_events_are_counted_and_do_not_reopen_a_resolved_incident():
    cfg = crisis_config(ClassifySettings(crisis_event_time="created_at", crisis_lateness_seconds=300))
    eng = CrisisEngine(cfg)
    scored = history()
    opened, resolved = [], []
    for sm in scored:
        _, ups = eng.observe(sm)
        opened += [u for u in ups if u.state == pb.OPEN]
    end = eng.clock
    for k in range(1, 400):   # an hour of quiet event time (the watermark moves on): the outage resolves
        resolved += [u for u in eng.tick(end + 10 * k) if u.state == pb.RESOLVED]
    assert len(opened) == 1 and len(resolved) == 1
    # A backfill of the same outage arrives now: 60 reports stamped inside the resolved incident's minutes.
    before = REGISTRY.get_sample_value("triage_classify_crisis_late_events_total") or 0.0
    reports_counted = sum(eng.brands["acme"].outage.counter.minutes.values())
    mon = CrisisMonitor(eng, store={}, checkpoint_seconds=0, clock=lambda: WALL0 + 10_000)
    mon.loaded = True
    late = [mention(20_000 + k, T0 + 150 * 60 + k, True) for k in range(60)]
    ups = mon.annotate(late) + mon.tick()
    assert not [u for u in ups if u.state == pb.OPEN]
    assert eng.brands["acme"].late == 60 and eng.late == 60
    assert REGISTRY.get_sample_value("triage_classify_crisis_late_events_total") - before == 60
    assert sum(eng.brands["acme"].outage.counter.minutes.values()) == reports_counted   # not in the windows


def test_an_engagement_update_in_event_time_is_observed_at_the_clock():
    eng = CrisisEngine(CrisisConfig(event_time="created_at"))
    first = mention(1, T0 + 100, False)
    eng.observe(first)
    eng.observe(mention(2, T0 + 400, False))
    update = pb.ScoredMention()
    update.CopyFrom(first)
    update.mention.engagement.reposts = 50
    assert eng.event_time_of(update) == T0 + 400     # not its created_at (that would be 300 s late)
    eng.observe(update)
    assert eng.late == 0
