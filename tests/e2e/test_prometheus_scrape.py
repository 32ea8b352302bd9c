"""A real Prometheus scrapes the running pipeline; the dashboards' and alerts' series must exist and move.

ingest, classify and router run as processes (as in production, each with its own /metrics)
on the session's Kafka broker. A Debian `prometheus` binary on 127.0.0.1 scrapes them every second
with the same label semantics as the Kubernetes ServiceMonitor (honor_labels, `service` per
target), and loads deploy/prometheus/rules.yml. Thirty mentions go through; every mention's copy
for an "audit" webhook nobody listens on fails, so the failure and dead-letter paths move too.

Everything is asserted through Prometheus' HTTP API, as a dashboard or an alert would see it:
key series exist with the exact counts the pipeline produced, rates are positive while traffic
flows, every dashboard query parses and runs, every alert rule evaluates without error, and the
alerts that should fire on this run (dead letters) do while the ones that should not (service
down) do not.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from support import REPO_ROOT, ServiceProcess, free_port

from services.common import topics
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs

N_MENTIONS = 30
TEXTS = [
    "@AcmeBank app is down again, can't log in at all",
    "@AcmeBank la app no funciona, no puedo entrar a mi cuenta",
    "Thanks @AcmeBank, the new card arrived in two days. Great service!",
    "@AcmeBank how do I change my PIN?",
    "Win a free iPhone!!! Follow and RT #AcmeBank #giveaway bit.ly/xyz",
    "Your ATM at Main St sparked and burned my hand, @AcmeBank someone will get hurt. Calling my lawyer.",
    "@AcmeBank charged me twice and nobody answers my emails. Worst bank ever.",
    "Reading about @AcmeBank's quarterly results",
    "Danke @AcmeBank, super schneller Support!",
    "@AcmeBank pourquoi ma carte est bloquée ?",
]
QUEUES = ("urgent", "normal", "low")
ROUTES = """\
route:
  receiver: normal
  routes:
    # every mention also goes to an audit webhook on a port nobody listens on: its deliveries fail,
    # are retried and dead-lettered, so those series and alerts have something to show
    - receiver: audit
      continue: true
    - matchers: ['priority=~"P1|P2"']
      receiver: urgent
    - matchers: ['priority="P3"']
      receiver: normal
    - matchers: ['priority="P4"']
      receiver: low
receivers:
  - name: audit
    webhook: {url: "http://127.0.0.1:%d/hook"}
  - name: urgent
    kafka_queue: {queue: urgent}
  - name: normal
    kafka_queue: {queue: normal}
  - name: low
    kafka_queue: {queue: low}
"""


def _prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        reason = "prometheus not installed (apt-get install -y prometheus)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return path


class Prometheus:
    """A throwaway Prometheus server: scrapes the given targets every second, evaluates the rules."""

    def __init__(self, workdir: Path, targets: dict[str, int], rule_files: list[Path]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                # Same semantics as deploy/k8s/base/monitoring/servicemonitor.yaml.
                {"job_name": service, "honor_labels": True,
                 "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"service": service}}]}
                for service, port in targets.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        self._fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [_prometheus_binary(), f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"prometheus not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def api(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = r.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return list(data["result"])

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of a query that aggregates to one series (None when empty)."""
        result = self.query(expr, at)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._fh.close()


@dataclass
class Run:
    prom: Prometheus
    accepted: int
    rejected: int
    duplicates: int
    sent_at: float      # unix time right after ingest answered the last mention
    routed_at: float    # unix time when Prometheus first saw every mention routed


def _mentions(run_id: str) -> list[dict[str, Any]]:
    # Every other one says when it was posted; the others have no created_at (ingest does not invent one).
    return [{"source": ["x", "reddit", "mastodon", "bluesky"][i % 4], "external_id": f"prom-{run_id}-{i}",
             "text": f"{TEXTS[i % len(TEXTS)]} #{i}", "author": {"handle": f"user{i}", "followers": 300},
             "engagement": {"likes": i % 7}, "brands": ["acmebank"],
             **({"created_at": time.time() - 5} if i % 2 == 0 else {})} for i in range(N_MENTIONS)]


WITH_CREATED_AT = len(range(0, N_MENTIONS, 2))


async def _start_group_at_end(bootstrap: str, group: str, names: list[str]) -> None:
    """Commit the group at the end of its topics, so only this test's mentions are counted even
    when other tests already wrote to the session broker's topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        parts = [TopicPartition(t["topic"], p["partition"]) for t in await admin.describe_topics()
                 if t["topic"] in names for p in t["partitions"]]
    finally:
        await admin.close()
    assert len({tp.topic for tp in parts}) == len(names), parts
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.commit(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


def _wait(predicate: Any, timeout: float, what: str, procs: list[ServiceProcess], interval: float = 1.0,
          prom: Prometheus | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            assert p.alive(), f"{p.name} died:\n{p.log_tail()}"
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    tails = "\n".join(f"--- {p.name}\n{p.log_tail(1500)}" for p in procs)
    if prom is not None:  # where the mentions got to, as Prometheus saw it
        for expr in ("sum by (service, topic) (triage_messages_in_total)", "sum by (service, topic) "
                     "(triage_messages_out_total)", "sum by (receiver) (triage_router_routed_total)", "up"):
            tails += f"\n--- {expr}: " + ", ".join(f"{r['metric']}={r['value'][1]}" for r in prom.query(expr))
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    _prometheus_binary()
    work = tmp_path_factory.mktemp("prom-e2e")
    run_id = uuid.uuid4().hex[:8]
    classify_group, router_group = f"prom-classify-{run_id}", f"prom-router-{run_id}"
    ports = {"ingest": free_port(), "classify": free_port(), "router": free_port()}
    routes = work / "routes.yaml"
    routes.write_text(ROUTES % free_port())

    async def prepare() -> None:
        await ensure_topics(kafka_bootstrap, all_topic_specs())
        await _start_group_at_end(kafka_bootstrap, classify_group,
                                  [topics.MENTIONS_RAW, topics.CLASSIFY_CRISIS_INPUT])
        await _start_group_at_end(kafka_bootstrap, router_group,
                                  [topics.MENTIONS_SCORED, topics.ROUTER_PAGE_REQUESTS, topics.RESPONSES])

    asyncio.run(prepare())
    common = {"TRIAGE_KAFKA_BOOTSTRAP": kafka_bootstrap, "TRIAGE_LOG_LEVEL": "WARNING"}
    procs = [
        ServiceProcess("ingest", {**common, "TRIAGE_INGEST_PORT": str(ports["ingest"])}, work),
        ServiceProcess("classify", {**common, "TRIAGE_CLASSIFY_METRICS_PORT": str(ports["classify"]),
                                    "TRIAGE_CLASSIFY_APP_ID": classify_group,
                                    "TRIAGE_DATA_DIR": str(work / "classify-data")}, work),
        ServiceProcess("router", {**common, "TRIAGE_ROUTER_METRICS_PORT": str(ports["router"]),
                                  "TRIAGE_ROUTER_APP_ID": router_group, "TRIAGE_ROUTES_FILE": str(routes),
                                  "TRIAGE_DATA_DIR": str(work / "router-data"),
                                  # fail fast and never open the breaker: every audit delivery is retried
                                  # once and dead-lettered, deterministically
                                  "TRIAGE_DELIVERY_ATTEMPTS": "2", "TRIAGE_DELIVERY_BACKOFF_SECONDS": "0.05",
                                  "TRIAGE_DELIVERY_BREAKER_FAILURES": "1000000"}, work),
    ]
    prom = Prometheus(work, ports, [REPO_ROOT / "deploy" / "prometheus" / "rules.yml"])
    try:
        prom.wait_ready()
        # Every target up, i.e. the workers loaded their model/routes and serve /metrics.
        _wait(lambda: prom.value('sum(up{service=~"ingest|classify|router"})') == 3, 300,
              "all three services scraped", procs, prom=prom)
        # ...and their consumers joined (Faust starts the agents a little after /metrics).
        time.sleep(5)

        mentions = _mentions(run_id)
        accepted = rejected = duplicates = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['ingest']}", timeout=30) as client:
            # Three waves a few scrapes apart. A labelled counter appears at its first increment,
            # and rate()/increase() cannot see that first step, so one burst could look flat.
            for i in range(0, N_MENTIONS, 10):
                body = "\n".join(json.dumps(m, ensure_ascii=False) for m in mentions[i:i + 10]).encode()
                r = client.post("/v1/mentions", content=body, headers={"Content-Type": "application/x-ndjson"})
                assert r.status_code == 202, r.text
                accepted += len(r.json()["accepted"])
                time.sleep(3)
            r = client.post("/v1/mentions", json=mentions[0])
            duplicates += len(r.json()["duplicates"])
            r = client.post("/v1/mentions", json={"source": "myspace", "external_id": "bad", "text": "hi"})
            assert r.status_code == 422
            rejected += 1
        sent_at = time.time()
        assert accepted == N_MENTIONS and duplicates == 1

        queues = "|".join(QUEUES)
        _wait(lambda: (prom.value(f'sum(triage_router_routed_total{{receiver=~"{queues}"}})') or 0) >= accepted,
              240, f"{accepted} mentions routed (as Prometheus sees it)", procs, prom=prom)
        routed_at = time.time()
        # The last requests (duplicate, rejected) must have been scraped before the tests look.
        _wait(lambda: prom.value("sum(triage_ingest_mentions_duplicate_total)") == duplicates
              and prom.value("sum(triage_ingest_mentions_rejected_total)") == rejected, 30,
              "ingest's last requests scraped", procs, prom=prom)
        yield Run(prom, accepted, rejected, duplicates, sent_at, routed_at)
    finally:
        for p in procs:
            p.stop()
        prom.stop()


def test_ingest_series_count_exactly_what_was_sent(run: Run) -> None:
    p = run.prom
    assert p.value("sum(triage_ingest_mentions_accepted_total)") == run.accepted
    assert p.value("sum(triage_ingest_mentions_duplicate_total)") == run.duplicates
    assert p.value('sum(triage_ingest_mentions_rejected_total{reason="invalid_field"})') == run.rejected
    # While the mentions were arriving, the per-second rate a dashboard shows was positive.
    assert (p.value("sum(rate(triage_ingest_mentions_accepted_total[1m]))", at=run.sent_at + 2) or 0) > 0
    assert p.value('sum(triage_ingest_http_requests_total{code="202"})') == 4  # 3 batches + the duplicate
    assert p.value("min(triage_ingest_kafka_up)") == 1


def test_every_stage_moves_messages(run: Run) -> None:
    p = run.prom
    at = run.routed_at
    moved = {r["metric"]["service"]: float(r["value"][1])
             for r in p.query("sum by (service) (increase(triage_messages_in_total[5m]))", at)}
    assert set(moved) >= {"ingest", "classify", "router"} and min(moved.values()) > 0, moved
    assert (p.value('sum(rate(triage_messages_out_total{service="classify"}[1m]))', at) or 0) > 0
    assert (p.value("sum(rate(triage_router_routed_total[1m]))", at) or 0) > 0


def test_classify_reports_batches_model_and_priorities(run: Run) -> None:
    p = run.prom
    assert p.value("sum(triage_classify_scored_total)") == run.accepted
    batches = p.value("sum(triage_classify_batch_size_count)") or 0
    assert 1 <= batches <= run.accepted
    assert p.value("sum(triage_classify_batch_size_sum)") == run.accepted
    assert p.value("sum(triage_classify_inference_seconds_count)") == batches
    [info] = p.query("triage_classify_model_info")
    assert info["metric"]["version"], "the model version label is set"
    assert p.value("sum(triage_classify_latency_seconds_count)") == run.accepted


def test_end_to_end_latency_histogram_and_slo_indicator(run: Run) -> None:
    p = run.prom
    # origin="created" only for the mentions that carry a created_at; "received" for all
    assert p.value('sum(triage_end_to_end_latency_seconds_count{origin="created"})') == WITH_CREATED_AT
    assert p.value('sum(triage_end_to_end_latency_seconds_count{origin="received"})') == run.accepted
    p99 = p.value('histogram_quantile(0.99, sum by (le) (rate(triage_end_to_end_latency_seconds_bucket'
                  '{origin="received"}[1m])))', at=run.routed_at)
    assert p99 is not None and 0 < p99 < math.inf
    # The SLO rules select le="30.0": this proves the exporter spells the bucket that way.
    sli = p.value('sum(rate(triage_end_to_end_latency_seconds_bucket{origin="received",le="30.0"}[1m])) / '
                  'sum(rate(triage_end_to_end_latency_seconds_count{origin="received"}[1m]))', at=run.routed_at)
    assert sli is not None and 0 <= sli <= 1


def test_failed_deliveries_are_retried_and_dead_lettered(run: Run) -> None:
    p = run.prom

    def audit_dead_lettered() -> bool:
        return p.value('sum(triage_router_dead_lettered_total{receiver="audit"})') == run.accepted

    # The audit deliveries of the last batch may still be in their retry when routing completed.
    _wait(audit_dead_lettered, 60, "every audit delivery dead-lettered", [])
    assert p.value('sum(triage_router_delivery_retries_total{receiver="audit"})') == run.accepted
    assert p.value('sum(triage_router_delivery_attempts_total{receiver="audit",outcome="ok"})') is None
    assert p.value('sum(triage_dead_letters_total{service="router"})') == run.accepted
    assert p.value(f'sum(triage_router_routed_total{{receiver=~"{"|".join(QUEUES)}"}})') == run.accepted


def test_alert_rules_evaluate_and_the_right_alerts_fire(run: Run) -> None:
    p = run.prom

    def firing() -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = {}
        for alert in p.api("alerts")["alerts"]:
            out.setdefault(alert["labels"]["alertname"], []).append({**alert["labels"], "state": alert["state"]})
        return out

    alerts = _wait(lambda: (a := firing()).get("TriageReceiverDeadLettering") and a, 60,
                   "TriageReceiverDeadLettering to fire", [])
    assert [a["receiver"] for a in alerts["TriageReceiverDeadLettering"]] == ["audit"]
    assert alerts["TriageReceiverDeadLettering"][0]["state"] == "firing"
    assert {(a["service"], a["stage"]) for a in alerts["TriageDeadLettersGrowing"]} == {("router", "router")}
    # Every attempt to `audit` fails: pending now, firing after its 10 minutes.
    assert [a["receiver"] for a in alerts["TriageReceiverFailing"]] == ["audit"]
    for quiet in ("TriageServiceDown", "TriageIngestKafkaUnavailable", "TriageModelErrors"):
        assert quiet not in alerts, (quiet, alerts[quiet])

    rules = [r for g in p.api("rules")["groups"] for r in g["rules"]]
    assert len(rules) == sum(len(g["rules"]) for g in yaml.safe_load(
        (REPO_ROOT / "deploy/prometheus/rules.yml").read_text())["groups"])
    broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not broken, broken


def test_every_dashboard_query_runs(run: Run) -> None:
    p = run.prom
    empty = []
    queries = 0
    for board_path in sorted((REPO_ROOT / "deploy" / "grafana").glob("*.json")):
        board = json.loads(board_path.read_text())
        panels = [q for panel in board["panels"] for q in [panel, *panel.get("panels", [])]]
        for panel in panels:
            for target in panel.get("targets", []):
                expr = (target["expr"].replace("$__rate_interval", "1m").replace("$namespace", ".*"))
                queries += 1
                result = p.query(expr, at=run.routed_at)  # asserts the query parses and runs
                if not result:
                    empty.append(f"{board_path.name}: {panel['title']}")
    assert queries > 40
    # Panels about what this run exercised must show data, e.g.:
    for title in ("Messages in per service and topic", "End-to-end latency (received → routed)",
                  "Scored mentions by priority", "Delivery attempts by receiver and outcome",
                  "Model: inference time per batch and batch size"):
        assert not [e for e in empty if e.endswith(": " + title)], f"{title} shows no data"


def test_workers_export_consumer_lag(run: Run) -> None:
    p = run.prom
    for service in ("classify", "router"):
        result = p.query(f'triage_consumer_lag_messages{{service="{service}"}}')
        assert result, f"{service} exports no lag"
        assert all(float(r["value"][1]) >= 0 for r in result)
