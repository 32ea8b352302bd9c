"""Property test: arbitrary bytes and JSON at POST /v1/mentions and the webhooks never get a 5xx,
never crash ingest, and an invalid request never produces a message (counted on the real topic)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import consume, free_port

from services.common import topics
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.ingest import signatures as sig
from services.ingest.app import build_app
from services.ingest.config import IngestSettings

X_SECRET, META_SECRET = "fuzz-x", "fuzz-meta"


class ThreadedIngest:
    """Ingest on its own event loop in a thread, so hypothesis can drive it with a plain client."""

    def __init__(self, settings: IngestSettings):
        self.settings = settings
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        from aiohttp import web

        self._stop = asyncio.Event()
        runner = web.AppRunner(build_app(self.settings))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> str:
        self.thread.start()
        assert self._ready.wait(30), "ingest did not start"
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def fuzz_target(kafka_bootstrap) -> Iterator[tuple[httpx.Client, dict[str, int]]]:
    asyncio.run(ensure_topics(kafka_bootstrap, all_topic_specs()))
    s = IngestSettings(kafka_bootstrap=kafka_bootstrap, x_consumer_secret=X_SECRET, meta_app_secret=META_SECRET,
                       webhook_secret="fuzz-generic", max_body_bytes=32_000, max_batch=20)
    before = _count(kafka_bootstrap)
    tally = {"accepted": 0, "dead_lettered": 0}
    with ThreadedIngest(s) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, tally
        assert client.get("/healthz").status_code == 200  # still alive after everything
    after = _count(kafka_bootstrap)
    # Only what ingest answered as accepted (2xx) reached the topics: nothing from a refused request.
    assert after[topics.MENTIONS_RAW] - before[topics.MENTIONS_RAW] == tally["accepted"]
    assert after[topics.MENTIONS_DLQ] - before[topics.MENTIONS_DLQ] == tally["dead_lettered"]


def _count(bootstrap: str) -> dict[str, int]:
    records = asyncio.run(consume(bootstrap, [topics.MENTIONS_RAW, topics.MENTIONS_DLQ], idle=1.5, timeout=30))
    out = {topics.MENTIONS_RAW: 0, topics.MENTIONS_DLQ: 0}
    for topic, _, _ in records:
        out[topic] += 1
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=15), inner, max_size=6),
    max_leaves=30,
)
# Near-valid mentions reach deeper into validation than random JSON does.
mentionish = st.fixed_dictionaries(
    {"source": st.sampled_from(["x", "reddit", "myspace", ""]), "external_id": json_values | st.text(max_size=5),
     "text": json_values | st.text(max_size=50)},
    optional={"created_at": json_values, "engagement": json_values, "author": json_values, "brands": json_values},
)
bodies = st.one_of(st.binary(max_size=2000), json_values.map(lambda v: json.dumps(v).encode()),
                   mentionish.map(lambda v: json.dumps(v).encode()),
                   st.lists(mentionish, max_size=4).map(lambda v: "\n".join(map(json.dumps, v)).encode()))
ctypes = st.sampled_from(["application/json", "application/x-ndjson", "text/plain", "", "application/json; x=\x7f"])
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


@FUZZ
@given(body=bodies, ctype=ctypes)
def test_api_never_5xx(fuzz_target, body, ctype):
    client, tally = fuzz_target
    r = client.post("/v1/mentions", content=body, headers={"Content-Type": ctype} if ctype.isprintable() else {})
    assert r.status_code < 500, r.text
    if r.status_code == 202:
        tally["accepted"] += len(r.json()["accepted"])
    else:
        assert r.status_code in (400, 413, 415, 422), r.text


@FUZZ
@given(body=bodies, path=st.sampled_from(["/webhooks/x", "/webhooks/meta", "/webhooks/generic"]),
       signature=st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=80))
def test_unsigned_webhooks_are_401_and_never_produced(fuzz_target, body, path, signature):
    client, _ = fuzz_target
    headers = {"x-twitter-webhooks-signature": signature, "X-Hub-Signature-256": signature,
               "X-Triage-Signature": signature, "X-Triage-Timestamp": "1"}
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == 401, r.text


@FUZZ
@given(body=bodies, platform=st.sampled_from(["x", "meta"]))
def test_signed_garbage_never_5xx(fuzz_target, body, platform):
    client, tally = fuzz_target
    if platform == "x":
        headers = {"x-twitter-webhooks-signature": sig.x_signature(X_SECRET, body)}
    else:
        headers = {"X-Hub-Signature-256": sig.meta_signature(META_SECRET, body)}
    r = client.post(f"/webhooks/{platform}", content=body, headers=headers)
    assert r.status_code < 500, r.text
    if r.status_code == 200:
        tally["accepted"] += len(r.json()["accepted"])
        tally["dead_lettered"] += r.json()["dead_lettered"]
    else:
        assert r.status_code in (400, 413, 422), r.text
