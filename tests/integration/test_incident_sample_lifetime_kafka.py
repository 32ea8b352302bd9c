"""On the real broker: a resolved incident's samples leave the compacted incidents topic after their lifetime,
and a restarted replica neither re-publishes it again nor touches incidents still within theirs."""

from __future__ import annotations

import time
import uuid

from support import consume

from services.classify.sample_lifetime import SampleLifetime, publish_due
from services.common import codec, topics
from services.common.codec import pb
from services.common.follower import TopicFollower
from services.common.kafka import ensure_topics, make_producer
from services.common.timeutil import ts_from_epoch

DAY = 86400.0


def incident(iid: str, brand: str, state: int, resolved_at: float) -> pb.Incident:
    inc = pb.Incident(id=iid, brand=brand, kind=pb.OUTAGE_CLUSTER, state=state, mention_count=9)
    inc.updated_at.CopyFrom(ts_from_epoch(resolved_at))
    if state == pb.RESOLVED:
        inc.resolved_at.CopyFrom(ts_from_epoch(resolved_at))
    inc.evidence.sample_mention_ids.append(f"x:{iid}")
    inc.evidence.sample_urls.append(f"https://x.com/ana/status/{iid}")
    return inc


async def latest(bootstrap: str, ids: set[str]) -> dict[str, pb.Incident]:
    out = {}
    for _t, key, value in await consume(bootstrap, [topics.INCIDENTS], idle=1.5, timeout=30):
        if key and key.decode() in ids:
            out[key.decode()] = codec.decode(value, pb.Incident)
    return out


async def test_resolved_incidents_lose_their_samples_after_the_lifetime_once(kafka_bootstrap):
    await ensure_topics(kafka_bootstrap, topics.specs_named(topics.INCIDENTS))
    run = uuid.uuid4().hex[:10]
    now = time.time()
    old, recent, still_open, elsewhere = (f"{run}-old", f"{run}-recent", f"{run}-open", f"{run}-elsewhere")
    records = [incident(old, f"{run}acme", pb.RESOLVED, now - 15 * DAY),
               incident(recent, f"{run}acme", pb.RESOLVED, now - DAY),
               incident(still_open, f"{run}acme", pb.OPEN, now - 30 * DAY),
               incident(elsewhere, f"{run}globex", pb.RESOLVED, now - 15 * DAY)]
    producer = make_producer(kafka_bootstrap, f"test-lifetime-{run}")
    await producer.start()
    try:
        for inc in records:
            await (await producer.send(topics.INCIDENTS, codec.encode(inc), key=inc.id.encode()))

        def owns(brand: str) -> bool:   # this replica's crisis stage holds acme; another replica holds globex
            return brand == f"{run}acme"

        async def replica_sweep() -> list[str]:
            lifetime = SampleLifetime(keep_seconds=14 * DAY)
            follower = TopicFollower(kafka_bootstrap, topics.INCIDENTS, lambda k, v: lifetime.observe(v, k),
                                     client_id=f"test-lifetime-{run}")
            await follower.start()
            try:
                return await publish_due(producer, lifetime, time.time(), owns)
            finally:
                await follower.stop()

        assert await replica_sweep() == [old]
        assert await replica_sweep() == [], "a restarted replica re-published an incident already without samples"
    finally:
        await producer.stop()

    after = await latest(kafka_bootstrap, {old, recent, still_open, elsewhere})
    assert list(after[old].evidence.sample_mention_ids) == [] and list(after[old].evidence.sample_urls) == []
    assert after[old].state == pb.RESOLVED and after[old].mention_count == 9
    for kept in (recent, still_open, elsewhere):
        assert list(after[kept].evidence.sample_mention_ids) == [f"x:{kept}"], kept
