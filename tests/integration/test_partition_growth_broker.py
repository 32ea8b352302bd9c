"""Growing the router's partitions on a live cluster, by the procedure of docs/scaling.md ("Growing partitions"),
with real router workers (Faust, subprocesses) on a private broker.

The router's topics start at 2 partitions: one replica routes 200 mentions (an open incident pages PagerDuty,
every mention gets an SLA clock). `triage topics grow` is refused while the router runs; once it is stopped
and drained, the topics grow to 4 and the state changelog is re-keyed. A replica still configured for 2 refuses
to start; two replicas configured for 4 route 200 more mentions and the replies to 50 of the first ones. Every
mention is on the queues exactly once, PagerDuty got one trigger, and each reply stopped its SLA clock on the
replica that now owns it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics, make_producer, topic_partition_counts
from services.common.partition_growth import GrowthRefused, grow, plan_growth, read_live, router_state_owner
from services.common.timeutil import ts_from_epoch
from services.common.topics import PartitionLayout, all_topic_specs, partition_for, queue_topic
from tests.support import PD_KEY, REPO_ROOT, FakeApis, ServiceProcess, consume, free_port, running_app, wait_for

APP_ID = "it-grow-router"
STATE = topics.router_state_spec(APP_ID).name
BEFORE, AFTER = 2, 4
ROUTES = """\
route:
  receiver: normal
  routes:
    - matchers: ['priority="P1"']
      receiver: pagerduty
      group_wait: 1s
      group_interval: 3s
      continue: true
    - matchers: ['priority="P1"']
      receiver: urgent
receivers:
  - name: pagerduty
    pagerduty: {url: "%(base)s/v2/enqueue", routing_key_env: TEST_PD_KEY}
  - name: urgent
    kafka_queue: {queue: urgent}
  - name: normal
    kafka_queue: {queue: normal}
sla:
  P1: 15m
  P3: 24h
"""


def _incident_id() -> str:
    # One whose PagerDuty group moves to another partition when 2 become 4, so the grow must carry it over.
    return next(f"inc-grow-{i}" for i in range(100)
                if partition_for(f"pagerduty|incident:inc-grow-{i}", AFTER)
                != partition_for(f"pagerduty|incident:inc-grow-{i}", BEFORE))


INCIDENT = _incident_id()


def mention(i: int) -> pb.ScoredMention:
    p1 = i % 2 == 0
    sm = pb.ScoredMention(priority=pb.P1 if p1 else pb.P3, language="en", reasons=["test"],
                          incident_id=INCIDENT if p1 else "")
    m = sm.mention
    m.source, m.external_id, m.mention_id = pb.SOURCE_X, str(70_000 + i), f"x:{70_000 + i}"
    m.text, m.url = f"@acme mention {i}", f"https://x.com/u{i}/status/{70_000 + i}"
    m.brands.append("acme")
    return sm


async def produce(bootstrap: str, topic: str, items: list[tuple[str, bytes]]) -> None:
    producer = make_producer(bootstrap, "test-producer")
    await producer.start()
    try:
        futs = [await producer.send(topic, value, key=key.encode()) for key, value in items]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def queued_ids(bootstrap: str) -> list[str]:
    got = await consume(bootstrap, [queue_topic("urgent"), queue_topic("normal")], idle=0.5, timeout=10)
    return [codec.decode(v, pb.RoutedMention).scored.mention.mention_id for _, _, v in got]


async def queued_at_least(bootstrap: str, n: int) -> bool:
    return len(set(await queued_ids(bootstrap))) >= n


async def live_state(bootstrap: str, partitions: int) -> dict[str, dict[int, bytes]]:
    from aiokafka import AIOKafkaConsumer
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        return await read_live(consumer, STATE, partitions)
    finally:
        await consumer.stop()


async def test_router_partitions_grow_without_losing_or_duplicating_a_mention(kafka_broker_factory, tmp_path: Path):
    bootstrap = kafka_broker_factory().bootstrap_servers
    await ensure_topics(bootstrap, all_topic_specs(layout=PartitionLayout(router=BEFORE)))
    first, second = [mention(i) for i in range(200)], [mention(i) for i in range(200, 400)]
    apis = FakeApis()
    async with running_app(apis.app()) as base:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES % {"base": base})

        def env(partitions: int) -> dict[str, str]:
            return {"TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_ROUTES_FILE": str(routes),
                    "TRIAGE_ROUTER_APP_ID": APP_ID, "TRIAGE_ROUTER_METRICS_PORT": str(free_port()),
                    "TRIAGE_ROUTER_PARTITIONS": str(partitions), "TRIAGE_TICK_SECONDS": "0.5",
                    "TRIAGE_ROUTER_SESSION_TIMEOUT_SECONDS": "6", "TEST_PD_KEY": PD_KEY}

        inc = pb.Incident(id=INCIDENT, brand="acme", kind=pb.OUTAGE_CLUSTER, state=pb.OPEN, mention_count=200)
        inc.opened_at.CopyFrom(ts_from_epoch(time.time()))
        await produce(bootstrap, topics.INCIDENTS, [(INCIDENT, codec.encode(inc))])
        await produce(bootstrap, topics.MENTIONS_SCORED, [(m.mention.mention_id, codec.encode(m)) for m in first])
        router = ServiceProcess("router", {**env(BEFORE), "TRIAGE_DATA_DIR": str(tmp_path / "r0")}, tmp_path)
        try:
            await wait_for(lambda: len(apis.pd("trigger")) >= 1, 90, "the PagerDuty trigger", interval=1)
            await wait_for(lambda: queued_at_least(bootstrap, 200), 60, "the first 200 mentions queued", 1)
            plan = plan_growth("router", APP_ID)
            # 1. The stage must be stopped: the new count has to reach every replica at once.
            with pytest.raises(GrowthRefused, match="member"):
                await grow(bootstrap, plan, AFTER)
            await asyncio.sleep(2)   # the page requests' and SLA clocks' state writes of the last batch
        finally:
            router.stop()
        log = router.log_tail()
        assert await topic_partition_counts(bootstrap, plan.topics) == dict.fromkeys(plan.topics, BEFORE)
        before = await live_state(bootstrap, BEFORE)
        assert f"pagerduty|incident:{INCIDENT}" in {k.partition(":")[2] for k in before}, log
        assert len([k for k in before if k.startswith("sla:")]) == 200, log

        # 2.-3. Grow every co-partitioned topic and re-key the state, with the CLI a person runs.
        cli = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "services.cli", "topics", "grow", "--stage", "router",
                             "--partitions", str(AFTER), "--app-id", APP_ID, "--bootstrap", bootstrap],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert f"{STATE}: " in cli.stdout and "keys moved to their new partition" in cli.stdout, cli.stdout
        assert await topic_partition_counts(bootstrap, plan.topics) == dict.fromkeys(plan.topics, AFTER)
        after = await live_state(bootstrap, AFTER)
        assert set(after) == set(before)   # nothing lost, and each key in one partition: its owner's
        for key, copies in after.items():
            owner = router_state_owner(key)
            assert owner is not None and set(copies) == {partition_for(owner, AFTER)}, key

        # 4. Restart on the new count: two replicas, while one still on the old count refuses to start.
        dirs = {name: tmp_path / name for name in ("stale", "r1", "r2")}
        for d in dirs.values():
            d.mkdir()
        stale = ServiceProcess("router", {**env(BEFORE), "TRIAGE_DATA_DIR": str(dirs["stale"])}, dirs["stale"])
        replicas = [ServiceProcess("router", {**env(AFTER), "TRIAGE_DATA_DIR": str(dirs[n])}, dirs[n])
                    for n in ("r1", "r2")]
        # New mentions (on all 4 partitions) and replies to 50 of the first ones.
        assert {partition_for(m.mention.mention_id, AFTER) for m in second} == set(range(AFTER))
        answered = [m.mention.mention_id for m in first[:50]]
        try:
            await produce(bootstrap, topics.MENTIONS_SCORED,
                          [(m.mention.mention_id, codec.encode(m)) for m in second])
            await produce(bootstrap, topics.RESPONSES, [
                (mid, codec.encode(pb.ResponseEvent(mention_id=mid, kind=pb.RESPONDED, responder="ana",
                                                    at=ts_from_epoch(time.time()))))
                for mid in answered])
            await wait_for(lambda: queued_at_least(bootstrap, 400), 90, "all 400 mentions queued", 1)

            async def replies_stopped_their_clocks() -> bool:
                live = await live_state(bootstrap, AFTER)
                return not any(f"sla:{mid}" in live for mid in answered)
            await wait_for(replies_stopped_their_clocks, 30, "the 50 replies to stop their SLA clocks", 1)
            await asyncio.sleep(2)   # a duplicate or a second trigger would show up by now
            assert await asyncio.to_thread(stale.proc.wait, 30) == 2, stale.log_tail()
        finally:
            for r in [stale, *replicas]:
                r.stop()
        logs = "\n".join(r.log_tail(2000) for r in replicas)
        assert "mentions.scored has 4 partitions, the settings say 2 (TRIAGE_ROUTER_PARTITIONS)" in stale.log_tail()

    ids = await queued_ids(bootstrap)
    assert sorted(ids) == sorted(m.mention.mention_id for m in first + second), logs   # each exactly once
    assert len(apis.pd("trigger")) == 1, logs   # the moved group was found by its new owner: no second page
    live = await live_state(bootstrap, AFTER)
    assert len([k for k in live if k.startswith("sla:")]) == 400 - 50
