"""Emerging issues with the real encoder: one problem reported in Spanish, English and Hindi is one cluster and
one incident; unrelated complaints do not join it.

The real converted e5-small and trained heads (`scorer`), the real crisis engine, real customer-care tweets
(the shared data's first customer turns) as the brand's ordinary complaints. No broker: the Kafka path is
tests/e2e/test_crisis_pipeline.py's.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from services.classify.config import ClassifySettings
from services.classify.crisis import CrisisEngine
from services.classify.crisis.emerging import EmergingDetector, unsketch
from services.classify.crisis.incidents import MentionSummary
from services.classify.training.datasets import SHARED_DATA
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch

T0 = 1_793_577_600.0

# Three problems no intent head was trained on, each in English, Spanish and Hindi.
PROBLEMS = {
    "charged_twice": [
        "@AcmeBank I was charged twice for the same purchase, two identical payments on my card",
        "@AcmeBank me cobraron dos veces la misma compra, tengo dos cargos iguales en mi tarjeta",
        "@AcmeBank एक ही खरीदारी के लिए मेरे कार्ड से दो बार पैसे कट गए, दो एक जैसे चार्ज दिख रहे हैं",
    ],
    "card_declined": [
        "@AcmeBank my card is declined at every shop today even though I have money in the account",
        "@AcmeBank mi tarjeta es rechazada en todas las tiendas hoy aunque tengo saldo en la cuenta",
        "@AcmeBank आज हर दुकान पर मेरा कार्ड रिजेक्ट हो रहा है जबकि खाते में पैसे हैं",
    ],
    "data_leak": [
        "@AcmeBank my personal data was leaked, my name, address and account number are online",
        "@AcmeBank se filtraron mis datos personales, mi nombre, dirección y número de cuenta están en internet",
        "@AcmeBank मेरा निजी डेटा लीक हो गया है, मेरा नाम, पता और खाता नंबर इंटरनेट पर है",
    ],
}
UNRELATED = [
    "@AcmeBank the staff at your branch were so rude to me today",
    "@AcmeBank I have been waiting on hold for two hours, terrible service",
    "@AcmeBank your monthly fees are way too high, thinking of leaving",
    "@AcmeBank the branch closed early again and nobody told us",
    "@AcmeBank still waiting for my new card to arrive after three weeks",
]


@pytest.fixture(scope="module")
def scorer():
    from services.classify.factory import build_scorer

    return build_scorer(ClassifySettings())


CUSTOMER_CARE = SHARED_DATA / "customer-care-unlabelled" / "customer_care_texts.jsonl"
# The same skip as the other tests that read ../shared/data: a clone without it (set TRIAGE_SHARED_DATA) skips.
needs_customer_care = pytest.mark.skipif(not CUSTOMER_CARE.exists(), reason=f"shared data not present: {CUSTOMER_CARE}")


def customer_care_complaints(n: int) -> list[str]:
    out = []
    with open(CUSTOMER_CARE, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line.replace("\\ ", " "), strict=False)
            except ValueError:
                continue
            if row.get("role") == "customer_first_turn":
                out.append(row["text"])
    return out[:n]


def test_one_problem_in_three_languages_is_one_cluster_and_unrelated_complaints_are_not(scorer):
    texts = [t for v in PROBLEMS.values() for t in v] + UNRELATED
    vectors = [unsketch(sm.embedding_sketch) for sm in scorer.score_mentions(
        [pb.Mention(mention_id=f"x:{i}", text=t, brands=["acme"]) for i, t in enumerate(texts)])]
    det = EmergingDetector()
    ids = [det.add(v, T0 + i, MentionSummary(f"x:{i}", T0 + i)) for i, v in enumerate(vectors) if v is not None]
    assert len(ids) == len(texts)
    clusters = [ids[3 * k: 3 * k + 3] for k in range(len(PROBLEMS))]
    assert all(len(set(c)) == 1 for c in clusters), clusters              # es, en, hi: one cluster each
    assert len({c[0] for c in clusters}) == len(PROBLEMS)                  # three problems, three clusters
    problem_ids = {c[0] for c in clusters}
    assert not problem_ids & set(ids[3 * len(PROBLEMS):])                   # unrelated complaints join none


def scored_mentions(scorer, texts: list[str], times: list[float], prefix: str) -> list[pb.ScoredMention]:
    mentions = []
    for i, (text, t) in enumerate(zip(texts, times, strict=True)):
        m = pb.Mention(mention_id=f"x:{prefix}{i}", external_id=f"{prefix}{i}", text=text, brands=["acme"],
                       url=f"https://x.example/{prefix}{i}", source=pb.SOURCE_X)
        m.received_at.CopyFrom(ts_from_epoch(t))
        m.created_at.CopyFrom(ts_from_epoch(t - 5))
        mentions.append(m)
    return scorer.score_mentions(mentions)


@needs_customer_care
def test_a_problem_reported_in_three_languages_opens_one_emerging_issue(scorer):
    engine = CrisisEngine()
    # Most of a day of the brand's ordinary complaints: real customer-care tweets, 10 an hour.
    calm = customer_care_complaints(200)
    day = scored_mentions(scorer, calm, [T0 + i * 360 for i in range(len(calm))], "c")
    updates = []
    for sm in day:
        updates += engine.observe(sm)[1]
        updates += engine.tick(engine.clock)
    assert [pb.IncidentKind.Name(u.kind) for u in updates if u.state == pb.OPEN] == []
    # "Charged twice": four reports in each language within 45 minutes, amid the ordinary traffic; the
    # worker's timer ticks the engine between mentions (every 30 s here).
    start = T0 + len(calm) * 360
    texts = [f"{t} ({k})" for k in range(4) for t in PROBLEMS["charged_twice"]]
    burst = scored_mentions(scorer, texts, [start + i * 240 for i in range(len(texts))], "p")
    more = scored_mentions(scorer, UNRELATED, [start + 150 + i * 600 for i in range(len(UNRELATED))], "u")
    tagged = {}
    for sm in sorted([*burst, *more], key=lambda s: s.mention.received_at.seconds):
        while engine.clock + 30 < sm.mention.received_at.seconds:
            updates += engine.tick(engine.clock + 30)
        iid, ups = engine.observe(sm)
        updates += ups
        tagged[sm.mention.mention_id] = iid
    opened = [u for u in updates if u.state == pb.OPEN]
    assert [pb.IncidentKind.Name(u.kind) for u in opened] == ["EMERGING_ISSUE"], [u.reasons for u in opened]
    inc = opened[0]
    assert set(inc.evidence.languages) >= {"en", "es", "hi"}
    assert all(mid.startswith("x:p") for mid in inc.evidence.sample_mention_ids)
    assert tagged[burst[-1].mention.mention_id] == inc.id                  # later reports join it
    assert all(tagged[sm.mention.mention_id] == "" for sm in more)          # unrelated complaints do not
    assert np.isfinite(inc.severity) and inc.severity > 0


@needs_customer_care
async def test_on_the_real_broker_a_problem_in_three_languages_opens_one_emerging_issue(
        scorer, kafka_bootstrap: str, tmp_path: Path) -> None:
    """The same stream through Kafka and the Faust crisis agent wired like the worker's (scored by the real
    model here, sketches included): exactly one incident, an EMERGING_ISSUE in three languages; a calm day of
    real complaints before it opens nothing."""
    import time
    import uuid

    from services.common import codec
    from services.common.kafka import ensure_topics, make_producer
    from services.common.topics import TopicSpec, all_topic_specs
    from tests.integration.test_crisis_incidents import incidents_for, make_app, stop
    from tests.support import wait_for

    brand = f"acme{uuid.uuid4().hex[:6]}"
    input_topic = f"crisis-test-in-{uuid.uuid4().hex[:6]}"
    await ensure_topics(kafka_bootstrap, [*all_topic_specs(), TopicSpec(input_topic, 1)])
    t0 = time.time() - 30 * 3600     # the calm day, then the problem, ending about now
    calm = customer_care_complaints(200)
    stream = scored_mentions(scorer, calm, [t0 + i * 360 for i in range(len(calm))], "c")
    start = t0 + len(calm) * 360
    texts = [f"{t} ({k})" for k in range(4) for t in PROBLEMS["charged_twice"]]
    burst = scored_mentions(scorer, texts, [start + i * 240 for i in range(len(texts))], "p")
    stream += burst + scored_mentions(scorer, UNRELATED, [start + 150 + i * 600 for i in range(len(UNRELATED))], "u")
    stream.sort(key=lambda sm: sm.mention.received_at.ToNanoseconds())
    for sm in stream:
        sm.mention.brands[:] = [brand]
        sm.mention.mention_id = f"x:{brand}-{sm.mention.external_id}"
    assert all(sm.embedding_sketch for sm in burst), "the scorer sketches each negative post"
    clock = [t0]   # behind the stream: the engine's clock follows the event times it sees
    producer = make_producer(kafka_bootstrap, "test-emerging-feed")
    await producer.start()
    app = make_app(kafka_bootstrap, f"test-emerging-{uuid.uuid4().hex[:6]}", tmp_path / "a", input_topic, clock)
    await app.start()
    try:
        for sm in stream:
            await producer.send(input_topic, codec.encode(sm), key=sm.mention.mention_id.encode())
        await producer.flush()

        async def opened() -> list[pb.Incident]:
            incs = await incidents_for(kafka_bootstrap, brand, until=1)
            return incs if any(i.state == pb.OPEN for i in incs) else []

        incs = await wait_for(opened, 120, "an incident for the brand")
        clock[0] = stream[-1].mention.received_at.seconds + 30
        await asyncio.sleep(3)   # a few more ticks: nothing else may open
        incs = await incidents_for(kafka_bootstrap, brand, until=1)
    finally:
        await stop(app)
        await producer.stop()
    assert {i.id for i in incs} == {incs[0].id}, "exactly one incident"
    first = incs[0]
    assert first.state == pb.OPEN and first.kind == pb.EMERGING_ISSUE, [i.reasons for i in incs]
    assert set(incs[-1].evidence.languages) >= {"en", "es", "hi"}
    assert first.opened_at.seconds >= start, "the calm day opened nothing"
    assert all(mid.split("-", 1)[1].startswith("p") for mid in incs[-1].evidence.sample_mention_ids)
