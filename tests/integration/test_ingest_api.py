"""The ingest HTTP API against the real broker: 202 only after Kafka acks, clear 4xx, dedupe."""

from __future__ import annotations

import json

import httpx
import pytest
from support import consume, running_app

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.ingest.app import build_app
from services.ingest.config import IngestSettings


def mention(i: int, **over):
    m = {"source": "reddit", "external_id": f"t3_{i}", "text": f"post number {i} about acme",
         "author": {"handle": f"u{i}", "followers": i}, "brands": ["acme"]}
    m.update(over)
    return m


@pytest.fixture
async def ingest(kafka_bootstrap):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap, max_body_bytes=64_000, max_batch=50)
    async with running_app(build_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client


async def test_batch_is_acknowledged_then_on_the_topic(ingest, kafka_bootstrap):
    body = "\n".join(json.dumps(mention(i, external_id=f"ack-{i}")) for i in range(20))
    r = await ingest.post("/v1/mentions", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == [f"reddit:ack-{i}" for i in range(20)]
    records = await consume(kafka_bootstrap, [topics.MENTIONS_RAW], idle=1.5)
    got = {codec.decode(v, pb.Mention).mention_id: k for _, k, v in records}
    for i in range(20):
        assert got[f"reddit:ack-{i}"] == f"reddit:ack-{i}".encode()  # keyed by mention id


async def test_redelivery_is_dropped_but_engagement_update_passes(ingest):
    m = mention(1, external_id="dup-1")
    r1 = await ingest.post("/v1/mentions", json=m)
    r2 = await ingest.post("/v1/mentions", json=m)
    m["engagement"] = {"reposts": 40}
    r3 = await ingest.post("/v1/mentions", json=m)
    assert r1.json() == {"accepted": ["reddit:dup-1"], "duplicates": [], "stored": 1}
    # A duplicate is already stored, not rejected: `stored` counts it.
    assert r2.json() == {"accepted": [], "duplicates": ["reddit:dup-1"], "stored": 1}
    assert r3.json()["accepted"] == ["reddit:dup-1"]


@pytest.mark.parametrize(
    ("body", "ctype", "status", "needle"),
    [
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b'{"source": "x"}', "text/plain", 415, "Content-Type"),
        (json.dumps(mention(1, source="myspace")).encode(), "application/json", 422, "source"),
        (json.dumps(mention(1, text="")).encode(), "application/json", 422, "text"),
        (b"x" * 70_000, "application/json", 413, "exceeds"),
        ("\n".join(json.dumps(mention(i)) for i in range(51)).encode(), "application/x-ndjson", 413, "batch limit"),
        (b"", "application/json", 400, "malformed JSON"),
    ],
)
async def test_bad_requests_get_a_clear_4xx(ingest, body, ctype, status, needle):
    r = await ingest.post("/v1/mentions", content=body, headers={"Content-Type": ctype})
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]


async def test_batch_with_an_invalid_line_is_rejected_whole_with_line_numbers(ingest):
    lines = [json.dumps(mention(i, external_id=f"bad-batch-{i}")) for i in range(3)]
    lines[1] = json.dumps(mention(1, external_id=""))
    r = await ingest.post("/v1/mentions", content="\n".join(lines), headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "external_id", "reason": "String should have at least 1 character",
                                   "line": 2}]
    ok = await ingest.post("/v1/mentions", json=json.loads(lines[0]))
    assert ok.json()["accepted"] == ["reddit:bad-batch-0"]  # nothing of the rejected batch was marked seen


async def test_health_readiness_and_metrics(ingest):
    assert (await ingest.get("/healthz")).status_code == 200
    assert (await ingest.get("/readyz")).status_code == 200
    text = (await ingest.get("/metrics")).text
    assert "triage_ingest_mentions_accepted_total" in text
    assert 'triage_ingest_http_requests_total{code="202",endpoint="/v1/mentions"}' in text
