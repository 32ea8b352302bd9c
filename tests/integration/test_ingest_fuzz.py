"""Property test: arbitrary bytes and JSON at POST /v1/mentions and the webhooks never get a 5xx,
never crash ingest, and an invalid request never produces a message (counted on the real topic).

Also the regression cases of issue 17 over HTTP (each a 4xx naming the field and the reason), a
platform delivery with one bad item (200, that item dead-lettered, the rest produced) and the
header-read timeout. Size: INGEST_FUZZ_EXAMPLES per property (default 400, a few thousand requests
in all), bounded by INGEST_FUZZ_SECONDS per property; `make fuzz` runs 100,000 requests in all. A
status table (endpoint x code) is printed at the end, and produced == accepted is checked on the topics.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections import Counter
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
from services.ingest.connections import IngestRunner

X_SECRET, META_SECRET, GENERIC_SECRET = "fuzz-x", "fuzz-meta", "fuzz-generic"
EXAMPLES = int(os.environ.get("INGEST_FUZZ_EXAMPLES", "400"))
SECONDS = float(os.environ.get("INGEST_FUZZ_SECONDS", "12"))
STATUS: Counter[tuple[str, int]] = Counter()


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
        runner = IngestRunner(build_app(self.settings), self.settings)
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


class Target:
    def __init__(self, client: httpx.Client, port: int):
        self.client = client
        self.port = port

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        r = self.client.post(path, content=body, headers=headers or {})
        STATUS[(path, r.status_code)] += 1
        return r


@pytest.fixture(scope="module")
def fuzz_target(kafka_bootstrap, request) -> Iterator[tuple[Target, dict[str, int]]]:
    asyncio.run(ensure_topics(kafka_bootstrap, all_topic_specs()))
    s = IngestSettings(kafka_bootstrap=kafka_bootstrap, x_consumer_secret=X_SECRET, meta_app_secret=META_SECRET,
                       webhook_secret=GENERIC_SECRET, max_body_bytes=32_000, max_batch=20,
                       idle_timeout_seconds=1.0)
    before = _count(kafka_bootstrap)
    tally = {"accepted": 0, "dead_lettered": 0}
    ingest = ThreadedIngest(s)
    with ingest as url, httpx.Client(base_url=url, timeout=30) as client:
        yield Target(client, ingest.port), tally
        assert client.get("/healthz").status_code == 200  # still alive after everything
    after = _count(kafka_bootstrap)
    produced = after[topics.MENTIONS_RAW] - before[topics.MENTIONS_RAW]
    dead = after[topics.MENTIONS_DLQ] - before[topics.MENTIONS_DLQ]
    _print_table(request.config, produced, dead, tally)
    # Only what ingest answered as accepted (2xx) reached the topics: nothing from a refused request.
    assert produced == tally["accepted"]
    assert dead == tally["dead_lettered"]
    assert not [k for k in STATUS if k[1] >= 500], STATUS


def _print_table(config: pytest.Config, produced: int, dead: int, tally: dict[str, int]) -> None:
    codes = sorted({code for _, code in STATUS})
    paths = sorted({path for path, _ in STATUS})
    lines = ["", "ingest fuzz status (requests by endpoint and code)",
             f"{'endpoint':<20}" + "".join(f"{c:>8}" for c in codes) + f"{'total':>9}"]
    for path in paths:
        row = [STATUS[(path, c)] for c in codes]
        lines.append(f"{path:<20}" + "".join(f"{n:>8}" for n in row) + f"{sum(row):>9}")
    total = [sum(STATUS[(p, c)] for p in paths) for c in codes]
    lines.append(f"{'all':<20}" + "".join(f"{n:>8}" for n in total) + f"{sum(total):>9}")
    lines.append(f"5xx: {sum(n for (_, c), n in STATUS.items() if c >= 500)}; accepted {tally['accepted']}, "
                 f"produced {produced} (mentions.raw); dead-lettered {tally['dead_lettered']}, produced {dead} "
                 "(mentions.dlq)")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print("\n".join(lines), flush=True)
    else:
        print("\n".join(lines))


def _count(bootstrap: str) -> dict[str, int]:
    records = asyncio.run(consume(bootstrap, [topics.MENTIONS_RAW, topics.MENTIONS_DLQ], idle=1.5, timeout=30))
    out = {topics.MENTIONS_RAW: 0, topics.MENTIONS_DLQ: 0}
    for topic, _, _ in records:
        out[topic] += 1
    return out


NOW = time.time()
numbers = (st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.sampled_from([
    10**400, -(10**30), 2**63, 2**64, 10**15 + 1, NOW, NOW * 1000, NOW + 10**6]))
strings = st.text(max_size=30) | st.sampled_from([
    "nan", "NaN", "inf", "-Infinity", "99999999999999999999", "9" * 400, "²", "\x00", "a\x00b\x1b[31m", "\u202e",
    "\ud800", "\udfff", "\ufffe", "2026-11-23T10:00:00Z", "0001-01-01T00:00:00+23:59", "Wed Oct 10 20:19:24 +0000 2018",
    "", " ", "😡" * 50])
json_values = st.recursive(
    st.none() | st.booleans() | numbers | strings,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=15), inner, max_size=6),
    max_leaves=30,
)
# Near-valid mentions reach deeper into validation than random JSON does.
mentionish = st.fixed_dictionaries(
    {"source": st.sampled_from(["x", "reddit", "myspace", "", "X", "webhook"]),
     "external_id": json_values | st.text(max_size=5) | strings,
     "text": json_values | st.text(max_size=50) | strings},
    optional={"created_at": json_values | numbers | strings, "engagement": json_values
              | st.fixed_dictionaries({}, optional={"likes": json_values | numbers | strings,
                                                   "reposts": numbers | strings}),
              "author": json_values | st.fixed_dictionaries({}, optional={"handle": strings, "followers": numbers
                                                                          | strings, "id": strings}),
              "brands": json_values | st.lists(strings, max_size=3), "url": strings, "lang": strings,
              "reply_to_id": strings},
)


def _dumps(value: object) -> bytes:
    # allow_nan: NaN/Infinity literals are part of the attack; surrogatepass: lone surrogates as raw bytes
    # are invalid UTF-8 (tested too), while json.dumps' default escapes them as \udXXX.
    return json.dumps(value).encode()


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


raw_tricks = st.sampled_from([
    b"[" * 5000 + b"]" * 5000, _nested(2000), b'{"external_id":' + b"9" * 5000 + b"}", b'{"created_at": NaN}',
    b'{"likes": Infinity}', b"[1e999]", b'{"brands":["\\ud800"]}', b'"\\udfff"', b"\xef\xbb\xbf{}", b"\xff\xfe",
    b"\x1e{}\n\x1e[]", b"\x1e" + b"[" * 3000, b"\x00", b"", b" ", b"{}\n" * 30, b"null", b"[]",
])
bodies = st.one_of(st.binary(max_size=2000), json_values.map(_dumps), mentionish.map(_dumps),
                   st.lists(mentionish, max_size=4).map(lambda v: "\n".join(map(json.dumps, v)).encode()),
                   st.lists(mentionish, max_size=4).map(_dumps),
                   st.lists(mentionish, max_size=3).map(lambda v: "".join("\x1e" + json.dumps(x) + "\n" for x in v)
                                                        .encode()),
                   raw_tricks, st.integers(1, 3000).map(_nested))
ctypes = st.sampled_from(["application/json", "application/x-ndjson", "application/jsonl", "application/json-seq",
                          "application/ndjson", "text/plain", "", "application/json; charset=utf-8",
                          "application/json; charset=latin-1", "application/json; x=\x7f", "multipart/form-data",
                          "application/x-www-form-urlencoded", "APPLICATION/JSON", "application/json;;;"])
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80) | st.sampled_from([
    "sha256=é", "v1=\u00ff\u00fe", "Bearer ñ", "²", "9" * 5000, "", " "])
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])


class Budget:
    """Bounds a property in time: once spent, the remaining examples are skipped without a request."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def spent(self, name: str) -> bool:
        start = self.started.setdefault(name, time.monotonic())
        return time.monotonic() - start > SECONDS


BUDGET = Budget()


def _headers(ctype: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    h = {"Content-Type": ctype} if ctype.isprintable() else {}
    h.update(extra or {})
    return h


def _latin1(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    # httpx refuses non-ASCII str headers; raw bytes carry them (latin-1 ↔ the bytes an attacker sends).
    # (h11, the client, refuses surrounding whitespace, so values are stripped.)
    return [(k.encode(), v.strip().encode("utf-8")) for k, v in headers.items()]


def _record(tally: dict[str, int], r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code in (200, 202):
        tally["accepted"] += len(r.json()["accepted"])
        tally["dead_lettered"] += r.json().get("dead_lettered", 0)
    else:
        assert r.status_code in (400, 401, 408, 413, 415, 422), r.text
        assert "error" in r.json(), r.text


@FUZZ
@given(body=bodies, ctype=ctypes)
def test_api_never_5xx(fuzz_target, body, ctype):
    if BUDGET.spent("api"):
        return
    target, tally = fuzz_target
    r = target.post("/v1/mentions", body, _headers(ctype))
    _record(tally, r)
    if r.status_code != 202:
        assert r.status_code in (400, 413, 415, 422), r.text


@FUZZ
@given(body=bodies, path=st.sampled_from(["/webhooks/x", "/webhooks/meta", "/webhooks/generic"]),
       signature=header_values, timestamp=header_values)
def test_unsigned_webhooks_are_401_and_never_produced(fuzz_target, body, path, signature, timestamp):
    if BUDGET.spent("unsigned"):
        return
    target, _ = fuzz_target
    headers = {"x-twitter-webhooks-signature": signature, "X-Hub-Signature-256": signature,
               "X-Triage-Signature": signature, "X-Triage-Timestamp": timestamp}
    r = target.client.post(path, content=body, headers=_latin1(headers))
    STATUS[(path, r.status_code)] += 1
    assert r.status_code == 401, r.text


x_items = st.fixed_dictionaries(
    {"id_str": strings | st.text("0123456789", min_size=1, max_size=19), "text": strings | st.text(max_size=40)},
    optional={"timestamp_ms": strings | numbers | st.just(str(int(NOW * 1000))), "created_at": json_values,
              "favorite_count": numbers | strings, "user": json_values | st.fixed_dictionaries(
                  {}, optional={"screen_name": strings, "followers_count": numbers | strings}), "lang": strings})
x_payloads = st.fixed_dictionaries({"for_user_id": strings}, optional={
    "tweet_create_events": st.lists(x_items | json_values, max_size=5)}).map(_dumps)
meta_messages = st.fixed_dictionaries({"sender": st.fixed_dictionaries({"id": strings}),
                                       "message": st.fixed_dictionaries({"mid": strings, "text": strings})},
                                      optional={"timestamp": numbers | strings})
meta_payloads = st.fixed_dictionaries({"object": st.sampled_from(["page", "instagram", "user"]), "entry": st.lists(
    st.fixed_dictionaries({}, optional={"time": numbers | strings, "messaging": st.lists(meta_messages, max_size=3),
                                        "changes": st.lists(json_values, max_size=3)}), max_size=3)}).map(_dumps)


@FUZZ
@given(body=bodies | x_payloads | meta_payloads, platform=st.sampled_from(["x", "meta"]))
def test_signed_garbage_never_5xx(fuzz_target, body, platform):
    if BUDGET.spent("signed"):
        return
    target, tally = fuzz_target
    if platform == "x":
        headers = {"x-twitter-webhooks-signature": sig.x_signature(X_SECRET, body)}
    else:
        headers = {"X-Hub-Signature-256": sig.meta_signature(META_SECRET, body)}
    r = target.post(f"/webhooks/{platform}", body, headers)
    _record(tally, r)
    if r.status_code != 200:
        assert r.status_code in (400, 413, 422), r.text


@FUZZ
@given(body=bodies, ctype=ctypes)
def test_signed_generic_never_5xx(fuzz_target, body, ctype):
    if BUDGET.spent("generic"):
        return
    target, tally = fuzz_target
    ts = str(int(time.time()))
    headers = _headers(ctype, {"X-Triage-Timestamp": ts,
                               "X-Triage-Signature": sig.generic_signature(GENERIC_SECRET, ts, body)})
    r = target.post("/webhooks/generic", body, headers)
    _record(tally, r)


# --- the eight 500 classes of issue 17, over HTTP ----------------------------------------------------------

def _mention(**over: object) -> dict[str, object]:
    m: dict[str, object] = {"source": "x", "external_id": "h17-1", "text": "Acme Bank down", "created_at": NOW - 60}
    m.update(over)
    return m


HOSTILE = [
    ("deep_nesting", b'{"source":"x","external_id":"1","text":"t","author":' + _nested(1500) + b"}", "$", "nesting"),
    ("deep_array", b"[" * 1000 + b"]" * 1000, "$", "nesting"),
    ("huge_int", b'{"source":"x","external_id":' + b"9" * 4301 + b',"text":"t"}', "$", "digits"),
    ("nan_literal", b'{"source":"x","external_id":"1","text":"t","created_at":NaN}', "$", "NaN"),
    ("nan_string", json.dumps(_mention(created_at="nan")).encode(), "created_at", "finite"),
    ("surrogate_brand", json.dumps(_mention(brands=["\ud800"])).encode(), "brands[0]", "surrogate"),
]


@pytest.mark.parametrize(("name", "body", "field", "needle"), HOSTILE, ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("path", ["/v1/mentions", "/webhooks/generic"])
def test_hostile_bodies_are_4xx_naming_field_and_reason(fuzz_target, name, body, field, needle, path):
    target, _ = fuzz_target
    headers = {"Content-Type": "application/json"}
    if path == "/webhooks/generic":
        ts = str(int(time.time()))
        headers |= {"X-Triage-Timestamp": ts, "X-Triage-Signature": sig.generic_signature(GENERIC_SECRET, ts, body)}
    r = target.post(path, body, headers)
    assert r.status_code in (400, 422), r.text
    err = r.json()["errors"][0]
    assert err["field"] == field and needle in err["reason"], r.text


def test_counter_string_above_int64_is_clamped_and_accepted(fuzz_target):
    target, tally = fuzz_target
    body = json.dumps(_mention(external_id=f"h17-{NOW}", engagement={"likes": "99999999999999999999"})).encode()
    r = target.post("/v1/mentions", body, {"Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    tally["accepted"] += len(r.json()["accepted"])


@pytest.mark.parametrize("header", ["x-twitter-webhooks-signature", "X-Hub-Signature-256", "X-Triage-Signature",
                                    "X-Triage-Timestamp", "Authorization"])
def test_non_ascii_header_bytes_are_401_not_500(fuzz_target, header):
    target, _ = fuzz_target
    for path in ("/webhooks/x", "/webhooks/meta", "/webhooks/generic", "/v1/mentions"):
        headers = [(b"X-Triage-Timestamp", str(int(time.time())).encode()), (b"X-Triage-Signature", b"v1=00"),
                   (header.encode(), b"sha256=\xc3\xa9\xff\xfe"), (b"Content-Type", b"application/json")]
        r = target.client.post(path, content=b"{}", headers=headers)
        STATUS[(path, r.status_code)] += 1
        assert r.status_code < 500, (path, r.text)
        if path != "/v1/mentions":
            assert r.status_code == 401, (path, r.text)


def test_x_delivery_with_bad_items_dead_letters_them_and_accepts_the_rest(fuzz_target):
    target, tally = fuzz_target
    good = {"id_str": f"{int(NOW * 1000)}7", "text": "Acme Bank app down", "timestamp_ms": str(int(NOW * 1000))}
    payload = {"for_user_id": "1", "tweet_create_events": [
        {"id_str": "h17-2", "text": "a", "timestamp_ms": "²"},
        {"id_str": "h17-3", "text": "b", "timestamp_ms": "9" * 5000}, good]}
    body = json.dumps(payload).encode()
    r = target.post("/webhooks/x", body, {"x-twitter-webhooks-signature": sig.x_signature(X_SECRET, body)})
    assert r.status_code == 200, r.text
    assert r.json()["dead_lettered"] == 2 and r.json()["accepted"] == [f"x:{good['id_str']}"]
    tally["accepted"] += 1
    tally["dead_lettered"] += 2


def test_meta_delivery_with_an_absurd_timestamp_dead_letters_only_that_item(fuzz_target):
    target, tally = fuzz_target
    body = (b'{"object":"page","entry":[{"id":"1","time":%d,"messaging":['
            b'{"sender":{"id":"9"},"timestamp":1%s,"message":{"mid":"h17-m1","text":"bad"}},'
            b'{"sender":{"id":"9"},"timestamp":%d,"message":{"mid":"h17-m2-%d","text":"Acme Bank good"}}]}]}'
            % (int(NOW), b"0" * 400, int(NOW * 1000), int(NOW * 1000)))
    r = target.post("/webhooks/meta", body, {"X-Hub-Signature-256": sig.meta_signature(META_SECRET, body)})
    assert r.status_code == 200, r.text
    assert r.json()["dead_lettered"] == 1 and len(r.json()["accepted"]) == 1
    tally["accepted"] += 1
    tally["dead_lettered"] += 1


def test_json_seq_records_are_accepted(fuzz_target):
    target, tally = fuzz_target
    body = b"".join(b"\x1e" + json.dumps(_mention(external_id=f"h17-seq-{i}-{NOW}")).encode() + b"\n"
                    for i in range(2))
    r = target.post("/v1/mentions", body, {"Content-Type": "application/json-seq"})
    assert r.status_code == 202, r.text
    tally["accepted"] += len(r.json()["accepted"])


def test_control_characters_never_reach_the_id(fuzz_target):
    target, tally = fuzz_target
    body = json.dumps(_mention(external_id=f"h17\x00-ctl\x1b-{NOW}", brands=["ac\x00me"])).encode()
    r = target.post("/v1/mentions", body, {"Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == [f"x:h17-ctl-{NOW}"]
    tally["accepted"] += 1


def test_unterminated_headers_are_closed_after_the_idle_timeout(fuzz_target):
    target, _ = fuzz_target
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", target.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/mentions HTTP/1.1\r\nHost: x\r\nContent-Type: applic")
        data = sock.recv(1024)  # b"" once the server closes the connection
    assert data == b"" and time.monotonic() - started < 5


def test_an_idle_connection_is_closed(fuzz_target):
    target, _ = fuzz_target
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", target.port), timeout=10) as sock:
        assert sock.recv(1024) == b""
    assert time.monotonic() - started < 5
