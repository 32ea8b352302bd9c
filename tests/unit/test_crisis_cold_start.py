"""A brand's first minutes: the outage detector judges them against the window's own volume x the pooled share.

Found by the chaos suite: four calm brands, new to the engine, each with ~2 mentions a second of which one
template in ten ("pourquoi ma carte est bloquée ?") the model scores 0.61 outage. Before a minute closes the
learned rates know nothing of that volume, so 5-9 stray reports in a minute were judged against the cold
prior (0.1 expected) and every calm brand opened an outage. Now they open nothing, and two real bursts still do.
"""

from __future__ import annotations

from services.classify.crisis.engine import CrisisEngine
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch

T0 = 1_793_577_600.0


def _scored(t: float, i: int, brand: str, outage: float) -> pb.ScoredMention:
    sm = pb.ScoredMention(language="fr")
    m = sm.mention
    m.mention_id, m.external_id, m.source = f"x:{brand}-{i}", f"{brand}-{i}", pb.SOURCE_X
    m.text = f"pourquoi ma carte est bloquée ? #{i}" if outage > 0.5 else f"merci pour la carte #{i}"
    m.brands.append(brand)
    m.received_at.CopyFrom(ts_from_epoch(t))
    m.created_at.CopyFrom(ts_from_epoch(t - 1))
    sm.intents["outage_report"] = outage
    sm.sentiment.negative = 0.3
    return sm


def _opened(engine: CrisisEngine, sm: pb.ScoredMention, t: float) -> list[tuple[str, int]]:
    _, updates = engine.observe(sm, t)
    updates += engine.tick(t)
    return [(u.brand, u.kind) for u in updates if u.state == pb.OPEN]


def test_new_brands_with_a_steady_share_of_stray_outage_scores_open_nothing() -> None:
    engine = CrisisEngine()
    opened = []
    for i in range(4 * 90):                       # 4 brands x ~2 mentions/s for 45 s
        t = T0 + i / 8
        brand = ("globex", "initech", "umbrella", "hooli")[i % 4]
        opened += _opened(engine, _scored(t, i, brand, 0.61 if i % 10 == 3 else 0.02), t)
    assert opened == []


def test_a_burst_on_a_new_brand_still_opens_beside_them() -> None:
    engine = CrisisEngine()
    opened = []
    for i in range(4 * 90):
        t = T0 + i / 8
        brand = ("globex", "initech", "umbrella", "hooli")[i % 4]
        opened += _opened(engine, _scored(t, i, brand, 0.61 if i % 10 == 3 else 0.02), t)
        if i % 8 == 0:                            # 1 outage report a second for a brand with nothing else
            opened += _opened(engine, _scored(t, 10_000 + i, "acmenet", 0.9), t)
    assert opened == [("acmenet", pb.OUTAGE_CLUSTER)]


def test_a_young_workers_first_brand_does_not_set_the_pool_for_the_next() -> None:
    # CI, session 20: a worker's first minute held 6 mentions of one brand, 4 of them outage reports. The pool
    # was a ratio of per-minute rates with the prior worth one mention a minute, so it said 57% of all mentions
    # are outage reports, and a new brand's outage (3 reports every 8 s for a minute) was "usual" and opened
    # nothing. Pooled as counts with the prior worth `prior_mentions`, 4 of 6 barely move it.
    engine = CrisisEngine()
    for i in range(6):
        t = T0 + i
        _opened(engine, _scored(t, i, "acmebank", 0.9 if i < 4 else 0.02), t)
    opened = []
    for i in range(24):
        t = T0 + 90 + (i // 3) * 8 + (i % 3) * 0.1
        opened += _opened(engine, _scored(t, 100 + i, "fjordtel", 0.9), t)
    assert engine.pooled_share < 0.05, engine.pooled_share
    assert ("fjordtel", pb.OUTAGE_CLUSTER) in opened


def test_a_brands_prior_is_pooled_over_the_other_brands() -> None:
    # Leave-one-out: a brand's own reports are its evidence, not also its prior (alone on a worker, a brand with
    # a high stray share was shrunk towards itself).
    engine = CrisisEngine()
    for i in range(120):
        t = T0 + i * 30
        _opened(engine, _scored(t, i, "lonely", 0.9 if i % 5 == 0 else 0.02), t)
    assert engine.brands["lonely"].outage.pooled_share == engine.cfg.outage.prior_share
    assert engine.pooled_share > 0.05   # a new brand's prior: every brand, this one's 20% included (24+4 of 120+200)
    for i in range(120):
        t = T0 + 3600 + i * 30
        _opened(engine, _scored(t, 1000 + i, "calm", 0.02), t)
    assert engine.brands["calm"].outage.pooled_share > engine.cfg.outage.prior_share   # the other's 20% lifts it
    assert engine.brands["lonely"].outage.pooled_share < engine.cfg.outage.prior_share   # the calm one's 0%
