"""Deleted means deleted, on the real broker: a post routed to a queue topic, then its X delete event through
ingest. Ingest, the classify worker (real model) and the router run in-process; the topics between them are
real, and each stage reads its input from Kafka with the records' headers, as the Faust agents do.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from support import PD_KEY, SLACK_TOKEN, FakeApis, consume, running_app, wait_for

from services.classify.app import ClassifyWorker
from services.classify.config import ClassifySettings
from services.common import codec, topics
from services.common.codec import pb
from services.common.deletions import is_deletion
from services.common.erasure import Subject
from services.common.forget_cli import forget
from services.common.kafka import ensure_topics, make_producer
from services.common.settings import ServiceSettings
from services.common.topics import all_topic_specs
from services.console.views import ConsoleView
from services.devtools.kafka_broker import KafkaBroker, KafkaBrokerError
from services.ingest import signatures as sig
from services.ingest.app import build_app
from services.ingest.config import IngestSettings
from services.router.app import RouterWorker
from services.router.config import RouterSettings
from services.router.routing_file import loads

X_SECRET = "x-consumer-secret"


class Reader:
    """Reads a topic from the beginning, keeping its place: (key, value, is a deletion) of the new records."""

    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap, self.topic = bootstrap, topic
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> Reader:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                         auto_offset_reset="earliest", metadata_max_age_ms=1000)
        await self.consumer.start()
        self.consumer.subscribe([self.topic])  # no group: every partition, from the beginning
        for _ in range(200):  # up to 20 s for the partitions' metadata
            if self.consumer.assignment():
                break
            await asyncio.sleep(0.1)
        assert self.consumer.assignment(), f"no partitions of {self.topic}"
        return self

    async def new(self, keys: set[bytes], idle: float = 1.5,
                  match: Callable[[bytes], bool] | None = None) -> list[tuple[bytes, bytes, bool]]:
        """New records with one of `keys` (or whose value passes `match`)."""
        assert self.consumer is not None
        out: list[tuple[bytes, bytes, bool]] = []
        last = time.monotonic()
        while time.monotonic() - last < idle:
            batch = await self.consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    last = time.monotonic()
                    if r.key in keys or (match is not None and match(r.value)):
                        out.append((r.key, r.value, is_deletion(r.headers)))
        return out

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def start_and_read(self, keys: set[bytes]) -> list[tuple[bytes, bytes, bool]]:
        """Every record of `keys` on the topic so far, once."""
        await self.start()
        try:
            return await self.new(keys)
        finally:
            await self.stop()


@pytest.fixture(scope="module")
def kafka_bootstrap(kafka_libs, tmp_path_factory) -> Iterator[str]:
    """A broker of this module's own: its deletion records on mentions.raw and mentions.scored would reach
    the tests that read the session broker's topics as plain mentions."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-deletions"), libs_dir=kafka_libs)
    try:
        broker.start(timeout=90.0)
    except KafkaBrokerError as err:
        pytest.fail(f"Kafka broker did not start: {err}", pytrace=False)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def classify_worker():
    from services.classify.factory import build_scorer

    settings = ClassifySettings(precision="fp32")
    return ClassifyWorker(settings, build_scorer(settings))  # its producer is stopped by each test


def tweet(tid: str, text: str, likes: int = 0) -> dict:
    return {"id_str": tid, "text": text, "timestamp_ms": str(int(time.time() * 1000)), "favorite_count": likes,
            "user": {"id_str": "3198576760", "screen_name": "ana_k", "followers_count": 1200}}


async def signed_post(client: httpx.AsyncClient, payload: dict) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post("/webhooks/x", content=body,
                             headers={"x-twitter-webhooks-signature": sig.x_signature(X_SECRET, body),
                                      "Content-Type": "application/json"})


async def test_a_deleted_post_leaves_its_queue_and_a_replay_is_not_routed_again(kafka_bootstrap, classify_worker):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    run = uuid.uuid4().hex[:10]
    tid, mid = f"{run}1", f"x:{run}1"
    queue = f"del-{run}"
    await ensure_topics(kafka_bootstrap, [topics.TopicSpec(topics.queue_topic(queue), 3)])
    tree = loads(f"route:\n  receiver: q\nreceivers:\n  - name: q\n    kafka_queue: {{queue: {queue}}}\n")
    router = RouterWorker(RouterSettings(kafka_bootstrap=kafka_bootstrap,
                                         router_app_id=f"test-router-{run}"), tree)
    classify_worker.settings = classify_worker.settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    raw, scored, queued = (Reader(kafka_bootstrap, topics.MENTIONS_RAW),
                           Reader(kafka_bootstrap, topics.MENTIONS_SCORED),
                           Reader(kafka_bootstrap, topics.queue_topic(queue)))
    for reader in (raw, scored, queued):
        await reader.start()
    keys = {mid.encode()}

    async def pipeline() -> list[tuple[bytes, bytes, bool]]:
        """One pass: mentions.raw -> classify -> mentions.scored -> router -> the queue topic (new records)."""
        got = await raw.new(keys)
        if got:
            await classify_worker.process([v for _k, v, _d in got], [d for _k, _v, d in got])
        out = await scored.new(keys)
        if out:
            await router.process([v for _k, v, _d in out], [d for _k, _v, d in out])
        return out

    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap, x_consumer_secret=X_SECRET)
    try:
        async with running_app(build_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            created = await signed_post(client, {"for_user_id": "1", "tweet_create_events": [
                tweet(tid, "@AcmeBank app down again, cannot log in, call me")]})
            assert created.status_code == 200 and created.json()["accepted"] == [mid]
            await pipeline()
            first = await queued.new(keys)
            assert [d for _k, _v, d in first] == [False], "the post was not routed to the queue topic"

            t0 = time.monotonic()
            deleted = await signed_post(client, {"for_user_id": "1", "tweet_delete_events": [
                {"status": {"id": tid, "user_id": "3198576760"}, "timestamp_ms": str(int(time.time() * 1000))}]})
            assert deleted.status_code == 200 and deleted.json()["deleted"] == [mid]
            await pipeline()
            notices = await queued.new(keys, idle=0.5)
            elapsed = time.monotonic() - t0
            assert [d for _k, _v, d in notices] == [True], "no MentionDeleted notice on the queue topic"
            notice = codec.decode(notices[0][1], pb.MentionDeleted)
            assert notice.mention_id == mid and notice.reason == pb.PLATFORM_DELETE
            assert elapsed < 10, f"the notice took {elapsed:.1f} s"

            # A replay: the same post again with new counters (a new version ingest lets through) ...
            again = await signed_post(client, {"for_user_id": "1", "tweet_create_events": [
                tweet(tid, "@AcmeBank app down again, cannot log in, call me", likes=5)]})
            assert again.status_code == 200 and again.json()["accepted"] == [mid]
            replayed_scored = await pipeline()
            assert replayed_scored == [], "classify scored a deleted mention"
            # ... and the router, handed the original scored copy again (a replay of mentions.scored), skips it.
            await router.process([first_scored(first)], [False])
            assert await queued.new(keys, idle=1.0) == [], "a replay of the deleted mention was routed again"
    finally:
        for reader in (raw, scored, queued):
            await reader.stop()
        await router.stop()
        if classify_worker.producer is not None:
            await classify_worker.producer.stop()
            classify_worker.producer = None


async def test_a_deletion_before_its_mention_survives_a_restart_of_classify_and_the_router(
        kafka_bootstrap, classify_worker):
    """The delete event comes first (reordering, a replay); both workers restart; then the post arrives: it is
    neither scored by the new classify process nor routed by the new router, which both read back what the
    old ones remembered. Another post of the same run goes through (the new workers do route)."""
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    run = uuid.uuid4().hex[:10]
    tid, mid, other = f"{run}1", f"x:{run}1", f"x:{run}2"
    queue = f"restart-{run}"
    await ensure_topics(kafka_bootstrap, [topics.TopicSpec(topics.queue_topic(queue), 3)])
    tree = loads(f"route:\n  receiver: q\nreceivers:\n  - name: q\n    kafka_queue: {{queue: {queue}}}\n")
    router_settings = RouterSettings(kafka_bootstrap=kafka_bootstrap, router_app_id=f"test-router-{run}")
    classify_settings = classify_worker.settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap,
                                                                    "classify_app_id": f"test-classify-{run}"})
    scorer = classify_worker.scorer
    raw, scored, queued = (Reader(kafka_bootstrap, topics.MENTIONS_RAW),
                           Reader(kafka_bootstrap, topics.MENTIONS_SCORED),
                           Reader(kafka_bootstrap, topics.queue_topic(queue)))
    for reader in (raw, scored, queued):
        await reader.start()
    keys = {mid.encode(), other.encode()}
    workers: list[tuple[ClassifyWorker, RouterWorker]] = []

    async def pipeline(classify: ClassifyWorker, router: RouterWorker) -> list[tuple[bytes, bytes, bool]]:
        got = await raw.new(keys)
        if got:
            await classify.process([v for _k, v, _d in got], [d for _k, _v, d in got])
        out = await scored.new(keys)
        if out:
            await router.process([v for _k, v, _d in out], [d for _k, _v, d in out])
        return out

    def start_workers() -> tuple[ClassifyWorker, RouterWorker]:
        pair = ClassifyWorker(classify_settings, scorer), RouterWorker(router_settings, tree)
        workers.append(pair)
        return pair

    async def stop(pair: tuple[ClassifyWorker, RouterWorker]) -> None:
        if pair[0].producer is not None:
            await pair[0].producer.stop()
            pair[0].producer = None
        await pair[1].stop()

    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap, x_consumer_secret=X_SECRET)
    try:
        async with running_app(build_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            first = start_workers()
            deleted = await signed_post(client, {"for_user_id": "1", "tweet_delete_events": [
                {"status": {"id": tid, "user_id": "3198576760"}, "timestamp_ms": str(int(time.time() * 1000))}]})
            assert deleted.status_code == 200 and deleted.json()["deleted"] == [mid]
            forwarded = await pipeline(*first)
            assert [d for _k, _v, d in forwarded] == [True], "classify did not forward the deletion"
            await stop(first)                       # both workers restart: new processes, empty memories

            second = start_workers()
            created = await signed_post(client, {"for_user_id": "1", "tweet_create_events": [
                tweet(tid, "@AcmeBank app down again, cannot log in"),
                tweet(f"{run}2", "@AcmeBank app down here too")]})
            assert created.status_code == 200 and created.json()["accepted"] == [mid, other]
            passed = await pipeline(*second)
            assert [k for k, _v, _d in passed] == [other.encode()], "the restarted classify scored the deleted post"
            # A copy scored before the deletion (a replay of mentions.scored) reaches the restarted router.
            [m] = [codec.decode(v, pb.Mention) for k, v, d in await Reader(kafka_bootstrap, topics.MENTIONS_RAW)
                   .start_and_read({mid.encode()}) if k == mid.encode() and not d]
            await second[1].process([codec.encode(scorer.score_prepared(scorer.prepare([m]))[0])], [False])
            routed = [(k, d) for k, _v, d in await queued.new(keys)]
            assert (other.encode(), False) in routed, "the restarted router routes nothing: the test proves nothing"
            assert (mid.encode(), False) not in routed, "the restarted router routed a post deleted before it started"
    finally:
        for reader in (raw, scored, queued):
            await reader.stop()
        for pair in workers:
            await stop(pair)


def first_scored(queued: list[tuple[bytes, bytes, bool]]) -> bytes:
    """The ScoredMention inside the RoutedMention the queue topic got (with new counters: not a ledger replay)."""
    routed = codec.decode(queued[0][1], pb.RoutedMention)
    routed.scored.mention.engagement.likes = 99
    return codec.encode(routed.scored)


PAGING_ROUTES = """\
route:
  receiver: urgent
  routes:
    - matchers: ['priority="P1"']
      receiver: pagerduty
      group_wait: 1s
      continue: true
    - matchers: ['priority="P1"']
      receiver: slack
      group_wait: 1s
      continue: true
    - matchers: ['priority="P1"']
      receiver: urgent
receivers:
  - name: pagerduty
    pagerduty: {url: "%(base)s/v2/enqueue", routing_key_env: TEST_PD_KEY}
  - name: slack
    slack: {url: "%(base)s/api/chat.postMessage", token_env: TEST_SLACK_TOKEN, channel: C0INCIDENTS}
  - name: urgent
    kafka_queue: {queue: %(queue)s}
"""


async def test_with_two_router_replicas_a_deletion_reaches_the_group_held_by_the_other(kafka_bootstrap, monkeypatch):
    """Replica A owns the mention's partition of mentions.scored; the incident group showing it lives on replica
    B (its key's partition of the page requests). A's deletion reaches B through the page requests, after the
    request that put the post into the group: B's group (its next page) and its persisted state lose it."""
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    monkeypatch.setenv("TEST_PD_KEY", PD_KEY)
    monkeypatch.setenv("TEST_SLACK_TOKEN", SLACK_TOKEN)
    run = uuid.uuid4().hex[:10]
    queue = f"replicas-{run}"
    await ensure_topics(kafka_bootstrap, [topics.TopicSpec(topics.queue_topic(queue), 3)])
    sm = pb.ScoredMention(priority=pb.P1, language="en", reasons=["outage report 0.94"], incident_id=f"inc-{run}")
    sm.mention.source, sm.mention.external_id, sm.mention.mention_id = pb.SOURCE_X, run, f"x:{run}"
    sm.mention.text, sm.mention.url = "@AcmeBank app down for me too", f"https://x.com/ana_k/status/{run}"
    sm.mention.brands.append("acmebank")
    deleted = pb.MentionDeleted(source=pb.SOURCE_X, external_id=run, mention_id=sm.mention.mention_id,
                                reason=pb.PLATFORM_DELETE)
    settings = RouterSettings(kafka_bootstrap=kafka_bootstrap, router_app_id=f"test-router-{run}")
    await ensure_topics(kafka_bootstrap, [topics.router_state_spec(settings.router_app_id)])  # the replicas' shared one
    requests = Reader(kafka_bootstrap, topics.ROUTER_PAGE_REQUESTS)
    await requests.start()
    async with running_app(FakeApis().app()) as base:
        tree = loads(PAGING_ROUTES % {"base": base, "queue": queue})
        a, b = RouterWorker(settings, tree), RouterWorker(settings, tree)
        for replica in (a, b):   # as create_app sets them under Faust
            replica.ownership.owned = set(range(replica.ownership.partitions))
            replica.grouping.repartition = True
        try:
            await a.start()
            await b.start()

            async def deliver_requests() -> list[bool]:
                """What Faust would hand B from the page requests (A's records for this run)."""
                got = [(v, d) for _k, v, d in await requests.new(set(), idle=1.5, match=lambda v: run.encode() in v)]
                if got:
                    await b.on_page_requests([v for v, _d in got], [d for _v, d in got])
                return [d for _v, d in got]

            await a.process([codec.encode(sm)])
            assert False in await deliver_requests(), "A sent no page request for the P1 mention"
            shown = [g for g in b.grouper.groups.values() if any(s.get("mention_id") == sm.mention.mention_id
                                                                   for s in g.samples)]
            assert shown and not a.grouper.groups, "the group should live on B only: the test would prove nothing"

            await a.process([codec.encode(deleted)], [True])
            assert set(await deliver_requests()) == {True}, "A's deletion did not reach the page requests"
            for g in b.grouper.groups.values():
                assert all(s.get("mention_id") != sm.mention.mention_id for s in g.samples), "B's group still shows it"
            assert b.stages is not None
            state = await b.stages.state.load()
            mid = sm.mention.mention_id
            persisted = [k for k, v in state.items() if k.startswith("group:") and mid in json.dumps(v)]
            assert persisted == [], "B's persisted group still shows it"
        finally:
            await requests.stop()
            await a.stop()
            await b.stop()


async def test_a_page_for_a_post_with_a_phone_and_a_card_number_carries_neither(kafka_bootstrap, monkeypatch):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    monkeypatch.setenv("TEST_PD_KEY", PD_KEY)
    monkeypatch.setenv("TEST_SLACK_TOKEN", SLACK_TOKEN)
    run = uuid.uuid4().hex[:10]
    queue = f"pii-{run}"
    await ensure_topics(kafka_bootstrap, [topics.TopicSpec(topics.queue_topic(queue), 3)])
    text = "@AcmeBank app down and my card 4556 7375 8689 9855 was charged twice, call me on +1 415 555 2671"
    sm = pb.ScoredMention(priority=pb.P1, language="en", reasons=["outage report 0.94"], incident_id=f"inc-{run}")
    sm.mention.source, sm.mention.external_id, sm.mention.mention_id = pb.SOURCE_X, run, f"x:{run}"
    sm.mention.text, sm.mention.url = text, f"https://x.com/ana_k/status/{run}"
    sm.mention.brands.append("acmebank")
    now = [time.time()]
    apis = FakeApis()
    async with running_app(apis.app()) as base:
        tree = loads(PAGING_ROUTES % {"base": base, "queue": queue})
        router = RouterWorker(RouterSettings(kafka_bootstrap=kafka_bootstrap, router_app_id=f"test-router-{run}"),
                              tree, clock=lambda: now[0])
        try:
            await router.process([codec.encode(sm)])
            now[0] += 5
            await router.tick()
            await wait_for(lambda: apis.pagerduty and apis.slack, 20, "the pages")
        finally:
            await router.stop()
    pages = json.dumps([apis.pagerduty, apis.slack], ensure_ascii=False)
    assert "app down" in pages, "the page carries no sample text: the test would prove nothing"
    for secret in ("4556", "8689", "9855", "415 555 2671", "5552671"):
        assert secret not in pages, f"{secret!r} was sent to PagerDuty/Slack"
    assert "[card]" in pages and "[phone]" in pages
    # The queue topic (the console, inbox apps: responders) keeps the original.
    reader = await Reader(kafka_bootstrap, topics.queue_topic(queue)).start()
    try:
        [(_k, value, _d)] = await reader.new({sm.mention.mention_id.encode()})
    finally:
        await reader.stop()
    assert codec.decode(value, pb.RoutedMention).scored.mention.text == text


async def test_forget_an_author_leaves_none_of_their_posts_readable_and_prints_the_audit(
        kafka_bootstrap, classify_worker, capsys):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    run = uuid.uuid4().hex[:10]
    handle, queue = f"ana{run}", f"forget-{run}"
    await ensure_topics(kafka_bootstrap, [topics.TopicSpec(topics.queue_topic(queue), 3)])
    tree = loads(f"route:\n  receiver: q\nreceivers:\n  - name: q\n    kafka_queue: {{queue: {queue}}}\n")
    router = RouterWorker(RouterSettings(kafka_bootstrap=kafka_bootstrap, router_app_id=f"test-router-{run}"), tree)
    classify_worker.settings = classify_worker.settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    mids = [f"x:{run}{i}" for i in range(3)]
    keys = {m.encode() for m in mids} | {f"author:x:@{handle}".encode()}
    raw, scored = Reader(kafka_bootstrap, topics.MENTIONS_RAW), Reader(kafka_bootstrap, topics.MENTIONS_SCORED)
    for reader in (raw, scored):
        await reader.start()

    async def pipeline() -> None:
        got = await raw.new(keys)
        if got:
            await classify_worker.process([v for _k, v, _d in got], [d for _k, _v, d in got])
        out = await scored.new(keys)
        if out:
            await router.process([v for _k, v, _d in out], [d for _k, _v, d in out])

    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap, x_consumer_secret=X_SECRET)
    try:
        async with running_app(build_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            tweets = [{**tweet(m.split(":")[1], f"@AcmeBank app down again ({i})"),
                       "user": {"id_str": "77", "screen_name": handle, "followers_count": 10}}
                      for i, m in enumerate(mids)]
            assert (await signed_post(client, {"for_user_id": "1", "tweet_create_events": tweets})).status_code == 200
            await pipeline()
        # An incident that shows one of them as a sample, a correction made on one in the console.
        producer = make_producer(kafka_bootstrap, "test-forget")
        await producer.start()
        inc = pb.Incident(id=f"inc-{run}", brand="acmebank", kind=pb.OUTAGE_CLUSTER, state=pb.RESOLVED)
        inc.evidence.sample_mention_ids.extend([mids[0], "x:someone-else"])
        fb = pb.LabelFeedback(mention_id=mids[1], text="@AcmeBank app down again (1)", queue=queue)
        await (await producer.send(topics.INCIDENTS, codec.encode(inc), key=inc.id.encode()))
        await (await producer.send(topics.FEEDBACK, codec.encode(fb), key=mids[1].encode()))
        await producer.stop()

        record = await forget(Subject.author("x", handle), "dpo@acme", ServiceSettings(kafka_bootstrap=kafka_bootstrap),
                              router_app_id=f"test-router-{run}")
        await pipeline()   # the deletions go through classify and the router like a platform's
    finally:
        for reader in (raw, scored):
            await reader.stop()
        await router.stop()
        if classify_worker.producer is not None:
            await classify_worker.producer.stop()
            classify_worker.producer = None

    printed = capsys.readouterr().out
    assert record.mentions_found == 3 and codec.to_json(record) in printed
    assert handle not in codec.to_json(record) and all(m not in codec.to_json(record) for m in mids)
    assert any(line.startswith(f"expires: {topics.MENTIONS_RAW}: 3 mention(s)") for line in printed.splitlines())
    # What the console would show, rebuilt from the topics as it does on start.
    view = ConsoleView()
    consumer = AIOKafkaConsumer(topics.INCIDENTS, topics.FEEDBACK, topics.queue_topic(queue), group_id=None,
                                bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    view.apply_record(tp.topic, r.key, r.value, r.headers)
    finally:
        await consumer.stop()
    assert view.queue_items(queue, include_done=True) == [], "an erased post is still in its queue"
    assert view.incidents[inc.id].sample_mention_ids == ["x:someone-else"]
    assert mids[1] not in view.feedback
    audit = [codec.decode(v, pb.ErasureRecord) for _t, _k, v in await consume(kafka_bootstrap, [topics.ERASURES],
                                                                                idle=1.0, timeout=20)]
    assert record.id in [a.id for a in audit]
