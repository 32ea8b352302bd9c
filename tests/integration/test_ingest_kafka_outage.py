"""Kafka outages: ingest starts without Kafka, answers 503 while it is down, loses nothing it acknowledged,
and recovers by itself when the broker returns (a private broker from `kafka_broker_factory`). A late ack
(the broker paused with SIGSTOP) is an honest 503: outcome unknown, retry safe, and the retry reports
the records that landed as stored duplicates, never as rejected nor twice on the topic."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY
from support import break_producer_sender, consume, running_app, wait_for

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.ingest.app import INGESTOR_KEY, build_app
from services.ingest.config import IngestSettings


def mention(i: int) -> dict:
    return {"source": "forum", "external_id": f"outage-{i}", "text": f"Acme Bank post {i}"}


async def test_broker_down_at_start_then_stopped_mid_traffic(kafka_broker_factory):
    broker = kafka_broker_factory()
    await ensure_topics(broker.bootstrap_servers, all_topic_specs())
    await asyncio.to_thread(broker.stop)

    settings = IngestSettings(kafka_bootstrap=broker.bootstrap_servers, produce_timeout_seconds=4,
                              retry_after_seconds=1, kafka_probe_interval_seconds=0.3)
    app = build_app(settings)
    async with running_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        # 1. Start-up tolerated a missing broker: alive, not ready, push requests get 503 + Retry-After.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        r = await client.post("/v1/mentions", json=mention(-1))
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        # Nothing was handed to Kafka: the answer says so (and that the retry is safe).
        assert r.json()["outcome"] == "not_accepted" and r.json()["retry_safe"] is True, r.text
        assert "nothing was accepted" in r.json()["error"]

        await asyncio.to_thread(broker.start)
        await wait_for(lambda: _ready(client), 60, "ingest ready after the broker started")

        # 2. Traffic while the broker stops and comes back; the client retries what got 503.
        acked: set[str] = set()
        statuses: list[int] = []
        stopper: asyncio.Task[None] | None = None
        restarted = False
        pending = list(range(200))
        i = 0
        while pending:
            n = pending[0]
            r = await client.post("/v1/mentions", json=mention(n))
            statuses.append(r.status_code)
            assert r.status_code in (202, 503), r.text
            if r.status_code == 202:
                acked.update(r.json()["accepted"] + r.json()["duplicates"])
                pending.pop(0)
            else:
                assert r.headers["Retry-After"] == "1"
                await asyncio.sleep(0.2)
            i += 1
            if n == 50 and stopper is None:
                stopper = asyncio.create_task(asyncio.to_thread(broker.stop))
            if stopper is not None and stopper.done() and not restarted and statuses.count(503) >= 3:
                assert (await client.get("/readyz")).status_code == 503
                await stopper
                restarted = True
                await asyncio.to_thread(broker.start)
            assert i < 5000, f"ingest did not recover: {_state(app, r)}"
        assert restarted and 503 in statuses
        assert statuses[-1] == 202
        assert (await client.get("/readyz")).status_code == 200

    # 3. Every acknowledged mention is on the topic, once.
    records = await consume(broker.bootstrap_servers, [topics.MENTIONS_RAW], idle=2.0, timeout=60)
    on_topic = Counter(codec.decode(v, pb.Mention).mention_id for _, _, v in records)
    assert acked == {f"forum:outage-{n}" for n in range(200)}
    assert acked <= set(on_topic)
    # A retry while an earlier attempt was still in flight got 503, not a second copy.
    assert max(on_topic.values()) == 1


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


def _state(app, last: httpx.Response) -> str:  # type: ignore[no-untyped-def]
    """What a stalled ingest looks like from inside (for the failure message)."""
    ingestor = app[INGESTOR_KEY]
    task = ingestor.producer._sender.sender_task
    return (f"last answer {last.status_code} {last.text[:300]}; kafka_up={ingestor.kafka_up.is_set()} "
            f"unsettled={len(ingestor._unsettled)} sender_task={task!r}")


async def _break_sender_by_raising(producer) -> None:  # type: ignore[no-untyped-def]
    """The sender routine ends with an error (`support.break_producer_sender`)."""
    break_producer_sender(producer)


async def _break_sender_by_cancelling(producer) -> None:  # type: ignore[no-untyped-def]
    """The sender task ends without an error: aiokafka's later sends wait forever (nothing drains them)."""
    producer._sender.sender_task.cancel()
    await asyncio.sleep(0)


async def _break_client(producer) -> None:  # type: ignore[no-untyped-def]
    """The producer's own client no longer reaches Kafka (its sends and metadata requests fail) while a new client
    does."""
    async def unreachable(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise KafkaConnectionError("injected: this client lost its way")
    producer.client.fetch_all_metadata = unreachable
    producer.send = unreachable


@pytest.mark.parametrize("breaks", [_break_sender_by_raising, _break_sender_by_cancelling, _break_client],
                         ids=["raises", "cancelled", "client"])
async def test_a_producer_that_cannot_deliver_is_replaced_and_nothing_acknowledged_is_lost(kafka_bootstrap, breaks):
    """aiokafka cannot recover a producer whose background sender ended while Kafka is fine: ingest would answer
    503 for ever (CI saw 5,000 retries of one mention refused after a broker restart). It replaces the producer,
    and one whose own client has not reached Kafka for `producer_stuck_seconds` while a new client does."""
    run = f"producer-{breaks.__name__[-9:].strip('_')}-{os.getpid()}"
    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap, produce_timeout_seconds=2, retry_after_seconds=1,
                              kafka_probe_interval_seconds=0.2, producer_stuck_seconds=2)
    replaced = REGISTRY.get_sample_value("triage_ingest_producer_replaced_total") or 0.0
    app = build_app(settings)
    acked: set[str] = set()
    async with running_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        await wait_for(lambda: _ready(client), 60, "ingest ready")
        first = await client.post("/v1/mentions", json={**mention(0), "external_id": f"{run}-0"})
        assert first.status_code == 202, first.text
        acked.update(first.json()["accepted"])
        old = app[INGESTOR_KEY].producer
        await breaks(old)

        statuses: list[int] = []
        for n in range(1, 21):
            for _attempt in range(100):
                r = await client.post("/v1/mentions", json={**mention(n), "external_id": f"{run}-{n}"})
                statuses.append(r.status_code)
                assert r.status_code in (202, 503), r.text
                if r.status_code == 202:
                    acked.update(r.json()["accepted"] + r.json()["duplicates"])
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"mention {n} never accepted: {_state(app, r)}")
        assert 503 in statuses, "the broken producer was never noticed"
        assert app[INGESTOR_KEY].producer is not old
        assert (REGISTRY.get_sample_value("triage_ingest_producer_replaced_total") or 0.0) == replaced + 1
        await wait_for(lambda: not app[INGESTOR_KEY]._retiring, 30, "the old producer retired")
        assert old._closed and old._sender.sender_task.done()

    assert acked == {f"forum:{run}-{n}" for n in range(21)}
    records = await consume(kafka_bootstrap, [topics.MENTIONS_RAW], idle=2.0, timeout=60)
    on_topic = Counter(i for i in (codec.decode(v, pb.Mention).mention_id for _, _, v in records) if run in i)
    assert on_topic == Counter(acked)


async def test_a_late_ack_is_an_unknown_outcome_and_the_retry_reports_stored_duplicates(kafka_broker_factory):
    broker = kafka_broker_factory()
    await ensure_topics(broker.bootstrap_servers, all_topic_specs())
    settings = IngestSettings(kafka_bootstrap=broker.bootstrap_servers, produce_timeout_seconds=2,
                              retry_after_seconds=1, kafka_probe_interval_seconds=0.3)
    ids = [f"forum:late-{i}" for i in range(57)]
    batch = "\n".join(json.dumps({**mention(i), "external_id": f"late-{i}"}) for i in range(57)).encode()
    ndjson = {"Content-Type": "application/x-ndjson"}
    async with running_app(build_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        await wait_for(lambda: _ready(client), 60, "ingest ready")
        warm = await client.post("/v1/mentions", json=mention(-2))  # producer connected, metadata known
        assert warm.status_code == 202, warm.text
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)  # the broker takes the records but cannot ack in time
        try:
            async def concurrent_copy() -> httpx.Response:
                await asyncio.sleep(0.3)  # after the first request reserved the mentions
                return await client.post("/v1/mentions", content=batch, headers=ndjson)

            r, copy = await asyncio.gather(client.post("/v1/mentions", content=batch, headers=ndjson),
                                           concurrent_copy())
            # The copy sent while the first was being written waited for it instead of being told
            # "duplicates" (stored) for records whose fate was not known yet.
            assert copy.status_code == 503 and copy.json()["outcome"] == "unknown", copy.text
            assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
            body = r.json()
            assert body["outcome"] == "unknown" and body["retry_safe"] is True, r.text
            assert "outcome is unknown" in body["error"] and "safe" in body["error"]
            assert "nothing was accepted" not in body["error"]
            # While that attempt is unsettled a retry is told the same, neither "duplicate" nor sent again.
            again = await client.post("/v1/mentions", content=batch, headers=ndjson)
            assert again.status_code == 503 and again.json()["outcome"] == "unknown", again.text
        finally:
            os.kill(broker.pid, signal.SIGCONT)

        async def retried() -> httpx.Response | None:
            r = await client.post("/v1/mentions", content=batch, headers=ndjson)
            assert r.status_code in (202, 503), r.text
            return r if r.status_code == 202 else None

        r = await wait_for(retried, 60, "the retry to be answered 202", interval=1.0)
        # The late records were written: the retry says they are stored, as duplicates, not rejected.
        assert r.json()["accepted"] == [] and sorted(r.json()["duplicates"]) == sorted(ids), r.text
        assert r.json()["stored"] == 57
    records = await consume(broker.bootstrap_servers, [topics.MENTIONS_RAW], idle=2.0, timeout=60)
    on_topic = Counter(codec.decode(v, pb.Mention).mention_id for _, _, v in records)
    assert {i: on_topic[i] for i in ids} == dict.fromkeys(ids, 1)
