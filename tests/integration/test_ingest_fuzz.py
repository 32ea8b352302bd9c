"""Property test: arbitrary bytes and JSON at POST /v1/mentions and the webhooks never get a 5xx,
never crash ingest, and an invalid request never produces a message (counted on the real topic).

Also the regression cases of issue 17 over HTTP (each a 4xx naming the field and the reason), a
platform delivery with one bad item (200, that item dead-lettered, the rest produced) and the
header-read timeout. Ingest runs as its own process (`triage ingest`, the way it is deployed), so the
harness and the server do not share a GIL and its RSS is its own. Size: INGEST_FUZZ_EXAMPLES per
property (default 400, a few thousand requests in all), bounded by INGEST_FUZZ_SECONDS per property and
split over INGEST_FUZZ_WORKERS processes (default 1; generation is the harness's cost, a core each);
`make fuzz` runs 25,000 per property (100,000 requests) and asks for at least INGEST_FUZZ_MIN_REQUESTS.
A status table (endpoint x code) is printed at the end, with produced == accepted checked on the
topics, and ingest's RSS before, during (peak) and after the load, "after" once the dedupe window
(INGEST_FUZZ_DEDUPE_WINDOW seconds) has expired and its entries and bytes gauges read 0.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ServiceProcess, consume, free_port

from services.common import topics
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.ingest import signatures as sig

X_SECRET, META_SECRET, GENERIC_SECRET = "fuzz-x", "fuzz-meta", "fuzz-generic"
EXAMPLES = int(os.environ.get("INGEST_FUZZ_EXAMPLES", "400"))
SECONDS = float(os.environ.get("INGEST_FUZZ_SECONDS", "12"))
MIN_REQUESTS = int(os.environ.get("INGEST_FUZZ_MIN_REQUESTS", "0"))
DEDUPE_WINDOW = float(os.environ.get("INGEST_FUZZ_DEDUPE_WINDOW", "3"))
WORKERS = int(os.environ.get("INGEST_FUZZ_WORKERS", "1"))
STATUS: Counter[tuple[str, int]] = Counter()
TRANSPORT_RETRIES: Counter[str] = Counter()


class IngestProcess:
    """`triage ingest` as a subprocess with the fuzz settings; samples its RSS in the background."""

    def __init__(self, bootstrap: str, log_dir: Path):
        self.port = free_port()
        env = {"TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_INGEST_PORT": str(self.port),
               "TRIAGE_X_CONSUMER_SECRET": X_SECRET, "TRIAGE_META_APP_SECRET": META_SECRET,
               "TRIAGE_META_VERIFY_TOKEN": "fuzz-verify",
               "TRIAGE_WEBHOOK_SECRET": GENERIC_SECRET, "TRIAGE_MAX_BODY_BYTES": "32000",
               "TRIAGE_INGEST_MAX_BATCH": "20", "TRIAGE_IDLE_TIMEOUT_SECONDS": "1.0",
               "TRIAGE_DEDUPE_WINDOW_SECONDS": str(DEDUPE_WINDOW), "TRIAGE_LOG_LEVEL": "INFO"}
        self.proc = ServiceProcess("ingest", env, log_dir)
        self.rss: dict[str, float] = {}
        self.peak = 0.0
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def _sample(self) -> None:
        while not self._sampling.wait(0.5):
            if self.proc.alive():
                self.peak = max(self.peak, self.rss_mib())

    def __enter__(self) -> str:
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.alive(), self.proc.log_tail()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "ingest did not become ready: " + self.proc.log_tail()
            time.sleep(0.2)
        self.rss["before"] = self.rss_mib()
        self._sampler.start()
        return url

    def stop_sampling(self) -> None:
        self._sampling.set()
        self._sampler.join(5)
        self.rss["during"] = max(self.peak, self.rss.get("before", 0.0))

    def __exit__(self, *exc: object) -> None:
        self._sampling.set()
        self.proc.stop()


class Target:
    def __init__(self, client: httpx.Client, port: int):
        self.client = client
        self.port = port
        self.last_request = time.monotonic()

    def post(self, path: str, body: bytes, headers: dict[str, str] | list[tuple[bytes, bytes]] | None = None,
             ) -> httpx.Response:
        try:
            r = self.client.post(path, content=body, headers=headers or {})
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            # The server closes a connection idle for 1 s; a request racing that close is sent again, once.
            # (Safe to count: were the first attempt processed, its mentions come back as duplicates, not
            # accepted, and produced == accepted fails. A crash is caught by the checks at the end.)
            TRANSPORT_RETRIES[path] += 1
            r = self.client.post(path, content=body, headers=headers or {})
        STATUS[(path, r.status_code)] += 1
        self.last_request = time.monotonic()
        return r


def _gauge(page: str, name: str) -> float:
    return next(float(line.split()[1]) for line in page.splitlines() if line.startswith(name + " "))


@pytest.fixture(scope="module")
def fuzz_target(kafka_bootstrap, request, tmp_path_factory) -> Iterator[tuple[Target, dict[str, int]]]:
    asyncio.run(ensure_topics(kafka_bootstrap, all_topic_specs()))
    before = _count(kafka_bootstrap)
    tally = {"accepted": 0, "dead_lettered": 0}
    ingest = IngestProcess(kafka_bootstrap, tmp_path_factory.mktemp("ingest-fuzz"))
    started = time.monotonic()
    # One keep-alive connection per client, reused by every request (the server closes it after errors
    # that leave the body unread; httpx reconnects).
    with ingest as url, httpx.Client(base_url=url, timeout=30) as client:
        target = Target(client, ingest.port)
        yield target, tally
        elapsed = time.monotonic() - started
        ingest.stop_sampling()
        during = client.get("/metrics").text
        # "After": once the dedupe window has expired; /metrics prunes it, the gauges must read 0.
        time.sleep(max(0.0, target.last_request + DEDUPE_WINDOW + 1 - time.monotonic()))
        after = client.get("/metrics").text
        ingest.rss["after"] = ingest.rss_mib()
        assert client.get("/healthz").status_code == 200  # still alive after everything
    log_lines = ingest.proc.log.read_text(errors="replace").splitlines()
    assert ingest.proc.proc.returncode == 0, ingest.proc.log_tail()  # SIGTERM: a clean shutdown
    after_counts = _count(kafka_bootstrap)
    produced = after_counts[topics.MENTIONS_RAW] - before[topics.MENTIONS_RAW]
    dead = after_counts[topics.MENTIONS_DLQ] - before[topics.MENTIONS_DLQ]
    window = {"during": (_gauge(during, "triage_ingest_dedupe_entries"), _gauge(during, "triage_ingest_dedupe_bytes")),
              "after": (_gauge(after, "triage_ingest_dedupe_entries"), _gauge(after, "triage_ingest_dedupe_bytes"))}
    _print_table(request.config, produced, dead, tally, ingest.rss, window, elapsed, log_lines)
    # Only what ingest answered as accepted (2xx) reached the topics: nothing from a refused request.
    assert produced == tally["accepted"]
    assert dead == tally["dead_lettered"]
    assert not [k for k in STATUS if k[1] >= 500], STATUS
    assert window["after"] == (0.0, 0.0), window  # the window emptied once expired
    assert sum(STATUS.values()) >= MIN_REQUESTS, f"{sum(STATUS.values())} requests, wanted {MIN_REQUESTS}"
    assert not [line for line in log_lines if "Traceback" in line], ingest.proc.log_tail()


def _print_table(config: pytest.Config, produced: int, dead: int, tally: dict[str, int], rss: dict[str, float],
                 window: dict[str, tuple[float, float]], elapsed: float, log_lines: list[str]) -> None:
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
    lines.append(f"{sum(total)} requests in {elapsed:.0f} s ({sum(total) / max(elapsed, 1e-9):.0f}/s); ingest RSS "
                 f"before {rss['before']:.0f} MiB, during (peak) {rss['during']:.0f} MiB, after {rss['after']:.0f} "
                 f"MiB (dedupe window {DEDUPE_WINDOW:g} s expired)")
    lines.append(f"dedupe window: during {window['during'][0]:.0f} entries / {window['during'][1] / 1024:.0f} KiB, "
                 f"after {window['after'][0]:.0f} entries / {window['after'][1] / 1024:.0f} KiB; ingest log "
                 f"{len(log_lines)} lines, {sum(1 for ln in log_lines if 'Traceback' in ln)} tracebacks; requests sent "
                 f"again after a connection closed under them: {sum(TRANSPORT_RETRIES.values())}")
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


def check_api(target: Target, tally: dict[str, int], body: bytes, ctype: str) -> None:
    r = target.post("/v1/mentions", body, _headers(ctype))
    _record(tally, r)
    if r.status_code != 202:
        assert r.status_code in (400, 413, 415, 422), r.text


def check_unsigned(target: Target, tally: dict[str, int], body: bytes, path: str, signature: str,
                   timestamp: str) -> None:
    """Unsigned or wrongly signed webhooks are 401 and never produced."""
    headers = {"x-twitter-webhooks-signature": signature, "X-Hub-Signature-256": signature,
               "X-Triage-Signature": signature, "X-Triage-Timestamp": timestamp}
    r = target.post(path, body, _latin1(headers))
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


def check_signed(target: Target, tally: dict[str, int], body: bytes, platform: str) -> None:
    if platform == "x":
        headers = {"x-twitter-webhooks-signature": sig.x_signature(X_SECRET, body)}
    else:
        headers = {"X-Hub-Signature-256": sig.meta_signature(META_SECRET, body)}
    r = target.post(f"/webhooks/{platform}", body, headers)
    _record(tally, r)
    if r.status_code != 200:
        assert r.status_code in (400, 413, 422), r.text


def check_generic(target: Target, tally: dict[str, int], body: bytes, ctype: str) -> None:
    ts = str(int(time.time()))
    headers = _headers(ctype, {"X-Triage-Timestamp": ts,
                               "X-Triage-Signature": sig.generic_signature(GENERIC_SECRET, ts, body)})
    r = target.post("/webhooks/generic", body, headers)
    _record(tally, r)


# name -> (strategies, check): each a hypothesis property over one endpoint family.
PROPERTIES: dict[str, tuple[dict[str, st.SearchStrategy[Any]], Callable[..., None]]] = {
    "api": ({"body": bodies, "ctype": ctypes}, check_api),
    "unsigned": ({"body": bodies, "path": st.sampled_from(["/webhooks/x", "/webhooks/meta", "/webhooks/generic"]),
                  "signature": header_values, "timestamp": header_values}, check_unsigned),
    "signed": ({"body": bodies | x_payloads | meta_payloads, "platform": st.sampled_from(["x", "meta"])},
               check_signed),
    "generic": ({"body": bodies, "ctype": ctypes}, check_generic),
}


def run_property(name: str, target: Target, tally: dict[str, int], examples: int) -> None:
    strategies, check = PROPERTIES[name]

    @settings(FUZZ, max_examples=examples)
    @given(**strategies)
    def prop(**drawn: Any) -> None:
        if BUDGET.spent(name):
            return
        check(target, tally, **drawn)

    prop()


def _shard(name: str, url: str, port: int, examples: int) -> tuple[dict[tuple[str, int], int], dict[str, int],
                                                                    dict[str, int]]:
    """One worker process's share of a property (its own client and hypothesis run); returns its counts."""
    STATUS.clear()
    TRANSPORT_RETRIES.clear()
    tally = {"accepted": 0, "dead_lettered": 0}
    with httpx.Client(base_url=url, timeout=30) as client:
        run_property(name, Target(client, port), tally, examples)
    return dict(STATUS), tally, dict(TRANSPORT_RETRIES)


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_property_never_5xx_and_never_produced_when_refused(fuzz_target, name):
    """Each property runs INGEST_FUZZ_EXAMPLES examples, split over INGEST_FUZZ_WORKERS processes (hypothesis
    generation is the harness's cost, one core each); a failure in a worker fails here with its example."""
    target, tally = fuzz_target
    if WORKERS <= 1:
        run_property(name, target, tally, EXAMPLES)
        return
    shares = [EXAMPLES // WORKERS + (1 if i < EXAMPLES % WORKERS else 0) for i in range(WORKERS)]
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_shard, name, str(target.client.base_url).rstrip("/"), target.port, n)
                   for n in shares]
        results = [f.result() for f in futures]  # re-raises a worker's failure (with hypothesis' example)
    for status, shard_tally, retries in results:
        STATUS.update(status)
        TRANSPORT_RETRIES.update(retries)
        for k, v in shard_tally.items():
            tally[k] += v
    target.last_request = time.monotonic()


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
        r = target.post(path, b"{}", headers)
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
