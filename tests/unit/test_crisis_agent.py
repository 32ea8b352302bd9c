"""CrisisMonitor (the Faust layer's logic, with a dict as the table): tagging, priority, checkpoints, clock."""

from __future__ import annotations

import json

from services.classify.crisis_agent import CrisisMonitor
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch

T0 = 1_793_577_600.0


def report(i: int, t: float, brand: str = "acme") -> pb.ScoredMention:
    sm = pb.ScoredMention(language="en", priority=pb.P2, reasons=["outage report 0.90"])
    m = sm.mention
    m.mention_id, m.external_id, m.text = f"x:{i}", str(i), "app down cannot log in"
    m.author.follower_count = 120
    m.brands.append(brand)
    m.received_at.CopyFrom(ts_from_epoch(t))
    sm.intents["outage_report"] = 0.9
    sm.sentiment.negative = 0.8
    return sm


def test_batch_is_tagged_reprioritised_and_checkpointed():
    store: dict = {}
    wall = [T0 + 5]
    mon = CrisisMonitor(store=store, checkpoint_seconds=0, clock=lambda: wall[0])
    batch = [report(i, T0 + i * 1.5) for i in range(80)]
    updates = []
    for k in range(0, 80, 16):   # micro-batches, as the worker sees them
        wall[0] = T0 + k * 1.5 + 2
        updates += mon.annotate(batch[k:k + 16])
    opened = [u for u in updates if u.state == pb.OPEN]
    assert len(opened) == 1
    tagged = [sm for sm in batch if sm.incident_id]
    assert tagged and all(sm.incident_id == opened[0].id for sm in tagged)
    assert all(sm.priority == pb.P1 and sm.reasons[0] == f"part of open incident {opened[0].id}" for sm in tagged)
    assert json.loads(json.dumps(store["acme"]))["brand"] == "acme"
    # A restarted worker restores from the table: same open incident, and the quiet-period resolve.
    again = CrisisMonitor(store=store, clock=lambda: wall[0])
    assert again.tick(T0 + 130) == [] and again.engine.open_incidents() == [opened[0].id]
    resolved = [u for s in range(0, 3600, 10) for u in again.tick(T0 + 130 + s)]
    assert [u.state for u in resolved if u.state != pb.UPDATED] == [pb.RESOLVED]
    assert resolved[-1].state == pb.RESOLVED and resolved[-1].mention_count == 80


def test_a_backlog_is_judged_in_event_time():
    # The worker was down: 80 reports from an hour ago arrive at once. Event time drives the windows,
    # so the outage is still found (at its own time), and ticks do not run ahead of the events.
    wall = [T0 + 3600]
    mon = CrisisMonitor(clock=lambda: wall[0])
    updates = mon.annotate([report(i, T0 + i * 1.5) for i in range(80)])
    opened = [u for u in updates if u.state == pb.OPEN]
    assert len(opened) == 1 and opened[0].opened_at.seconds - T0 <= 60
    assert mon.lag > 3400
    assert mon.tick() == []   # wall - lag is just after the backlog: nothing resolves yet


def test_brands_move_between_workers_with_their_open_incident():
    """Scale-out: two monitors share one store (the GlobalTable); each counts only the brands it owns, and a
    brand moved by a rebalance continues on its new owner from the checkpoint, open incident included."""
    store: dict = {}
    wall = [T0 + 5]
    a = CrisisMonitor(store=store, checkpoint_seconds=0, clock=lambda: wall[0])
    b = CrisisMonitor(store=store, checkpoint_seconds=0, clock=lambda: wall[0])
    a.reassign(lambda brand: brand == "acme")
    b.reassign(lambda brand: brand != "acme")
    both = [report(i, T0 + i * 1.5, brand) for i in range(80) for brand in ("acme", "globex")]
    for sm in both:   # a mention of both brands, as the crisis input carries it: one copy per brand
        sm.mention.brands[:] = ["acme", "globex"]
    updates = []
    for k in range(0, 160, 32):
        wall[0] = T0 + k * 0.75 + 2
        chunk = both[k:k + 32]
        updates += a.annotate(chunk, brands=["acme"] * len(chunk))
    assert sorted(a.engine.brands) == ["acme"] and not b.engine.brands   # b never saw a mention
    opened = [u for u in updates if u.state == pb.OPEN]
    assert [u.brand for u in opened] == ["acme"]
    # The rebalance: acme moves to b. a checkpoints and forgets it; b restores it with the open incident.
    assert a.reassign(lambda brand: False) == ["acme"] and not a.engine.brands
    b.reassign(lambda brand: True)
    assert b.tick(T0 + 130) == [] and b.engine.open_incidents() == [opened[0].id]
    more = [report(1000 + i, T0 + 130 + i, "acme") for i in range(5)]
    assert not [u for u in b.annotate(more) if u.state == pb.OPEN]   # not opened a second time
    assert all(sm.incident_id == opened[0].id for sm in more)   # new mentions join the same incident
