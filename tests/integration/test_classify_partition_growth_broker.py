"""Growing the classify stage's partitions on a live cluster, by the procedure of docs/scaling.md ("Growing
partitions"), with real classify workers (the real model, Faust, subprocesses) on a private broker.

`mentions.raw` and `triage.classify.crisis-input` start at 2 partitions. One replica scores a first stream:
ordinary mentions of three brands and the start of an outage of a fourth, whose crisis partition moves when 2
become 4; the outage opens an incident. `triage topics grow` is refused while the replica runs, and once it is
stopped, while the crisis input holds a record it has not consumed (a replica restarted on the old count
drains it). Mentions keep arriving on `mentions.raw` while classify is down: that backlog does not block the
grow. The CLI grows both topics to 4; a replica configured for 4 scores the backlog and the rest of the
outage. No mention is lost (every one is on `mentions.scored`; classify is at-least-once), a router downstream
puts each on the queue topics exactly once, and the outage split across the grow is ONE incident: the brand's
crisis state (a GlobalTable every replica reads whole) was found under its new partition, and the outage's
later reports are tagged with the incident opened before the grow; no second one opens.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.classify.app import CRISIS_BRAND_HEADER, CRISIS_PRIMARY_HEADER
from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics, make_producer, topic_partition_counts
from services.common.partition_growth import GrowthRefused, group_members, grow, plan_growth
from services.common.timeutil import ts_from_epoch
from services.common.topics import PartitionLayout, all_topic_specs, partition_for, queue_topic
from tests.support import REPO_ROOT, ServiceProcess, consume, free_port, wait_for, wait_ready

# Out of `make test` since a CI dry run lost `x:o61` (offset 0 of a new partition, one replica; two replicas lost
# one in 2 of 4 runs): records Faust hands on just before its flow-control resume empties the agents' buffers at
# the end of a rebalance. The fetch guard now reads them again (services/common/fetch_guard.py, `watch_flow`);
# `make test-classify-grow` runs it until it is back in `make test`.
pytestmark = pytest.mark.skipif(
    os.environ.get("TRIAGE_TEST_CLASSIFY_GROW") != "1",
    reason="the classify grow on the real broker: `make test-classify-grow` runs it")

APP_ID = "it-grow-classify"
BEFORE, AFTER = 2, 4
# The outage's brand: its crisis partition moves when 2 become 4, so its state has a new owner after the grow.
BRAND = next(b for b in ("fjordtel", "fjordnet", "fjordmobil", "fjordcom", "fjordair", "fjordbank")
             if partition_for(b, BEFORE) != partition_for(b, AFTER))
OUTAGE = [
    "@FjordTel app is down, can't log in at all",
    "is @FjordTel down? error 503 every time I try to pay",
    "@FjordTel la app no funciona, no puedo entrar",
    "@FjordTel приложение не работает, не могу войти",
    "@FjordTel App geht nicht, Login schlägt fehl",
    "@FjordTel no internet since this morning, whole area offline",
]
ORDINARY = [
    "@{b} when does the new plan start?",
    "@{b} thanks for the quick help yesterday!",
    "@{b} do you ship to Norway?",
    "@{b} love the new design",
]
OTHERS = ("acme", "globex", "initech")
ROUTES = """\
route:
  receiver: normal
  routes:
    - matchers: ['priority="P1"']
      receiver: urgent
receivers:
  - name: urgent
    kafka_queue: {queue: urgent}
  - name: normal
    kafka_queue: {queue: normal}
"""


def mention(tag: str, i: int, text: str, brand: str, rng: random.Random) -> pb.Mention:
    ext = f"{tag}{i}"
    m = pb.Mention(source=pb.SOURCE_X, external_id=ext, mention_id=f"x:{ext}", text=f"{text} #{i}",
                   url=f"https://x.com/u{i}/status/{ext}")
    m.author.handle, m.author.follower_count = f"u{i}", rng.randint(5, 3000)
    m.brands.append(brand)
    return m


async def send(bootstrap: str, mentions: list[pb.Mention]) -> None:
    """To mentions.raw keyed by mention id (as ingest does), stamped as received now."""
    producer = make_producer(bootstrap, "test-grow-classify")
    await producer.start()
    try:
        now = ts_from_epoch(time.time())
        for m in mentions:
            m.received_at.CopyFrom(now)
            m.created_at.CopyFrom(now)
        futs = [await producer.send(topics.MENTIONS_RAW, codec.encode(m), key=m.mention_id.encode())
                for m in mentions]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def scored(bootstrap: str) -> list[pb.ScoredMention]:
    got = await consume(bootstrap, [topics.MENTIONS_SCORED], idle=1.0, timeout=20)
    return [codec.decode(v, pb.ScoredMention) for _, _, v in got]


async def brand_incidents(bootstrap: str) -> list[pb.Incident]:
    got = await consume(bootstrap, [topics.INCIDENTS], idle=0.5, timeout=5)
    return [i for i in (codec.decode(v, pb.Incident) for _, _, v in got) if i.brand == BRAND]


async def queued_ids(bootstrap: str) -> list[str]:
    got = await consume(bootstrap, [queue_topic("urgent"), queue_topic("normal")], idle=1.0, timeout=20)
    return [codec.decode(v, pb.RoutedMention).scored.mention.mention_id for _, _, v in got]


async def queued_at_least(bootstrap: str, n: int) -> bool:
    return len(set(await queued_ids(bootstrap))) >= n


async def group_left(bootstrap: str) -> bool:
    """The stopped replicas are out of the group: a static member (POD_NAME, as deployed) sends no LeaveGroup and
    stays a member until its session timeout passes."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await group_members(admin, APP_ID) == 0
    finally:
        await admin.close()


async def test_classify_partitions_grow_without_losing_a_mention_or_the_crisis_state(
        kafka_broker_factory, tmp_path: Path):
    bootstrap = kafka_broker_factory().bootstrap_servers
    await ensure_topics(bootstrap, all_topic_specs(layout=PartitionLayout(classify=BEFORE)))
    rng = random.Random(27)
    outage = [mention("o", i, rng.choice(OUTAGE), BRAND, rng) for i in range(400)]
    ordinary = [mention("n", i, rng.choice(ORDINARY).format(b=b), b, rng)
                for i, b in enumerate(OTHERS * 40)]
    sent: list[pb.Mention] = []

    def start(name: str, partitions: int) -> tuple[ServiceProcess, str]:
        d = tmp_path / name
        d.mkdir()
        port = free_port()
        env = {"TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_CLASSIFY_APP_ID": APP_ID, "POD_NAME": name,
               "TRIAGE_CLASSIFY_PARTITIONS": str(partitions), "TRIAGE_TORCH_THREADS": "1",
               "TRIAGE_CLASSIFY_METRICS_PORT": str(port), "TRIAGE_CLASSIFY_SESSION_TIMEOUT_SECONDS": "8",
               "TRIAGE_DATA_DIR": str(d / "data")}
        return ServiceProcess("classify", env, d), f"http://127.0.0.1:{port}/readyz"

    async def all_scored() -> bool:
        return {sm.mention.mention_id for sm in await scored(bootstrap)} >= {m.mention_id for m in sent}

    plan = plan_growth("classify", APP_ID)
    procs: list[ServiceProcess] = []
    try:
        # 1. One replica on 2 partitions: an outage starts (20 reports every 4 s) among ordinary mentions, and
        # goes on until the incident is open.
        first, url = start("c0", BEFORE)
        procs.append(first)
        await wait_ready(first, url)
        o = n = 0
        for _ in range(15):
            batch = outage[o:o + 20] + ordinary[n:n + 6]
            o, n = o + 20, n + 6
            await send(bootstrap, batch)
            sent += batch
            if await brand_incidents(bootstrap):
                break
            await asyncio.sleep(4)
        incidents = await wait_for(lambda: brand_incidents(bootstrap), 60, f"an incident for {BRAND}", 2)
        incident = incidents[0].id
        await wait_for(all_scored, 120, "the first stream scored", 2)
        before_grow = len(sent)
        # The stage must be stopped: the new count has to reach every replica at once.
        with pytest.raises(GrowthRefused, match="member"):
            await grow(bootstrap, plan, AFTER)
        await asyncio.sleep(2)
        first.stop()
        await wait_for(lambda: group_left(bootstrap), 30, "the stopped replica's session to expire", 1)

        # A crisis-input record the stopped stage has not consumed (a hand-off of a scored mention to its brand's
        # crisis owner): its brand's owner is decided by the count, so the grow waits for it.
        handoff = pb.ScoredMention(language="en", priority=pb.P4, reasons=["test"])
        handoff.mention.CopyFrom(mention("h", 0, "@acme quick question", "acme", rng))
        handoff.mention.received_at.CopyFrom(ts_from_epoch(time.time()))
        producer = make_producer(bootstrap, "test-grow-handoff")
        await producer.start()
        try:
            await producer.send_and_wait(topics.CLASSIFY_CRISIS_INPUT, codec.encode(handoff), key=b"acme",
                                         headers=[(CRISIS_BRAND_HEADER, b"acme"), (CRISIS_PRIMARY_HEADER, b"1")])
        finally:
            await producer.stop()
        sent.append(handoff.mention)
        with pytest.raises(GrowthRefused, match=rf"{re.escape(topics.CLASSIFY_CRISIS_INPUT)} \(1 records\)"):
            await grow(bootstrap, plan, AFTER)
        # Let the stage finish it: a replica on the old count drains the crisis input, then stops.
        drain, url = start("c0-drain", BEFORE)
        procs.append(drain)
        await wait_ready(drain, url)
        await wait_for(all_scored, 120, "the hand-off drained", 2)
        await asyncio.sleep(2)
        drain.stop()
        await wait_for(lambda: group_left(bootstrap), 30, "the stopped replica's session to expire", 1)

        # Ingest goes on while classify is down: mentions.raw keeps a backlog (on the old 2 partitions), which
        # does not block the grow (scoring keeps no keyed state).
        backlog = outage[o:o + 20] + ordinary[n:n + 6]
        o, n = o + 20, n + 6
        await send(bootstrap, backlog)
        sent += backlog

        # 2.-3. Grow both co-partitioned topics, with the CLI a person runs.
        cli = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "services.cli", "topics", "grow", "--stage", "classify",
                             "--partitions", str(AFTER), "--app-id", APP_ID, "--bootstrap", bootstrap],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert f"{topics.CLASSIFY_CRISIS_INPUT}: {BEFORE} -> {AFTER} partitions" in cli.stdout, cli.stdout
        assert await topic_partition_counts(bootstrap, plan.topics) == dict.fromkeys(plan.topics, AFTER)

        # 4. A replica on the new count scores the backlog and the rest of the outage (on all 4 partitions).
        replicas = [start("c1", AFTER)]
        procs += [p for p, _ in replicas]
        for p, url in replicas:
            await wait_ready(p, url)
        for _ in range(5):
            batch = outage[o:o + 20] + ordinary[n:n + 6]
            o, n = o + 20, n + 6
            await send(bootstrap, batch)
            sent += batch
            await asyncio.sleep(4)
        assert {partition_for(m.mention_id, AFTER) for m in sent[before_grow:]} == set(range(AFTER))
        try:
            await wait_for(all_scored, 180, "every mention scored", 2)
        except AssertionError as exc:
            got = {sm.mention.mention_id for sm in await scored(bootstrap)}
            missing = [(m.mention_id, k >= before_grow, partition_for(m.mention_id, BEFORE),
                        partition_for(m.mention_id, AFTER), m.brands[0])
                       for k, m in enumerate(sent) if m.mention_id not in got]
            raise AssertionError(f"{exc}: {len(missing)} missing (id, after the grow, p/2, p/4, brand): "
                                 f"{missing[:40]}") from exc
        await asyncio.sleep(3)   # a second incident would show up by now
        # The router downstream (a replica of its own): what a responder's inbox gets from the queue topics.
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES)
        router = ServiceProcess("router", {"TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_ROUTES_FILE": str(routes),
                                           "TRIAGE_ROUTER_APP_ID": f"{APP_ID}-router",
                                           "TRIAGE_ROUTER_METRICS_PORT": str(free_port()),
                                           "TRIAGE_DATA_DIR": str(tmp_path / "router")}, tmp_path)
        procs.append(router)
        await wait_for(lambda: queued_at_least(bootstrap, len(sent)), 120, "every mention queued", 2)
        await asyncio.sleep(2)   # a second copy would show up by now
    finally:
        logs = ""
        for p in procs:
            p.stop()
            logs += f"\n--- {p.log}\n" + p.log_tail(2500)

    out = await scored(bootstrap)
    # None lost: every mention is on mentions.scored (at least once: classify is at-least-once, a replica that
    # loses a partition in a rebalance mid-batch may score a few records its successor scores again,
    # docs/operating.md "Exactly once"), and exactly once on the queue topics, past the router's dedupe.
    assert {sm.mention.mention_id for sm in out} == {m.mention_id for m in sent}, logs
    queued = Counter(await queued_ids(bootstrap))
    assert set(queued) == {m.mention_id for m in sent}, logs
    assert [mid for mid, k in queued.items() if k > 1] == [], logs     # each mention exactly once
    # The outage split across the grow is one incident: its later reports (scored by the brand's new owner,
    # on the new count) are tagged with the incident opened before the grow, and no other one was opened.
    assert {i.id for i in await brand_incidents(bootstrap)} == {incident}, logs
    after = {m.mention_id for m in sent[before_grow:] if BRAND in m.brands}
    tagged = [sm for sm in out if sm.mention.mention_id in after and sm.incident_id]
    assert {sm.incident_id for sm in tagged} == {incident}, logs
    assert len({sm.mention.mention_id for sm in tagged}) >= len(after) // 2, (len(tagged), len(after), logs)
    assert all(sm.priority == pb.P1 for sm in tagged)
    others = [i for i in (codec.decode(v, pb.Incident) for _, _, v in await consume(
        bootstrap, [topics.INCIDENTS], idle=0.5, timeout=5)) if i.brand != BRAND]
    assert others == [], logs
