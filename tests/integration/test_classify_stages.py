"""The classify worker's staged batches on the real model and the real broker.

- `Scorer.prepare` + `Scorer.score_prepared` (the worker's two stages, length-bucketed) score exactly as
  `score_texts` does, and bucketed embeddings equal one-at-a-time ones;
- the worker as a process (`triage classify`, Faust agent with manual acks): every mention of a burst and
  of a trickle comes out once on mentions.scored, an undecodable record goes to the DLQ with the reason,
  a trickle is scored in batches of one (no waiting for a batch to fill) and a burst in large batches.
"""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from support import ServiceProcess, consume, free_port, wait_for

from services.classify.config import ClassifySettings
from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.timeutil import now_ts
from services.common.topics import all_topic_specs

TEXTS = [
    "@AcmeBank app is down again, can't log in at all",
    "Thanks @AcmeBank, the new card arrived in two days. Great service!",
    "@AcmeBank how do I change my PIN?",
    "@AcmeBank приложение не работает, не могу войти в аккаунт",
    "Your ATM at Main St sparked and burned my hand, @AcmeBank someone will get hurt. Calling my lawyer. "
    "This is the third time this month that something at that branch was broken and nobody fixed it, "
    "and the staff told me to write an email. I have photos of the burn and of the machine.",
    "ok",
    "@AcmeBank la app no funciona",
]


@pytest.fixture(scope="module")
def scorer():
    from services.classify.factory import build_scorer

    return build_scorer(ClassifySettings(precision="fp32"))


def _mention(run: str, i: int, text: str) -> pb.Mention:
    m = pb.Mention(source=pb.SOURCE_X, external_id=f"{run}-{i}", text=f"{text} #{i}", mention_id=f"x:{run}-{i}")
    m.brands.append("acmebank")
    m.received_at.CopyFrom(now_ts())
    return m


def test_the_two_stages_score_as_score_texts_does(scorer):
    mentions = [_mention("st", i, TEXTS[i % len(TEXTS)]) for i in range(40)]
    prepared = scorer.prepare(mentions)
    assert len(prepared.chunks) >= 2   # the long post is not padded into the short ones' pass
    staged = scorer.score_prepared(prepared)
    direct = scorer.score_texts([m.text for m in mentions])
    assert [sm.mention.mention_id for sm in staged] == [m.mention_id for m in mentions]
    for sm, ts in zip(staged, direct, strict=True):
        assert sm.priority == ts.priority and sm.language == ts.language
        for name, p in ts.intents.items():
            assert sm.intents[name] == pytest.approx(p, abs=1e-4)


def test_bucketed_embeddings_equal_one_at_a_time(scorer):
    texts = [TEXTS[i % len(TEXTS)] + f" #{i}" for i in range(20)]
    together = scorer.embed(texts)
    alone = np.vstack([scorer.embed([t]) for t in texts])
    assert float(np.min(np.sum(together * alone, axis=1))) >= 0.9999


async def test_worker_scores_a_burst_in_large_batches_and_a_trickle_one_by_one(kafka_broker_factory, tmp_path):
    # A private broker: the junk record below must not reach other tests reading the shared mentions.raw.
    kafka_bootstrap = kafka_broker_factory().bootstrap_servers
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    run = uuid.uuid4().hex[:8]
    env = {"TRIAGE_KAFKA_BOOTSTRAP": kafka_bootstrap, "TRIAGE_CLASSIFY_METRICS_PORT": str(free_port()),
           "TRIAGE_DATA_DIR": str(tmp_path / "faust"), "TRIAGE_CLASSIFY_APP_ID": f"stages-{run}",
           "TRIAGE_CRISIS_ENABLED": "false", "TRIAGE_CLASSIFY_MAX_BATCH": "16"}
    classify = ServiceProcess("classify", env, tmp_path)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        # Start-up: the first mention out means the model is loaded and the group has its partitions.
        first = _mention(run, 0, TEXTS[0])
        await producer.send_and_wait(topics.MENTIONS_RAW, codec.encode(first), key=first.mention_id.encode())

        async def ours() -> dict[str, pb.ScoredMention]:
            out = {}
            for _, _, v in await consume(kafka_bootstrap, [topics.MENTIONS_SCORED], idle=1.0, timeout=20):
                sm = codec.decode(v, pb.ScoredMention)
                if sm.mention.external_id.startswith(run):
                    out.setdefault(sm.mention.mention_id, []).append(sm)
            return out

        async def started() -> bool:
            assert classify.alive(), classify.log_tail()
            return bool(await ours())

        await wait_for(started, 240, "the classify worker's first scored mention", interval=2)
        # A trickle: one mention every 0.5 s, each should be scored on its own, at once.
        trickle = [_mention(run, i, TEXTS[i % len(TEXTS)]) for i in range(1, 6)]
        for m in trickle:
            await producer.send_and_wait(topics.MENTIONS_RAW, codec.encode(m), key=m.mention_id.encode())
            await asyncio.sleep(0.5)
        # A burst: 200 at once, plus one record that is not a Mention.
        burst = [_mention(run, i, TEXTS[i % len(TEXTS)]) for i in range(100, 300)]
        junk = b"\xff\x00 not a protobuf " + run.encode()
        futures = [await producer.send(topics.MENTIONS_RAW, codec.encode(m), key=m.mention_id.encode()) for m in burst]
        futures.append(await producer.send(topics.MENTIONS_RAW, junk, key=b"junk"))
        await asyncio.gather(*futures)
        expected = {m.mention_id for m in [first, *trickle, *burst]}
        got = await wait_for(lambda: _all(ours, expected), 240, "every mention scored", interval=2)
    finally:
        await producer.stop()
        classify.stop()
    assert set(got) == expected
    assert all(len(v) == 1 for v in got.values()), "a mention was scored twice"
    # The embedding sketch is crisis detection's only (protos/): consumers of mentions.scored never get it.
    assert not any(v[0].embedding_sketch for v in got.values())
    assert [got[m.mention_id][0].timings.batch_size for m in trickle] == [1] * len(trickle)
    burst_sizes = [got[m.mention_id][0].timings.batch_size for m in burst]
    assert max(burst_sizes) == 16 and sum(s == 16 for s in burst_sizes) >= len(burst) // 2
    dlq = [codec.decode(v, pb.DeadLetter) for _, _, v in await consume(kafka_bootstrap, [topics.MENTIONS_DLQ],
                                                                          idle=1.0, timeout=20)]
    ours_dlq = [d for d in dlq if d.original == junk]
    assert len(ours_dlq) == 1 and ours_dlq[0].reason.startswith("undecodable Mention")
    assert ours_dlq[0].source_topic == topics.MENTIONS_RAW


async def _all(ours, expected):  # type: ignore[no-untyped-def]
    got = await ours()
    return got if expected <= set(got) else None
