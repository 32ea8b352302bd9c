"""Several emerging issues of one brand at once (issue 24): each distinct problem is its own incident.

A brand with one emerging issue open ("card declined at every shop") that gets a second, unrelated problem
("charged twice") opens a second EMERGING_ISSUE with that problem's own samples; each problem stays exactly
one incident while its cluster keeps firing, across a checkpoint round trip (and from an old checkpoint that
followed a single cluster); each resolves on its own when it calms; at most `max_incidents` at once.
Synthetic unit vectors, as in test_crisis_emerging.py.
"""

from __future__ import annotations

import itertools
import json

import numpy as np

from services.classify.crisis import CrisisConfig, CrisisEngine, EmergingConfig
from services.classify.crisis.emerging import EmergingDetector
from services.classify.crisis.incidents import MentionSummary
from services.common.codec import pb
from tests.unit.test_crisis_emerging import DIM, T0, WORDS, near, scored, unit

START = T0 + 8 * 3600   # after 8 hours of ordinary complaints


def schedule(rng: np.random.Generator, a_until: float, b_until: float) -> list[tuple[float, str, np.ndarray, str]]:
    """(time, post id, vector, text): ordinary complaints all along (30 an hour), problem A from START (a burst
    of 12 in 30 min, then one every 5 min until `a_until`), problem B from START + 40 min (same shape, until
    `b_until`)."""
    a, b = unit(rng.normal(size=DIM)), unit(rng.normal(size=DIM))
    out = []
    end = max(a_until, b_until) + 5 * 3600
    for i in range(int((end - T0) / 120)):
        t = T0 + i * 120
        out.append((t, f"o{i}", unit(rng.normal(size=DIM)), f"{' '.join(rng.choice(WORDS, 5))} {i}"))
    for name, center, first, until, words in (("a", a, START, a_until, "card declined every shop"),
                                              ("b", b, START + 2400, b_until, "charged twice for one order")):
        t, i = first, 0
        while t <= until:
            out.append((t + 7, f"{name}{i}", near(center, 0.95, rng), f"{words} {name}{i}"))
            t += 150 if i < 12 else 300
            i += 1
    return sorted(out, key=lambda x: x[0])


def run(engine: CrisisEngine, events, ids: dict[str, str], updates: list[pb.Incident]) -> None:
    for t, mid, v, text in events:
        iid, ups = engine.observe(scored(t, mid, v, text), t)
        ids[mid] = iid
        updates += ups + engine.tick(t)


def restore(engine: CrisisEngine) -> CrisisEngine:
    return CrisisEngine.from_dict(json.loads(json.dumps(engine.to_dict())), engine.cfg)


def opened(updates: list[pb.Incident]) -> list[pb.Incident]:
    return [u for u in updates if u.state == pb.OPEN]


def test_a_second_problem_opens_its_own_incident_and_each_closes_on_its_own():
    rng = np.random.default_rng(11)
    a_until, b_until = START + 3 * 3600, START + 8 * 3600
    events = schedule(rng, a_until, b_until)
    engine, ids, updates = CrisisEngine(), {}, []
    # The worker restarts from its checkpoint twice: with A open and B rising, then with both open.
    cuts = [T0, START + 3600, START + 5400, float("inf")]
    for i, (lo, hi) in enumerate(itertools.pairwise(cuts)):
        if i:
            engine = restore(engine)
            assert len(engine.open_incidents()) == i
        run(engine, [e for e in events if lo <= e[0] < hi], ids, updates)

    new = opened(updates)
    assert [pb.IncidentKind.Name(u.kind) for u in new] == ["EMERGING_ISSUE", "EMERGING_ISSUE"], \
        [(u.id, list(u.reasons)) for u in new]
    first, second = new
    assert first.id != second.id
    assert all(s.startswith("x:a") for s in first.evidence.sample_mention_ids)
    assert all(s.startswith("x:b") for s in second.evidence.sample_mention_ids)   # B's samples, not A's
    assert "declined" in first.evidence.top_terms and "charged" in second.evidence.top_terms
    # Every later post of a problem joins its problem's incident, and no other post joins either.
    a_ids = [ids[m] for m in ids if m.startswith("a") and ids[m]]
    b_ids = [ids[m] for m in ids if m.startswith("b") and ids[m]]
    assert set(a_ids) == {first.id} and len(a_ids) >= 30
    assert set(b_ids) == {second.id} and len(b_ids) >= 40
    assert not any(ids[m] for m in ids if m.startswith("o"))
    # Each resolves on its own: A after it calms while B still goes on; B after it calms.
    resolved = {u.id: u.resolved_at.seconds for u in updates if u.state == pb.RESOLVED}
    assert set(resolved) == {first.id, second.id}
    assert a_until < resolved[first.id] < b_until
    assert resolved[second.id] > b_until
    assert engine.open_incidents() == []


def test_old_checkpoints_that_follow_one_cluster_still_load():
    rng = np.random.default_rng(11)
    events = schedule(rng, START + 3 * 3600, START + 3 * 3600)
    engine, ids, updates = CrisisEngine(), {}, []
    middle = START + 1800   # A open, B not yet started
    run(engine, [e for e in events if e[0] < middle], ids, updates)
    (inc,) = opened(updates)
    state = json.loads(json.dumps(engine.brand_state("acme")))
    em = state["emerging"]
    followed = [cid for cid, kind in em["followed"]]
    assert len(followed) == 1 and em["followed"][0][1] == pb.EMERGING_ISSUE
    # The format before several incidents per brand: one followed cluster, one streak, incidents by kind only.
    old = {k: v for k, v in em.items() if k not in ("followed", "streaks")}
    old.update(incident=followed[0], kind=pb.EMERGING_ISSUE, streak=[0, None])
    state["emerging"] = old
    for item in state["tracker"]["open"]:
        item.pop("cluster", None)
    state["tracker"].pop("cluster_cooldown", None)
    other = CrisisEngine(engine.cfg)
    other.clock = engine.clock
    other.load_brand_state(state)
    assert other.brands["acme"].emerging.followed == {followed[0]: pb.EMERGING_ISSUE}
    later = []
    run(other, [e for e in events if e[0] >= middle and e[0] < START + 3 * 3600], ids, later)
    new = opened(later)
    assert [pb.IncidentKind.Name(u.kind) for u in new] == ["EMERGING_ISSUE"]   # B only: A is not reopened
    assert new[0].id != inc.id
    assert {ids[m] for m in ids if m.startswith("a") and ids[m]} == {inc.id}


def test_at_most_max_incidents_emerging_issues_at_once():
    cfg = CrisisConfig(emerging=EmergingConfig(max_incidents=1))
    rng = np.random.default_rng(11)
    events = schedule(rng, START + 3 * 3600, START + 3 * 3600)
    engine, ids, updates = CrisisEngine(cfg), {}, []
    run(engine, [e for e in events if e[0] < START + 3 * 3600], ids, updates)
    assert len(opened(updates)) == 1   # B waits for a free slot (A still open)


def test_clusters_that_incidents_follow_are_never_evicted_or_merged_away():
    cfg = EmergingConfig(max_clusters=5, max_incidents=3)
    det, rng = EmergingDetector(cfg), np.random.default_rng(5)
    a, b, c = (det.add(unit(rng.normal(size=DIM)), T0 + i, MentionSummary(f"x:{i}", T0 + i)) for i in range(3))
    assert len({a, b, c}) == 3
    det.follow(a, pb.EMERGING_ISSUE)
    det.follow(b, pb.EMERGING_ISSUE)
    det.follow(c, pb.OUTAGE_CLUSTER)
    # Two followed clusters drifted as close as a post must be to join: still never merged into one.
    cb = det.cluster(b)
    assert cb is not None
    cb.centroid = near(det.clusters[0].centroid, 0.97, rng).astype(np.float32)
    for i in range(3, 80):
        det.add(unit(rng.normal(size=DIM)), T0 + i, MentionSummary(f"x:{i}", T0 + i))
    assert all(det.cluster(x) is not None for x in (a, b, c)) and len(det.clusters) == 5
    restored = EmergingDetector.from_dict(json.loads(json.dumps(det.to_dict())), cfg)
    assert restored.followed == {a: pb.EMERGING_ISSUE, b: pb.EMERGING_ISSUE, c: pb.OUTAGE_CLUSTER}
    det.unfollow(b)
    assert det.followed == {a: pb.EMERGING_ISSUE, c: pb.OUTAGE_CLUSTER}
