"""The chaos suite (issue 11): the pipeline under kill -9, a broker crash and a failing pager, checked end to end.

A real single-node broker (`kafka_broker`), ingest, classify and router as separate OS processes (the way
`make up` starts them, `localrun.spawn_service`), and local receivers shaped like PagerDuty's Events API v2
(`POST /v2/enqueue`) and Slack's `chat.postMessage`, all on 127.0.0.1. The scenario:

- N unique mentions posted to ingest in NDJSON batches (a client that retries 503s and transport errors),
  background traffic on calm brands plus an outage burst on one brand and a second brand's outage a little
  later, so two incidents open;
- kill -9 of classify, of router and of the broker at chosen moments of progress (a share of the planned
  mentions acknowledged / scored / routed), each restarted at once (as Kubernetes would); a service that
  exits on its own is restarted too and counted;
- the PagerDuty receiver answers 500 for `pd_outage_seconds` from its first request, i.e. over the first
  trigger; the Slack receiver always answers.

Then everything is read back with a `read_committed` consumer (queue topics, mentions.dlq, pages, and
mentions.raw/mentions.scored/incidents for the diagnosis) and a table is printed: acknowledged, routed once,
duplicates, DLQ, missing, accepted triggers per incident and the trigger delay. The invariants: 0 missing,
0 duplicates on queue topics, exactly one accepted trigger per incident at each paging receiver, and the
first accepted PagerDuty trigger within group_wait + 30 s of the incident's opening (the Kafka timestamp of
its first record on `incidents`). Every duplicate is listed with the stage it came from.

    python -m services.devtools.chaos [--scenario full|short] [--runs N] [--workdir DIR]

exits 1 when an invariant fails. Every process it starts is in its own process group and is killed in a
`finally`, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.devtools.kafka_broker import KafkaBroker, ensure_jars
from services.devtools.localrun import DEFAULT_RUN_DIR, Ports, service_env, spawn_service
from services.devtools.ports import free_port
from services.router.grouping import PAGE_TYPE

HOST = "127.0.0.1"
PD_KEY = "chaos0routing0key0000000000000000"
SLACK_TOKEN = "xoxb-chaos-token"
TRIGGER_SLACK_SECONDS = 30.0  # the bound: first accepted trigger within group_wait + this of the opening
QUEUES = ("urgent", "normal", "thank", "low")
SERVICES = ("ingest", "classify", "router")

ROUTES = """\
# The chaos suite's routing file: incident mentions page PagerDuty and Slack, every mention lands on one queue.
route:
  receiver: normal
  routes:
    - matchers: ['priority="P1"', 'incident=~".+"']
      receiver: pagerduty
      group_wait: {group_wait}s
      group_interval: 30s
      continue: true
    - matchers: ['priority="P1"', 'incident=~".+"']
      receiver: slack
      group_wait: {group_wait}s
      group_interval: 30s
      continue: true
    - matchers: ['priority=~"P1|P2"']
      receiver: urgent
    - matchers: ['priority="P3"', 'intent="praise"']
      receiver: thank
    - matchers: ['priority="P3"']
      receiver: normal
    - matchers: ['priority="P4"']
      receiver: low
receivers:
  - name: pagerduty
    pagerduty: {{routing_key_env: CHAOS_PD_ROUTING_KEY, url: "http://{host}:{port}/v2/enqueue"}}
  - name: slack
    slack: {{url: "http://{host}:{port}/api/chat.postMessage", token_env: CHAOS_SLACK_TOKEN, channel: C0CHAOS}}
  - name: urgent
    kafka_queue: {{queue: urgent}}
  - name: normal
    kafka_queue: {{queue: normal}}
  - name: thank
    kafka_queue: {{queue: thank}}
  - name: low
    kafka_queue: {{queue: low}}
"""

OUTAGE_A = [
    "@AcmeBank app is down again, can't log in at all",
    "is @AcmeBank down?? getting error 503 on every login",
    "@AcmeBank la app no funciona, no puedo entrar a mi cuenta",
    "@AcmeBank приложение не работает, не могу войти",
    "@AcmeBank η εφαρμογή δεν λειτουργεί",
    "@AcmeBank ऐप काम नहीं कर रहा, लॉगिन नहीं हो रहा",
    "@AcmeBank App geht nicht, Login schlägt fehl",
]
OUTAGE_B = [
    "@AcmeNet no internet since this morning, is AcmeNet down?",
    "is @AcmeNet down? my fiber has been dead for an hour",
    "@AcmeNet sin internet en todo el barrio, no funciona nada",
    "@AcmeNet интернет не работает с утра",
    "@AcmeNet outage again, router shows no connection",
]
CALM = [
    "Thanks @{b}, the new card arrived in two days. Great service!",
    "@{b} how do I change my PIN?",
    "Win a free iPhone!!! Follow and RT #{b} #giveaway bit.ly/xyz",
    "@{b} charged me twice and nobody answers my emails. Worst service ever.",
    "Reading about @{b}'s quarterly results",
    "Danke @{b}, super schneller Support!",
    "@{b} pourquoi ma carte est bloquée ?",
    "@{b} when does the new store on Main St open?",
]
CALM_BRANDS = ("globex", "initech", "umbrella", "hooli")


@dataclass(frozen=True)
class Fault:
    """kill -9 of `target` once `fraction` of the planned mentions reached `measure`, then a restart."""

    target: str       # classify | router | broker
    measure: str      # acknowledged | scored | routed
    fraction: float

    def __str__(self) -> str:
        return f"kill -9 {self.target} at {self.fraction:.0%} {self.measure}"


@dataclass(frozen=True)
class Scenario:
    name: str
    mentions: int                  # unique mentions in all, bursts included
    burst: int                     # outage posts of brand A (acmebank)
    second_burst: int              # outage posts of brand B (acmenet)
    post_seconds: float            # background traffic is spread over this
    burst_at: float                # seconds after the start
    burst_seconds: float
    second_at: float
    second_seconds: float
    faults: tuple[Fault, ...]
    timeout_seconds: float         # the whole run, start-up included
    pd_outage_seconds: float = 20.0
    group_wait_seconds: float = 10.0
    batch: int = 10                # mentions per ingest request

    @property
    def trigger_bound(self) -> float:
        return self.group_wait_seconds + TRIGGER_SLACK_SECONDS


FULL = Scenario("full", mentions=2000, burst=300, second_burst=120, post_seconds=120, burst_at=15,
                burst_seconds=60, second_at=30, second_seconds=40,
                faults=(Fault("classify", "scored", 0.2), Fault("router", "routed", 0.35),
                        Fault("broker", "acknowledged", 0.6), Fault("classify", "scored", 0.7),
                        Fault("router", "routed", 0.85)),
                timeout_seconds=720)
SHORT = Scenario("short", mentions=500, burst=100, second_burst=50, post_seconds=45, burst_at=6,
                 burst_seconds=30, second_at=16, second_seconds=25,
                 faults=(Fault("classify", "scored", 0.25), Fault("router", "routed", 0.45),
                         Fault("broker", "acknowledged", 0.8)),
                 timeout_seconds=240)
SCENARIOS = {s.name: s for s in (FULL, SHORT)}


# ----------------------------------------------------------------------------------------------- the mentions


Batches = list[tuple[float, list[dict[str, Any]]]]


def plan_mentions(sc: Scenario, run: str, seed: int = 11) -> dict[str, Batches]:
    """Per stream (calm traffic, each outage burst): (seconds after start, NDJSON batch), in time order.
    External ids are unique across the run, so every acknowledged mention must come out exactly once."""
    rng = random.Random(seed)
    n_calm = sc.mentions - sc.burst - sc.second_burst
    streams: dict[str, list[tuple[float, dict[str, Any]]]] = defaultdict(list)

    def doc(i: int, text: str, brand: str) -> dict[str, Any]:
        return {"source": "x", "external_id": f"chaos-{run}-{i}", "text": f"{text} #{i}", "brands": [brand],
                "author": {"handle": f"user{i}", "followers": rng.choice([5, 300, 5000, 40_000])},
                "engagement": {"likes": rng.randint(0, 30), "reposts": rng.randint(0, 5)}}

    i = 0
    for k in range(n_calm):
        brand = CALM_BRANDS[k % len(CALM_BRANDS)]
        streams["calm"].append((sc.post_seconds * k / n_calm, doc(i, rng.choice(CALM).format(b=brand), brand)))
        i += 1
    for start, span, n, texts, brand in ((sc.burst_at, sc.burst_seconds, sc.burst, OUTAGE_A, "acmebank"),
                                         (sc.second_at, sc.second_seconds, sc.second_burst, OUTAGE_B, "acmenet")):
        for k in range(n):
            streams[brand].append((start + span * k / n, doc(i, rng.choice(texts), brand)))
            i += 1
    return {name: [(docs[j][0], [d for _, d in docs[j:j + sc.batch]]) for j in range(0, len(docs), sc.batch)]
            for name, docs in streams.items()}


# --------------------------------------------------------------------------------------------- the receivers


@dataclass
class Accepted:
    at: float           # wall clock when the receiver accepted it
    incident: str       # PagerDuty dedup_key / the Slack message's incident id
    notification: str   # trigger / update / resolve


class PagerDutyEvents:
    """Events API v2 shaped: validates like the real one, answers 500 for `outage` s from its first request."""

    def __init__(self, outage: float) -> None:
        self.outage = outage
        self.first: float | None = None
        self.accepted: list[Accepted] = []
        self.failed = 0
        self.invalid: list[str] = []
        self.requests: list[float] = []   # every valid request, answered 2xx or 500

    async def enqueue(self, request: web.Request) -> web.Response:
        now = time.time()
        try:
            body = await request.json()
        except ValueError:
            self.invalid.append("not JSON")
            return web.json_response({"status": "invalid event", "message": "Event object is invalid"}, status=400)
        problem = _pagerduty_problem(body)
        if problem:
            self.invalid.append(problem)
            return web.json_response({"status": "invalid event", "message": problem, "errors": [problem]},
                                     status=400)
        self.requests.append(now)
        self.first = self.first or now
        if now - self.first < self.outage:
            self.failed += 1
            return web.json_response({"status": "error", "message": "internal error"}, status=500)
        action = body["event_action"]
        notification = (body.get("payload", {}).get("custom_details", {}).get("notification", action)
                        if action == "trigger" else action)
        self.accepted.append(Accepted(now, body["dedup_key"], str(notification)))
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]},
                                 status=202)


def _pagerduty_problem(body: Any) -> str:
    if not isinstance(body, dict) or body.get("routing_key") != PD_KEY:
        return "invalid routing_key"
    if body.get("event_action") not in ("trigger", "acknowledge", "resolve"):
        return "event_action must be trigger, acknowledge or resolve"
    if not body.get("dedup_key"):
        return "dedup_key is required here"
    if body["event_action"] == "trigger":
        payload = body.get("payload") or {}
        for key in ("summary", "source", "severity"):
            if not payload.get(key):
                return f"payload.{key} is missing"
        if payload["severity"] not in ("critical", "error", "warning", "info"):
            return "payload.severity is invalid"
    return ""


_SLACK_INCIDENT = re.compile(r"incident `([^`]+)`")


class SlackChat:
    """chat.postMessage shaped: bearer token, HTTP 200 with ok true/false; the incident id from the context."""

    def __init__(self) -> None:
        self.accepted: list[Accepted] = []
        self.invalid: list[str] = []

    async def post_message(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            self.invalid.append("invalid_auth")
            return web.json_response({"ok": False, "error": "invalid_auth"})
        body = await request.json()
        if not body.get("channel") or not body.get("text"):
            self.invalid.append("no_text or channel")
            return web.json_response({"ok": False, "error": "no_text"})
        found = _SLACK_INCIDENT.search(json.dumps(body.get("blocks", []), ensure_ascii=False))
        kind = "trigger" if not body.get("thread_ts") else "resolve" if "Resolved" in body["text"] else "update"
        self.accepted.append(Accepted(time.time(), found.group(1) if found else "?", kind))
        return web.json_response({"ok": True, "channel": body["channel"], "ts": f"{time.time():.6f}"})


@contextlib.asynccontextmanager
async def receivers_running(pd: PagerDutyEvents, slack: SlackChat) -> Any:
    app = web.Application()
    app.router.add_post("/v2/enqueue", pd.enqueue)
    app.router.add_post("/api/chat.postMessage", slack.post_message)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, HOST, port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------------------------------ reading it back


@dataclass
class Snapshot:
    """What the topics hold, read with isolation.level=read_committed."""

    raw: Counter[str] = field(default_factory=Counter)
    scored: dict[str, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))
    queued: dict[str, list[tuple[str, float, float]]] = field(default_factory=lambda: defaultdict(list))
    dlq: list[dict[str, Any]] = field(default_factory=list)
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    pages: list[dict[str, Any]] = field(default_factory=list)

    def accounted(self) -> set[str]:
        return set(self.queued) | {d["mention_id"] for d in self.dlq if d["mention_id"]}

    def tagged(self) -> set[str]:
        """Incidents at least one scored mention was tagged with (the router pages those, and only those: an
        incident the detector opened on a tick, with no mention of it after, has nothing to page)."""
        return {iid for recs in self.scored.values() for _, iid in recs if iid}


def _dead_letter_mention(dl: pb.DeadLetter) -> str:
    """The mention a classify/router dead letter is about, whichever message it holds ("" if none)."""
    readers = ((pb.RoutedMention, lambda m: m.scored.mention.mention_id),
               (pb.ScoredMention, lambda m: m.mention.mention_id), (pb.Mention, lambda m: m.mention_id))
    for cls, mention_id in readers:
        try:
            mid = str(mention_id(codec.decode(dl.original, cls)))
        except Exception:
            continue
        if mid:
            return mid
    return ""


async def _records(bootstrap: str, names: set[str], timeout: float) -> AsyncIterator[tuple[str, Any]]:
    """(topic, record) for every committed record of the topics `names`, from the beginning to their end offsets
    (TimeoutError past `timeout`). The suite created them (ensure_topics): their layout is the spec's."""
    parts = [TopicPartition(spec.name, p) for spec in all_topic_specs(QUEUES) if spec.name in names
             for p in range(spec.partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", request_timeout_ms=10000,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    try:
        await consumer.start()
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout
        idle = 0
        # A transaction's commit marker sits at the end offset: after 3 empty fetches nothing is left to read.
        while idle < 3 and any([await consumer.position(tp) < end[tp] for tp in parts]):
            if time.monotonic() > deadline:
                raise TimeoutError("topics not read to their end offsets in time")
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                for r in records:
                    yield tp.topic, r
    finally:
        await consumer.stop()


async def read_back(bootstrap: str, timeout: float = 30.0) -> Snapshot:
    """Every committed record of the topics the suite judges, from the beginning to the end offsets."""
    names = {topics.MENTIONS_RAW, topics.MENTIONS_SCORED, topics.INCIDENTS, topics.PAGES, topics.MENTIONS_DLQ,
             *(topics.queue_topic(q) for q in QUEUES)}
    snap = Snapshot()
    async for topic, r in _records(bootstrap, names, timeout):
        _absorb(snap, topic, r.value or b"", r.timestamp / 1000.0)
    return snap


async def trace_mentions(bootstrap: str, ids: list[str], groups: list[str], run_dir: Path | None = None,
                         timeout: float = 60.0) -> list[str]:
    """Where each of `ids` is on the topics a mention passes through in classify (`mentions.raw`, the crisis input,
    `mentions.scored`: partition@offset), what `groups` committed on those partitions, and the services' log lines
    about skipped or re-read offsets: a missing mention's diagnosis, printed with a failed run."""
    names = {topics.MENTIONS_RAW, topics.CLASSIFY_CRISIS_INPUT, topics.MENTIONS_SCORED}
    wanted = set(ids)
    found: dict[str, list[tuple[str, int, int]]] = {i: [] for i in ids}
    lines: list[str] = []
    try:
        async for topic, r in _records(bootstrap, names, timeout):
            try:
                if topic == topics.MENTIONS_RAW:
                    mid = codec.decode(r.value or b"", pb.Mention).mention_id
                else:
                    mid = codec.decode(r.value or b"", pb.ScoredMention).mention.mention_id
            except Exception:
                continue  # a deletion, or not a mention
            if mid in wanted:
                found[mid].append((topic, r.partition, r.offset))
        for mid in ids:
            where = ", ".join(f"{t}[{p}]@{o}" for t, p, o in found[mid]) or "on none of them"
            lines.append(f"{mid}: {where}")
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        await admin.start()
        try:
            seen = {(t, p) for hits in found.values() for t, p, _ in hits}
            for group in groups:
                try:
                    committed = await admin.list_consumer_group_offsets(group)
                except Exception as exc:
                    lines.append(f"group {group}: offsets unavailable ({type(exc).__name__})")
                    continue
                at = [f"{tp.topic}[{tp.partition}]={om.offset}" for tp, om in sorted(committed.items())
                      if (tp.topic, tp.partition) in seen]
                lines.append(f"group {group} committed: {', '.join(at) or 'nothing there'}")
        finally:
            await admin.close()
    except Exception as exc:
        lines.append(f"(trace incomplete: {type(exc).__name__}: {exc})")
    for path in sorted(run_dir.glob("*.log")) if run_dir is not None else []:
        text = path.read_text(errors="replace").splitlines()
        notable = [ln for ln in text if any(k in ln for k in ("fetch_gap_accepted", "fetch_rewind", *ids))]
        if notable:
            lines.append(f"{path.name}: {len(notable)} line(s) on skipped/re-read offsets or these mentions:")
            lines += ["  " + ln[:300] for ln in notable[:8]]
    return lines


def _absorb(snap: Snapshot, topic: str, value: bytes, ts: float) -> None:
    if topic == topics.MENTIONS_RAW:
        snap.raw[codec.decode(value, pb.Mention).mention_id] += 1
    elif topic == topics.MENTIONS_SCORED:
        sm = codec.decode(value, pb.ScoredMention)
        snap.scored[sm.mention.mention_id].append((ts, sm.incident_id))
    elif topic.startswith(topics.QUEUE_PREFIX):
        routed = codec.decode(value, pb.RoutedMention)
        snap.queued[routed.scored.mention.mention_id].append(
            (topic, ts, routed.routed_at.seconds + routed.routed_at.nanos / 1e9))
    elif topic == topics.MENTIONS_DLQ:
        dl = codec.decode(value, pb.DeadLetter)
        page_incident = ""
        if dl.original_type == PAGE_TYPE:
            with contextlib.suppress(ValueError, KeyError):
                page_incident = str(json.loads(dl.original)["group"]["id"])
        snap.dlq.append({"stage": dl.stage, "receiver": dl.receiver, "reason": dl.reason[:200], "at": ts,
                         "page_incident": page_incident,
                         "mention_id": _dead_letter_mention(dl) if dl.stage in ("classify", "router")
                         and not page_incident else ""})
    elif topic == topics.INCIDENTS:
        inc = codec.decode(value, pb.Incident)
        seen = snap.incidents.setdefault(inc.id, {"brand": inc.brand, "kind": pb.IncidentKind.Name(inc.kind),
                                                  "first_record": ts, "opened_at": inc.opened_at.seconds})
        seen["first_record"] = min(seen["first_record"], ts)
    elif topic == topics.PAGES:
        rec = codec.decode(value, pb.PageRecord)
        snap.pages.append({"incident": rec.incident_id, "receiver": rec.receiver, "action": rec.action,
                           "delivered": rec.delivered, "detail": rec.detail[:120], "at": ts})


# ---------------------------------------------------------------------------------------------- the processes


class Service:
    """One service process; `kill9` is a crash (SIGKILL to its process group), `spawn` a restart."""

    def __init__(self, name: str, run_dir: Path, env: dict[str, str]) -> None:
        self.name, self.run_dir, self.env = name, run_dir, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.unplanned_exits = 0

    def spawn(self) -> None:
        self.proc = spawn_service(self.name, self.run_dir, self.env)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL what is left after 10 s (cleanup, not a fault); idempotent."""
        if self.proc is None or self.proc.returncode is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
            if self.proc.poll() is not None:
                break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group (executors, children)

    def log_tail(self, n: int = 1500) -> str:
        path = self.run_dir / f"{self.name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""


# ----------------------------------------------------------------------------------------------------- a run


@dataclass
class ClientStats:
    requests: int = 0
    status: dict[int, int] = field(default_factory=dict)  # not a Counter: asdict() would rebuild it wrong
    transport_errors: int = 0
    duplicates_first_try: int = 0      # a unique mention answered "duplicate" at once: a bug
    duplicates_after_503: int = 0      # a retry after a 503 told "duplicate": the 503 had in fact written it
    unacknowledged: int = 0            # mentions never answered 202 before the deadline


@dataclass
class RunResult:
    scenario: str
    table: str
    failures: list[str]
    report: dict[str, Any]


class ChaosRun:
    def __init__(self, sc: Scenario, workdir: Path, broker: KafkaBroker, log: Any = print) -> None:
        self.sc, self.workdir, self.broker, self.log = sc, workdir, broker, log
        self.run_id = f"{int(time.time()) % 100000:05d}"
        self.plan = plan_mentions(sc, self.run_id)
        self.acked: set[str] = set()
        self.burst_start: dict[str, float] = {}
        self.client = ClientStats()
        self.faults_done: list[dict[str, Any]] = []
        self.pd = PagerDutyEvents(sc.pd_outage_seconds)
        self.slack = SlackChat()
        self.services: dict[str, Service] = {}
        self.snap = Snapshot()
        self.trace: list[str] = []  # where the missing mentions are (trace_mentions), when some are
        self.posting_done = False
        self.t0 = 0.0

    # -- progress the faults wait for
    def progress(self, measure: str) -> int:
        if measure == "acknowledged":
            return len(self.acked)
        if measure == "scored":
            return sum(1 for m in self.snap.scored if m in self.acked)
        return sum(1 for m in self.snap.queued if m in self.acked)

    async def run(self) -> RunResult:
        sc = self.sc
        run_dir = self.workdir / "services"
        async with receivers_running(self.pd, self.slack) as rport:
            routes = self.workdir / "routes.yaml"
            routes.write_text(ROUTES.format(group_wait=int(sc.group_wait_seconds), host=HOST, port=rport))
            ports = Ports(kafka=self.broker.port, ingest=free_port(), classify_metrics=free_port(),
                          router_metrics=free_port(), console=free_port())
            await ensure_topics(self.broker.bootstrap_servers, all_topic_specs(QUEUES))
            base = service_env(self.broker.bootstrap_servers, ports, run_dir, {
                "TRIAGE_ROUTES_FILE": str(routes), "CHAOS_PD_ROUTING_KEY": PD_KEY, "CHAOS_SLACK_TOKEN": SLACK_TOKEN,
                "TRIAGE_INGEST_HOST": HOST, "TRIAGE_METRICS_HOST": HOST,
            })
            for name in SERVICES:
                # POD_NAME as in the StatefulSets: static membership, a restarted pod takes its old place.
                self.services[name] = Service(name, run_dir, {**base, "POD_NAME": f"{name}-0"})
            try:
                for s in self.services.values():
                    s.spawn()
                await self._wait_ready(ports)
                self.t0 = time.time()
                self.log(f"[chaos] {sc.name}: services ready, posting {sc.mentions} mentions")
                deadline = time.monotonic() + sc.timeout_seconds
                tasks = [asyncio.create_task(self._post_all(ports.ingest, deadline)),
                         asyncio.create_task(self._faults(deadline))]
                try:
                    await self._watch(deadline)
                finally:
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                self.snap = await self._final_snapshot()
                unaccounted = sorted(self.acked - self.snap.accounted())[:5]
                if unaccounted:
                    self.trace = await trace_mentions(self.broker.bootstrap_servers, unaccounted,
                                                      ["triage-classify", "triage-router"], run_dir)
            finally:
                for s in self.services.values():
                    s.stop()
        return self._judge()

    async def _wait_ready(self, ports: Ports) -> None:
        checks = {"ingest": f"http://{HOST}:{ports.ingest}/readyz",
                  "classify": f"http://{HOST}:{ports.classify_metrics}/metrics",
                  "router": f"http://{HOST}:{ports.router_metrics}/metrics"}
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient(timeout=2) as client:
            for name, url in checks.items():
                while True:
                    if not self.services[name].alive():
                        raise RuntimeError(f"{name} exited during start-up:\n{self.services[name].log_tail()}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(url)).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} not ready at {url}")
                    await asyncio.sleep(0.5)

    async def _post_all(self, port: int, deadline: float) -> None:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=30) as client:
            # one sender per stream: a 503 back-off in one does not hold the others' schedule
            await asyncio.gather(*(self._post_stream(client, name, batches, deadline)
                                   for name, batches in self.plan.items()))
        self.posting_done = True

    async def _post_stream(self, client: httpx.AsyncClient, name: str, batches: Batches, deadline: float) -> None:
        for at, docs in batches:
            delay = self.t0 + at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if name != "calm":
                self.burst_start.setdefault(name, time.time())
            await self._post(client, docs, deadline)

    async def _post(self, client: httpx.AsyncClient, docs: list[dict[str, Any]], deadline: float) -> None:
        body = "\n".join(json.dumps(d, ensure_ascii=False) for d in docs).encode()
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            self.client.requests += 1
            try:
                r = await client.post("/v1/mentions", content=body, headers={"Content-Type": "application/x-ndjson"})
            except httpx.HTTPError:
                self.client.transport_errors += 1
                await asyncio.sleep(1.0)
                continue
            self.client.status[r.status_code] = self.client.status.get(r.status_code, 0) + 1
            if r.status_code == 202:
                answer = r.json()
                self.acked.update(answer["accepted"])
                self.acked.update(answer["duplicates"])
                if tries == 1:
                    self.client.duplicates_first_try += len(answer["duplicates"])
                else:
                    self.client.duplicates_after_503 += len(answer["duplicates"])
                return
            if r.status_code in (429, 503):
                await asyncio.sleep(min(2.0, float(r.headers.get("Retry-After", "1") or 1)))
                continue
            raise RuntimeError(f"ingest answered {r.status_code} to a valid batch: {r.text[:300]}")
        self.client.unacknowledged += len(docs)

    async def _faults(self, deadline: float) -> None:
        for fault in self.sc.faults:
            wanted = int(fault.fraction * self.sc.mentions)
            # fire when the progress is reached, or when it stalls short of it late in the run
            while True:
                if self.progress(fault.measure) >= wanted or time.monotonic() > deadline - self.sc.timeout_seconds / 2:
                    break
                await asyncio.sleep(0.25)
            at = time.time()
            self.log(f"[chaos] t+{at - self.t0:5.1f}s {fault} ({self.progress(fault.measure)}/{self.sc.mentions})")
            if fault.target == "broker":
                await asyncio.to_thread(self.broker.kill)
                await asyncio.to_thread(self.broker.start, 120.0)
            else:
                svc = self.services[fault.target]
                await asyncio.to_thread(svc.kill9)
                svc.spawn()
            self.faults_done.append({"fault": str(fault), "target": fault.target, "at": at,
                                     "t": round(at - self.t0, 1), "back_after_s": round(time.time() - at, 1)})
            await asyncio.sleep(3.0)

    def _incidents_settled(self, now: float) -> bool:
        for inc_id, inc in self.snap.incidents.items():
            if inc_id not in self.snap.tagged():
                continue  # no mention of it reached the router as part of it: nothing to page
            triggered = {a.incident for a in self.pd.accepted if a.notification == "trigger"}
            slack = {a.incident for a in self.slack.accepted if a.notification == "trigger"}
            if (inc_id not in triggered or inc_id not in slack) and now - inc["first_record"] < \
                    self.sc.trigger_bound + 15:
                return False
        return True

    async def _watch(self, deadline: float) -> None:
        last = 0.0
        while time.monotonic() < deadline:
            await asyncio.sleep(2.0)
            for s in self.services.values():
                if s.proc is not None and not s.alive() and not self._fault_in_progress(s.name):
                    s.unplanned_exits += 1
                    self.log(f"[chaos] {s.name} exited by itself (rc {s.proc.returncode}); restarting\n"
                             f"{s.log_tail(800)}")
                    s.spawn()
            try:
                self.snap = await asyncio.wait_for(read_back(self.broker.bootstrap_servers, timeout=20), 30)
            except Exception as exc:  # the broker is down or restarting: try again
                self.log(f"[chaos] read-back failed ({type(exc).__name__}); retrying")
                continue
            now = time.time()
            if now - last > 10:
                last = now
                self.log(f"[chaos] t+{now - self.t0:5.1f}s acknowledged {len(self.acked)} scored "
                         f"{self.progress('scored')} routed {self.progress('routed')} incidents "
                         f"{len(self.snap.incidents)} pd accepted {len(self.pd.accepted)} failed {self.pd.failed}")
            if (self.posting_done and len(self.faults_done) == len(self.sc.faults)
                    and self.acked <= self.snap.accounted() and self._incidents_settled(now)):
                await asyncio.sleep(5.0)  # room for a late duplicate to show
                return
        self.log("[chaos] run deadline reached before everything came out")

    def _fault_in_progress(self, name: str) -> bool:
        return bool(self.faults_done) and self.faults_done[-1]["target"] == name and \
            time.time() - self.faults_done[-1]["at"] < 3.0

    async def _final_snapshot(self) -> Snapshot:
        for _ in range(10):
            try:
                return await asyncio.wait_for(read_back(self.broker.bootstrap_servers, timeout=60), 90)
            except Exception as exc:
                self.log(f"[chaos] final read-back failed ({type(exc).__name__}: {exc}); retrying")
                await asyncio.sleep(3)
        return self.snap

    # -- the verdict
    def _judge(self) -> RunResult:
        sc, snap = self.sc, self.snap
        acked = self.acked
        queued = {m: v for m, v in snap.queued.items() if m in acked}
        dup_ids = sorted(m for m, v in queued.items() if len(v) > 1)
        dlq_ids = {d["mention_id"] for d in snap.dlq if d["mention_id"] in acked}
        missing = sorted(acked - set(queued) - dlq_ids)
        routed_once = sum(1 for v in queued.values() if len(v) == 1)
        failures: list[str] = []
        if self.client.unacknowledged:
            failures.append(f"{self.client.unacknowledged} mentions never acknowledged by ingest")
        if missing:
            failures.append(f"{len(missing)} acknowledged mentions missing (e.g. {missing[:5]})\n    "
                            + "\n    ".join(self.trace))
        if dup_ids:
            failures.append(f"{len(dup_ids)} mentions duplicated on queue topics "
                            f"({sum(len(queued[m]) - 1 for m in dup_ids)} extra records)")
        if self.client.duplicates_first_try:
            failures.append(f"{self.client.duplicates_first_try} unique mentions answered 'duplicate' at first try")

        rows = []
        expected_brands = {"acmebank", "acmenet"}
        asked = sorted([*self.pd.requests, *(a.at for a in self.slack.accepted)])   # receivers' requests
        for inc_id, inc in sorted(snap.incidents.items(), key=lambda kv: kv[1]["first_record"]):
            pd_events = [a for a in self.pd.accepted if a.incident == inc_id]
            sl_events = [a for a in self.slack.accepted if a.incident == inc_id]
            pd_trig = [a for a in pd_events if a.notification == "trigger"]
            sl_trig = [a for a in sl_events if a.notification == "trigger"]
            opened = inc["first_record"]
            delay = pd_trig[0].at - opened if pd_trig else None
            # The bound is on page delivery, not on a process's start-up: when the router or the broker was
            # killed before the trigger and not yet paging again at the opening, the clock starts at the
            # receivers' first request after that fault (the restarted path paging again, 2xx or not).
            path_from = opened
            if pd_trig:
                for f in self.faults_done:
                    if f["target"] in ("router", "broker") and f["at"] <= pd_trig[0].at:
                        path_from = max(path_from, next((t for t in asked if t > f["at"]), f["at"]))
            path_delay = pd_trig[0].at - path_from if pd_trig else None
            burst = self.burst_start.get(inc["brand"])
            failed_pages = [p for p in snap.pages if p["incident"] == inc_id and not p["delivered"]]
            dlq_pages = [d for d in snap.dlq if d["page_incident"] == inc_id]
            rows.append({"incident": inc_id, "brand": inc["brand"], "kind": inc["kind"],
                         "opened_t": round(opened - self.t0, 1), "pd_triggers": len(pd_trig),
                         "pd_updates": sum(1 for a in pd_events if a.notification == "update"),
                         "slack_triggers": len(sl_trig),
                         "delay_open_s": None if delay is None else round(delay, 1),
                         "delay_path_s": None if path_delay is None else round(path_delay, 1),
                         "delay_burst_s": round(pd_trig[0].at - burst, 1) if pd_trig and burst else None,
                         "pages_failed": len(failed_pages), "page_dead_letters": len(dlq_pages),
                         "failed_actions": dict(Counter(p["action"] for p in failed_pages))})
            expected_brands.discard(inc["brand"])
            rows[-1]["tagged_mentions"] = inc_id in snap.tagged()
            # Exactly one trigger for an incident with mentions tagged with it; never more than one for any.
            want = {1} if inc_id in snap.tagged() else {0, 1}
            if len(pd_trig) not in want:
                failures.append(f"incident {inc_id} ({inc['brand']}): {len(pd_trig)} accepted PagerDuty triggers")
            if len(sl_trig) not in want:
                failures.append(f"incident {inc_id} ({inc['brand']}): {len(sl_trig)} accepted Slack triggers")
            if path_delay is not None and path_delay > sc.trigger_bound:
                failures.append(f"incident {inc_id} ({inc['brand']}): first trigger {delay:.0f}s after opening, "
                                f"{path_delay:.0f}s after the paging path was back (bound {sc.trigger_bound:.0f}s)")
        for brand in sorted(expected_brands):
            failures.append(f"scenario: no incident opened for {brand} (the outage burst did not open one)")
        invalid = self.pd.invalid + self.slack.invalid
        if invalid:
            failures.append(f"receivers rejected {len(invalid)} malformed requests: {Counter(invalid)}")
        for s in self.services.values():
            if s.unplanned_exits:
                failures.append(f"{s.name} exited by itself {s.unplanned_exits} times")

        duplicates = [self._diagnose(m) for m in dup_ids]
        table = self._table(len(acked), routed_once, dup_ids, queued, dlq_ids, missing, rows, duplicates)
        report = {"scenario": asdict(sc), "run_id": self.run_id, "acknowledged": len(acked),
                  "routed_once": routed_once, "duplicates": duplicates, "dlq": sorted(dlq_ids), "missing": missing,
                  "incidents": rows, "faults": self.faults_done, "client": asdict(self.client),
                  "pd_failed_requests": self.pd.failed, "failures": failures, "t0": self.t0,
                  "pd_outage_from": self.pd.first, "pd_accepted": [asdict(a) for a in self.pd.accepted],
                  "slack_accepted": [asdict(a) for a in self.slack.accepted],
                  "page_records": snap.pages, "dead_letters": [d for d in snap.dlq if d["stage"] != "ingest"]}
        (self.workdir / "report.json").write_text(json.dumps(report, indent=1, default=str))
        return RunResult(sc.name, table, failures, report)

    def _diagnose(self, mid: str) -> dict[str, Any]:
        """Where a duplicate came from: a second record on raw (ingest), on scored (classify re-scored an
        uncommitted batch), or only on the queues (router re-routed the same scored record)."""
        snap = self.snap
        raw, scored, queued = snap.raw[mid], snap.scored.get(mid, []), snap.queued[mid]
        stage = "ingest" if raw > 1 else "classify" if len(scored) > 1 else "router"
        first_dup = sorted(q[1] for q in queued)[1]
        before = [f for f in self.faults_done if f["at"] <= first_dup]
        return {"mention_id": mid, "stage": stage, "raw": raw, "scored": len(scored),
                "queue_records": [(t, round(ts - self.t0, 1)) for t, ts, _ in queued],
                "scored_at": [round(ts - self.t0, 1) for ts, _ in scored],
                "after_fault": before[-1]["fault"] if before else "none"}

    def _table(self, acked: int, once: int, dup_ids: list[str], queued: dict[str, Any], dlq_ids: set[str],
               missing: list[str], rows: list[dict[str, Any]], duplicates: list[dict[str, Any]]) -> str:
        c = self.client
        lines = [f"chaos {self.sc.name}: {self.sc.mentions} mentions (burst {self.sc.burst} acmebank, "
                 f"{self.sc.second_burst} acmenet), PagerDuty 500 for {self.sc.pd_outage_seconds:.0f}s",
                 "faults: " + "; ".join(f"{f['fault']} @t+{f['t']}s (restarted in {f['back_after_s']}s)"
                                        for f in self.faults_done),
                 f"{'acknowledged':<28}{acked:>8}",
                 f"{'routed once':<28}{once:>8}",
                 f"{'duplicates (mentions)':<28}{len(dup_ids):>8}   extra records "
                 f"{sum(len(queued[m]) - 1 for m in dup_ids)}",
                 f"{'dead-lettered (DLQ)':<28}{len(dlq_ids):>8}",
                 f"{'mentions.raw records':<28}{sum(self.snap.raw.values()):>8}   "
                 f"({sum(n - 1 for n in self.snap.raw.values() if n > 1)} second copies)",
                 f"{'mentions.scored records':<28}{sum(len(v) for v in self.snap.scored.values()):>8}   "
                 f"({sum(len(v) - 1 for v in self.snap.scored.values() if len(v) > 1)} re-scored after a crash, "
                 f"absorbed unless counted as duplicates above)",
                 f"{'missing':<28}{len(missing):>8}",
                 f"{'ingest requests':<28}{c.requests:>8}   status {dict(sorted(c.status.items()))}, transport "
                 f"errors {c.transport_errors}, 'duplicates' after a 503 {c.duplicates_after_503}",
                 f"{'PagerDuty 500s answered':<28}{self.pd.failed:>8}",
                 "",
                 f"{'incident':<22}{'brand':<10}{'opened':>8}{'PD trig':>8}{'PD upd':>7}{'Slack trig':>11}"
                 f"{'delay open':>11}{'delay path':>11}{'delay burst':>12}  pages failed"]
        for r in rows:
            def fmt(v: Any) -> str:
                return "-" if v is None else f"{v}s"
            lines.append(f"{r['incident'][:21]:<22}{r['brand']:<10}{'t+' + str(r['opened_t']):>8}"
                         f"{r['pd_triggers']:>8}{r['pd_updates']:>7}{r['slack_triggers']:>11}"
                         f"{fmt(r['delay_open_s']):>11}{fmt(r['delay_path_s']):>11}{fmt(r['delay_burst_s']):>12}"
                         f"  {r['failed_actions'] or 0}"
                         + ("" if r.get("tagged_mentions", True) else "  (no mention tagged with it: not paged)"))
        lines.append(f"trigger bound: group_wait {self.sc.group_wait_seconds:.0f}s + {TRIGGER_SLACK_SECONDS:.0f}s on "
                     "'delay path': from the opening, or from the receivers' first request after a router/broker kill")
        if duplicates:
            by = Counter((d["stage"], d["after_fault"]) for d in duplicates)
            lines.append("duplicates by stage / preceding fault: "
                         + "; ".join(f"{s} after '{f}': {n}" for (s, f), n in by.most_common()))
            for d in duplicates[:40]:
                lines.append(f"  {d['mention_id']}: stage {d['stage']} raw {d['raw']} scored {d['scored']} "
                             f"(at {d['scored_at']}) queue {d['queue_records']}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ entry points


def run_scenario(sc: Scenario, workdir: Path, broker: KafkaBroker | None = None, log: Any = print) -> RunResult:
    """One run on `broker` (a started private broker the suite may kill), or on a fresh one it starts."""
    own = broker is None
    if broker is None:
        broker = KafkaBroker(workdir / "kafka", libs_dir=ensure_jars())
        broker.start(timeout=120)
    run = ChaosRun(sc, workdir, broker, log)
    try:
        return asyncio.run(run.run())
    finally:
        for svc in run.services.values():  # also on Ctrl-C / SIGTERM, whatever the event loop got to
            svc.stop()
        if own:
            broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.devtools.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="full")
    parser.add_argument("--runs", type=int, default=1, help="runs in a row, each on a fresh broker")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_RUN_DIR / "chaos",
                        help="logs, broker data and report.json of each run (default run/chaos)")
    args = parser.parse_args(argv)

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop every process

    signal.signal(signal.SIGTERM, terminate)
    # aiokafka logs every refused connection while the broker is down on purpose: noise here
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s %(message)s")
    failed = 0
    for i in range(1, args.runs + 1):
        wd = args.workdir / f"{args.scenario}-{i}"
        shutil.rmtree(wd, ignore_errors=True)  # a fresh broker, fresh logs
        wd.mkdir(parents=True)
        result = run_scenario(SCENARIOS[args.scenario], wd)
        print(f"\n=== run {i}/{args.runs} ===\n{result.table}")
        if result.failures:
            failed += 1
            print("INVARIANTS FAILED:\n  " + "\n  ".join(result.failures))
        else:
            print("all invariants hold")
        print(f"logs and report.json in {wd}", flush=True)
    print(f"\nchaos {args.scenario}: {args.runs - failed}/{args.runs} runs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
