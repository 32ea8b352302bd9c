"""Issue 16: sparse brands and real-feed artefacts (duplicates, pile-ups on one instant, late events)."""

from __future__ import annotations

import random

from services.classify.crisis import CrisisEngine
from services.classify.crisis.engine import text_key
from services.classify.crisis.outage import OutageDetector
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch

T0 = 1_793_577_600.0


def scored(t: float, mid: str, text: str, brand: str = "sparse", outage: float = 0.01,
           created: float | None = None) -> pb.ScoredMention:
    sm = pb.ScoredMention(language="en")
    m = sm.mention
    m.mention_id, m.external_id, m.text = f"x:{mid}", mid, text
    m.brands.append(brand)
    m.received_at.CopyFrom(ts_from_epoch(t))
    m.created_at.CopyFrom(ts_from_epoch(t if created is None else created))
    sm.intents["outage_report"] = outage
    sm.sentiment.negative = 0.8 if outage > 0.5 else 0.2
    return sm


def sparse_history(engine: CrisisEngine, per_minute: float, hours: float, seed: int = 1,
                   outage_share: float = 0.0) -> tuple[float, list[pb.Incident]]:
    rng = random.Random(seed)
    t, out, i, end = T0, [], 0, T0 + hours * 3600
    next_tick = T0
    while True:
        t += rng.expovariate(per_minute / 60)
        if t >= end:
            break
        while next_tick <= t:
            out += engine.tick(next_tick)
            next_tick += 10
        o = 0.9 if rng.random() < outage_share else 0.01
        out += engine.observe(scored(t, f"h{i}", f"post {i} about my card {rng.random():.6f}", outage=o), t)[1]
        i += 1
    return end, out


def run_quiet(engine: CrisisEngine, start: float, seconds: int) -> list[pb.Incident]:
    return [u for s in range(0, seconds, 10) for u in engine.tick(start + s)]


def test_sparse_brand_cluster_is_not_cancelled_by_its_companion_posts():
    # A brand with ~0.3 mentions a minute, 1 in 10 of them outage-like: the old share-of-volume expectation
    # turned 8 reports + 15 companion complaints in a minute into an expectation above the cluster.
    det = OutageDetector()
    for minute in range(24 * 60):
        t = T0 + minute * 60
        if minute % 4 == 0:
            det.add_other(t)
        if minute % 40 == 0:
            det.add(t)
        det.evaluate(t + 30)
    t = T0 + 24 * 3600
    for k in range(15):
        det.add_other(t + k * 4)
    for k in range(8):
        det.add(t + k * 7)
    assert det.expected_count(t + 59, 60) < 0.2
    assert any(det.evaluate(t + 50 + s).firing for s in range(0, 60, 10))


def test_sparse_brand_outage_cluster_opens_an_incident():
    engine = CrisisEngine()
    end, out = sparse_history(engine, 0.3, 26, outage_share=0.02)
    assert [u for u in out if u.state == pb.OPEN] == []
    for k in range(8):
        t = end + k * 11
        out += engine.observe(scored(t, f"o{k}", f"app down cannot login #{k}", outage=0.9), t)[1]
    out += run_quiet(engine, end + 90, 600)
    assert [u.kind for u in out if u.state == pb.OPEN] == [pb.OUTAGE_CLUSTER]


def test_sparse_brand_volume_burst_opens_a_spike_and_calm_does_not():
    engine = CrisisEngine()
    end, out = sparse_history(engine, 0.3, 26, seed=5)
    assert out == []
    for k in range(14):   # 14 distinct posts in 2 minutes on a brand with ~0.3 a minute
        t = end + k * 8
        out += engine.observe(scored(t, f"b{k}", f"card declined at the shop number {k} today"), t)[1]
    out += run_quiet(engine, end + 120, 300)
    assert [u.kind for u in out if u.state == pb.OPEN] == [pb.VOLUME_SPIKE]


def test_near_duplicates_and_pile_ups_do_not_open_incidents():
    engine = CrisisEngine()
    end, out = sparse_history(engine, 0.3, 26, seed=2)
    assert out == []
    text = "Huge thanks to everyone at the airport lounge today"
    for k in range(100):    # copies and retweets of one post
        t = end + k * 0.6
        variant = text if k % 2 else f"RT @fan{k}: {text} https://t.co/x{k}"
        out += engine.observe(scored(t, f"d{k}", variant), t)[1]
    t = end + 1800
    for k in range(60):     # a backfill: 60 posts stamped on one instant (23:59:59 style)
        out += engine.observe(scored(t + k * 0.1, f"p{k}", f"distinct backfilled post {k}", created=t), t)[1]
    for k in range(12):     # ... also outage reports
        out += engine.observe(scored(t + 10, f"po{k}", f"app down {k}", outage=0.9, created=t), t + 10)[1]
    out += run_quiet(engine, t + 20, 900)
    assert [u for u in out if u.state == pb.OPEN] == []
    assert engine.brands["sparse"].skipped >= 99 + 57
    assert text_key(f"RT @a: {text} https://t.co/y") == text_key(text.upper() + "!!")


def test_late_events_are_counted_but_do_not_reopen_a_resolved_incident():
    engine = CrisisEngine()
    end, _ = sparse_history(engine, 0.3, 26, seed=3)
    out = []
    for k in range(20):
        t = end + k * 5
        out += engine.observe(scored(t, f"o{k}", f"outage again #{k}", outage=0.9), t)[1]
    out += run_quiet(engine, end + 100, 3600)
    assert [u.state for u in out if u.state != pb.UPDATED] == [pb.OPEN, pb.RESOLVED]
    # An hour later, a delayed batch of reports from the outage's minutes arrives.
    now = end + 3 * 3600
    engine.tick(now)
    late = []
    for k in range(20):
        late += engine.observe(scored(end + k * 5 + 2, f"late{k}", f"outage again late #{k}", outage=0.9), now)[1]
    late += run_quiet(engine, now, 900)
    assert late == []
    assert engine.brands["sparse"].late == 20


def test_backtest_of_generated_real_feed_artefacts():
    import json

    from bench.backtest_scenarios import generate
    from services.analysis.backtest import parse_lines, run_backtest, score_rows
    from services.common.timeutil import epoch

    def opened(scenario: str) -> list[tuple[str, str, str]]:
        rows = sorted(parse_lines(json.dumps(r) for r in generate(scenario)), key=lambda r: epoch(r.mention.created_at))
        return [(e["brand"], e["kind"], e["at"]) for e in run_backtest(score_rows(rows, None)).opened()]

    got = opened("sparse-outage")   # 8 reports in 90 s on a 300-a-day brand, day 4 10:00Z
    assert [(b, k) for b, k, _ in got] == [("sparse", "OUTAGE_CLUSTER")]
    assert "2026-11-05T10:00:00Z" <= got[0][2] <= "2026-11-05T10:02:00Z"
    assert opened("backfill") == []   # 60 posts stamped 23:59:59
    assert opened("dupes") == []      # 200 copies of one post in 100 s
