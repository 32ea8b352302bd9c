"""Emerging issues: online clusters of a brand's negative posts' embeddings (synthetic vectors, milliseconds).

A new problem nobody labelled (posts close to one direction of the embedding space) opens one EMERGING_ISSUE
incident; a brand's ordinary complaints (unrelated posts, or its usual big generic cluster at its usual share)
open none; memory stays bounded; the state survives a checkpoint; posts that read as outage reports join the
outage kind instead.
"""

from __future__ import annotations

import json

import numpy as np

from services.classify.crisis import CrisisConfig, CrisisEngine, EmergingConfig
from services.classify.crisis.emerging import EmergingDetector, sketch, unsketch
from services.classify.crisis.incidents import MentionSummary
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch

T0 = 1_793_577_600.0
DIM = 384
RNG = np.random.default_rng(7)
WORDS = "late rude refund queue seat bag app fee wifi meal gate staff price wait call email line".split()


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def near(center: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at about `cosine` to `center` (a paraphrase of it)."""
    noise = unit(rng.normal(size=DIM) - (rng.normal(size=DIM) @ center) * center)
    return unit(cosine * center + np.sqrt(1 - cosine ** 2) * noise)


def scored(t: float, mid: str, vector: np.ndarray | None, text: str, brand: str = "acme", lang: str = "en",
           negative: float = 0.9, outage: float = 0.01) -> pb.ScoredMention:
    sm = pb.ScoredMention(language=lang)
    m = sm.mention
    m.mention_id, m.external_id, m.url, m.text = f"x:{mid}", mid, f"https://x.example/{mid}", text
    m.source = pb.SOURCE_X
    m.brands.append(brand)
    m.received_at.CopyFrom(ts_from_epoch(t))
    m.created_at.CopyFrom(ts_from_epoch(t - 5))
    sm.intents["outage_report"] = outage
    sm.intents["complaint"] = 0.8
    sm.sentiment.negative = negative
    if vector is not None:
        sm.embedding_sketch = sketch(vector)
    return sm


def background(engine: CrisisEngine, start: float, hours: float, per_hour: int, rng: np.random.Generator,
               generic: np.ndarray | None = None, generic_share: float = 0.0) -> list[pb.Incident]:
    """Ordinary negative posts: unrelated to each other, plus a share close to one generic complaint."""
    out: list[pb.Incident] = []
    n = int(hours * per_hour)
    for i in range(n):
        t = start + i * 3600 / per_hour
        if generic is not None and rng.random() < generic_share:
            v = near(generic, 0.95, rng)
        else:
            v = unit(rng.normal(size=DIM))
        text = " ".join(rng.choice(WORDS, 5)) + f" {i}"
        out += engine.observe(scored(t, f"b{int(start)}-{i}", v, text), t)[1]
        if i % 5 == 4:
            out += engine.tick(t)
    return out


def kinds(updates: list[pb.Incident], state: int = pb.OPEN) -> list[str]:
    return [pb.IncidentKind.Name(u.kind) for u in updates if u.state == state]


def test_sketch_keeps_the_cosine_and_is_one_byte_per_dimension():
    a, b = unit(RNG.normal(size=DIM)), unit(RNG.normal(size=DIM))
    b = near(a, 0.9, RNG)
    sa, sb = sketch(a), sketch(b)
    assert len(sa) == DIM
    ua, ub = unsketch(sa), unsketch(sb)
    assert ua is not None and ub is not None
    assert abs(float(ua @ ub) - float(a @ b)) < 0.005
    assert float(ua @ a) > 0.999
    assert unsketch(b"") is None and sketch(np.zeros(DIM)) == b""


def test_a_new_problem_opens_one_emerging_issue_and_its_posts_join_it():
    engine, rng = CrisisEngine(), np.random.default_rng(1)
    assert background(engine, T0, 8, 30, rng) == []           # hours of unrelated complaints: nothing
    problem = unit(rng.normal(size=DIM))                        # "charged twice", in any language
    start, ids, updates = T0 + 8 * 3600, [], []
    for i in range(12):                                         # 12 posts in 30 min, amid ordinary ones
        t = start + i * 150
        iid, ups = engine.observe(scored(t, f"p{i}", near(problem, 0.95, rng), f"charged twice on my card {i}",
                                         lang=["en", "es", "hi"][i % 3]), t)
        ids.append(iid)
        updates += ups + engine.observe(scored(t + 60, f"o{i}", unit(rng.normal(size=DIM)),
                                               f"{' '.join(rng.choice(WORDS, 5))} x{i}"), t + 60)[1]
    assert kinds(updates) == ["EMERGING_ISSUE"]
    opened = next(u for u in updates if u.state == pb.OPEN)
    assert opened.id.startswith("inc-acme-emerging-")
    assert any("similar negative posts" in r for r in opened.reasons)
    assert "charged" in opened.evidence.top_terms and set(opened.evidence.languages) >= {"en", "es", "hi"}
    assert all(s.startswith("x:p") for s in opened.evidence.sample_mention_ids)   # representatives: its posts
    first = ids.index(opened.id)
    assert 3 <= first <= 9                                      # within 10 reports in 25 min, not at the first
    assert all(i == opened.id for i in ids[first:])             # every later post of the problem joins it
    # The unrelated posts in between do not join it.
    iid, _ = engine.observe(scored(start + 2000, "u1", unit(rng.normal(size=DIM)), "rude staff at gate 9"),
                            start + 2000)
    assert iid == ""


def test_a_brands_usual_generic_complaints_at_their_usual_share_open_nothing():
    engine, rng = CrisisEngine(), np.random.default_rng(2)
    generic = unit(rng.normal(size=DIM))                         # "worst service ever": 30% of its complaints
    assert background(engine, T0, 10, 40, rng, generic, 0.3) == []


def test_all_complaints_rising_together_is_no_emerging_issue():
    engine, rng = CrisisEngine(), np.random.default_rng(3)
    topics = [unit(rng.normal(size=DIM)) for _ in range(4)]
    out: list[pb.Incident] = []
    for hour in range(8):
        per_hour = 20 if hour < 6 else 60                        # the last 2 hours: 3x, every topic alike
        for i in range(per_hour):
            t = T0 + hour * 3600 + i * 3600 / per_hour
            v = near(topics[i % 4], 0.95, rng)
            out += engine.observe(scored(t, f"s{hour}-{i}", v, f"{' '.join(rng.choice(WORDS, 5))} {hour}-{i}"), t)[1]
    assert "EMERGING_ISSUE" not in kinds(out)


def test_memory_is_bounded_and_the_state_survives_a_checkpoint():
    cfg = EmergingConfig(max_clusters=8)
    det, rng = EmergingDetector(cfg), np.random.default_rng(4)
    problem = unit(rng.normal(size=DIM))
    for i in range(200):
        v = near(problem, 0.95, rng) if i % 4 == 0 else unit(rng.normal(size=DIM))   # 1 in 4 < max_clusters
        det.add(v, T0 + i * 30, MentionSummary(f"x:{i}", T0 + i * 30, terms=["word"], language="en"))
    assert len(det.clusters) <= 8
    assert max(cl.weight for cl in det.clusters) >= 40            # the recurring problem kept its cluster
    restored = EmergingDetector.from_dict(json.loads(json.dumps(det.to_dict())), cfg)
    now = T0 + 200 * 30
    assert [cl.id for cl in restored.clusters] == [cl.id for cl in det.clusters]
    assert restored.evaluate(now) == det.evaluate(now)
    v = near(problem, 0.95, rng)
    summary = MentionSummary("x:next", now, language="es")
    assert restored.add(v, now, summary) == det.add(v, now, summary)


def test_the_followed_cluster_is_never_evicted():
    cfg = EmergingConfig(max_clusters=4)
    det, rng = EmergingDetector(cfg), np.random.default_rng(5)
    first = det.add(unit(rng.normal(size=DIM)), T0, MentionSummary("x:0", T0))
    det.follow(first, pb.EMERGING_ISSUE)
    for i in range(1, 50):
        det.add(unit(rng.normal(size=DIM)), T0 + i, MentionSummary(f"x:{i}", T0 + i))
    assert det.cluster(first) is not None and len(det.clusters) == 4


def test_look_alike_outage_reports_join_the_outage_kind():
    cfg = CrisisConfig()
    engine, rng = CrisisEngine(cfg), np.random.default_rng(6)
    assert background(engine, T0, 8, 30, rng) == []
    problem = unit(rng.normal(size=DIM))
    updates = []
    for i in range(12):
        t = T0 + 8 * 3600 + i * 120
        updates += engine.observe(scored(t, f"q{i}", near(problem, 0.95, rng), f"no power on my street {i}",
                                         outage=0.9), t)[1]
    assert kinds(updates) == ["OUTAGE_CLUSTER"]


def test_a_brand_checkpoint_carries_the_clusters():
    engine, rng = CrisisEngine(), np.random.default_rng(8)
    background(engine, T0, 2, 30, rng)
    state = json.loads(json.dumps(engine.brand_state("acme")))
    assert len(state["emerging"]["clusters"]) > 0
    other = CrisisEngine()
    other.load_brand_state(state)
    assert other.brands["acme"].emerging.to_dict() == engine.brands["acme"].emerging.to_dict()
