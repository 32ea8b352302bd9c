"""Kafka SASL (SCRAM-SHA-512, as Strimzi issues it) on a real broker, and secrets kept out of the services' logs.

The broker gets a second listener that knows one SCRAM user (`KafkaBroker(sasl_users=...)`): SASL_PLAINTEXT,
or SASL_SSL with a certificate signed by a test cluster CA (`sasl_tls_keystore`), which the clients trust through
TRIAGE_KAFKA_SSL_CAFILE.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics, make_producer
from services.common.settings import ServiceSettings
from services.common.timeutil import ts_from_epoch
from services.common.topics import TopicSpec, all_topic_specs
from services.ingest import signatures as sig
from tests.integration.test_worker_probes import ProbeWorker
from tests.support import ServiceProcess, free_port, running_app, wait_for

USER, PASSWORD = "triage-it", "Scram-Pa55word-0f-the-KafkaUser-8c1d"
SECRETS = {
    "sasl password": PASSWORD,
    "api token": "ingest-api-token-5a7e1b9c2d4f",
    "webhook secret": "generic-webhook-secret-93b1f0",
    "meta app secret": "meta-app-secret-7d2c4a9e1f",
    "meta verify token": "meta-verify-token-4e8b2a",
    "x consumer secret": "x-consumer-secret-c3f9a1d7",
    "pagerduty routing key": "R0UT1NGKEY5ECRET000000000000000",
    "slack token": "xoxb-1111-2222-s3cr3tslacktoken",
}


def scram_env(bootstrap: str, password: str = PASSWORD) -> dict[str, str]:
    return {"TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "TRIAGE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "TRIAGE_KAFKA_SASL_USERNAME": USER,
            "TRIAGE_KAFKA_SASL_PASSWORD": password}


def scram_settings(bootstrap: str, password: str = PASSWORD) -> ServiceSettings:
    return ServiceSettings(kafka_bootstrap=bootstrap, kafka_security_protocol="SASL_PLAINTEXT",
                           kafka_sasl_username=USER, kafka_sasl_password=password)


@pytest.fixture
def scram_broker(kafka_broker_factory: Any) -> Any:
    return kafka_broker_factory(sasl_users={USER: PASSWORD})


async def test_clients_reach_a_scram_listener_with_the_settings_and_only_with_the_password(scram_broker: Any) -> None:
    sasl = scram_broker.sasl_bootstrap_servers
    options = scram_settings(sasl).kafka_client_options()
    topic = f"scram-{uuid.uuid4().hex[:6]}"
    await ensure_topics(sasl, [TopicSpec(topic, 1)], client_options=options)
    producer = make_producer(sasl, "scram-test", **options)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over scram", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=sasl, auto_offset_reset="earliest", group_id=None,
                                enable_auto_commit=False, **options)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
        assert [r.value for records in batch.values() for r in records] == [b"over scram"]
    finally:
        await consumer.stop()

    # The listener really checks: a wrong password, or no SASL at all, does not get in.
    for bad in (scram_settings(sasl, "wrong-password").kafka_client_options(), {}):
        intruder = make_producer(sasl, "intruder", request_timeout_ms=5000, **bad)
        with pytest.raises(Exception):  # noqa: B017 - aiokafka raises an auth or a connection error
            await asyncio.wait_for(intruder.start(), 20)
        await intruder.stop()


def broker_pki(d: Path) -> dict[str, Path]:
    """A cluster CA and a broker certificate for 127.0.0.1 it signed (PKCS12 for the broker), like Strimzi's."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=triage-kafka cluster CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=broker")
    run("x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.ext", "-out", "broker.crt")
    run("pkcs12", "-export", "-in", "broker.crt", "-inkey", "broker.key", "-out", "broker.p12",
        "-passout", "pass:keystore-pass", "-name", "broker")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other-ca.crt", "-days", "2",
        "-subj", "/CN=some other CA")
    return {"ca": d / "ca.crt", "keystore": d / "broker.p12", "other_ca": d / "other-ca.crt"}


async def test_scram_over_tls_trusting_the_cluster_ca(kafka_broker_factory: Any, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the broker's certificate")
    pki = broker_pki(tmp_path)
    broker = kafka_broker_factory(sasl_users={USER: PASSWORD}, sasl_tls_keystore=(pki["keystore"], "keystore-pass"))
    tls = broker.sasl_bootstrap_servers
    settings = ServiceSettings(kafka_bootstrap=tls, kafka_security_protocol="SASL_SSL", kafka_sasl_username=USER,
                               kafka_sasl_password=PASSWORD, kafka_ssl_cafile=str(pki["ca"]))
    topic = f"tls-{uuid.uuid4().hex[:6]}"
    await ensure_topics(tls, [TopicSpec(topic, 1)], client_options=settings.kafka_client_options())
    producer = make_producer(tls, "tls-test", **settings.kafka_client_options())
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b"over tls")
        assert meta.offset == 0
    finally:
        await producer.stop()

    # A client that trusts another CA does not talk to this broker (the certificate is checked).
    wrong_ca = settings.model_copy(update={"kafka_ssl_cafile": str(pki["other_ca"])})
    intruder = make_producer(tls, "intruder", request_timeout_ms=5000, **wrong_ca.kafka_client_options())
    with pytest.raises(Exception):  # noqa: B017 - aiokafka reports the failed handshake as a connection error
        await asyncio.wait_for(intruder.start(), 20)
    await intruder.stop()


class FlakyReceivers:
    """PagerDuty and Slack: PagerDuty answers 500 twice (error paths get logged), then accepts."""

    def __init__(self) -> None:
        self.pagerduty: list[dict[str, Any]] = []
        self.pd_failures = 2

    async def enqueue(self, request: web.Request) -> web.Response:
        ev = await request.json()
        if self.pd_failures > 0:
            self.pd_failures -= 1
            return web.json_response({"status": "error", "routing_key_seen": ev.get("routing_key")}, status=500)
        if ev.get("routing_key") != SECRETS["pagerduty routing key"]:
            return web.json_response({"status": "invalid event"}, status=400)
        self.pagerduty.append(ev)
        return web.json_response({"status": "success", "dedup_key": ev.get("dedup_key")}, status=202)

    async def post_message(self, request: web.Request) -> web.Response:
        ok = request.headers.get("Authorization") == f"Bearer {SECRETS['slack token']}"
        return web.json_response({"ok": ok, "ts": f"{time.time():.6f}", "channel": "C1"} if ok
                                 else {"ok": False, "error": "invalid_auth"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self.enqueue)
        app.router.add_post("/api/chat.postMessage", self.post_message)
        return app


ROUTES = """\
route:
  receiver: normal
  routes:
    - matchers: ['priority="P1"']
      receiver: pagerduty
      group_wait: 1s
      continue: true
    - matchers: ['priority="P1"']
      receiver: slack
      group_wait: 1s
receivers:
  - name: pagerduty
    pagerduty: {url: "%(base)s/v2/enqueue", routing_key_env: IT_PD_KEY}
  - name: slack
    slack: {url: "%(base)s/api/chat.postMessage", token_env: IT_SLACK_TOKEN, channel: C0INCIDENTS}
  - name: normal
    kafka_queue: {queue: normal}
"""


def p1_mention(i: int, incident_id: str) -> pb.ScoredMention:
    sm = pb.ScoredMention(priority=pb.P1, language="en", incident_id=incident_id, reasons=["outage report 0.9"],
                          intents={"outage_report": 0.9})
    m = sm.mention
    m.source, m.external_id, m.mention_id = pb.SOURCE_X, str(70_000 + i), f"x:{70_000 + i}"
    m.text, m.url = f"@acme down ({i})", f"https://x.com/u{i}/status/{70_000 + i}"
    m.brands.append("acme")
    return sm


async def test_services_with_secrets_set_never_log_them(scram_broker: Any, tmp_path: Path) -> None:
    sasl, plain = scram_broker.sasl_bootstrap_servers, scram_broker.bootstrap_servers
    options = scram_settings(sasl).kafka_client_options()
    await ensure_topics(sasl, all_topic_specs(), client_options=options)
    debug = {"TRIAGE_LOG_LEVEL": "DEBUG"}
    ingest_port = free_port()
    ingest_env = {**scram_env(sasl), **debug, "TRIAGE_INGEST_PORT": str(ingest_port),
                  "TRIAGE_API_TOKENS": json.dumps([SECRETS["api token"]]),
                  "TRIAGE_WEBHOOK_SECRET": SECRETS["webhook secret"],
                  "TRIAGE_META_APP_SECRET": SECRETS["meta app secret"],
                  "TRIAGE_META_VERIFY_TOKEN": SECRETS["meta verify token"],
                  "TRIAGE_X_CONSUMER_SECRET": SECRETS["x consumer secret"]}
    # A Faust worker built like classify and router, on the SCRAM listener, reading what ingest writes.
    worker_env = {**scram_env(sasl), **debug, "PROBE_APP_ID": "it-scram-worker", "PROBE_TOPIC": topics.MENTIONS_RAW,
                  "TRIAGE_DATA_DIR": str(tmp_path / "worker-data")}
    receivers = FlakyReceivers()
    incident_id = "inc-secrets-1"
    async with running_app(receivers.app()) as base:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES % {"base": base})
        router_port = free_port()
        # The router on the SCRAM listener too.
        router_env = {**scram_env(sasl), **debug, "TRIAGE_ROUTES_FILE": str(routes),
                      "TRIAGE_ROUTER_APP_ID": "it-secrets-router", "TRIAGE_ROUTER_METRICS_PORT": str(router_port),
                      "TRIAGE_TICK_SECONDS": "0.5", "TRIAGE_DATA_DIR": str(tmp_path / "router-data"),
                      "TRIAGE_DELIVERY_BACKOFF_SECONDS": "0.2", "TRIAGE_PAGE_RETRY_BACKOFF_SECONDS": "0.2",
                      "IT_PD_KEY": SECRETS["pagerduty routing key"], "IT_SLACK_TOKEN": SECRETS["slack token"]}
        ingest = ServiceProcess("ingest", ingest_env, tmp_path)
        worker = ProbeWorker(worker_env, tmp_path / "worker.log")
        router = ServiceProcess("router", router_env, tmp_path)
        try:
            url = f"http://127.0.0.1:{ingest_port}"
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                async def ingest_ready() -> bool:
                    try:
                        return (await client.get("/readyz")).status_code == 200
                    except httpx.HTTPError:
                        return False
                await wait_for(ingest_ready, 90, "ingest ready on the SCRAM listener")
                good = {"Authorization": f"Bearer {SECRETS['api token']}"}
                mention = {"source": "reddit", "external_id": "t3_scram", "text": "acme over scram",
                           "author": {"handle": "u1"}, "brands": ["acme"]}
                r = await client.post("/v1/mentions", json=mention, headers=good)
                assert r.status_code == 202, r.text
                # Failures are what get logged: wrong token, a near-miss token, bad signatures, wrong verify token.
                for token in ("wrong", SECRETS["api token"][:-1]):
                    r = await client.post("/v1/mentions", json=mention, headers={"Authorization": f"Bearer {token}"})
                    assert r.status_code == 401
                body = json.dumps(mention).encode()
                ts = str(int(time.time()))
                bad_sig = sig.generic_signature(SECRETS["webhook secret"] + "x", ts, body)
                r = await client.post("/webhooks/generic", content=body, headers={
                    "X-Triage-Timestamp": ts, "X-Triage-Signature": bad_sig, "Content-Type": "application/json"})
                assert r.status_code == 401
                r = await client.get("/webhooks/meta", params={"hub.mode": "subscribe", "hub.challenge": "c",
                                                               "hub.verify_token": "not-it"})
                assert r.status_code in (401, 403)
                r = await client.post("/webhooks/x", content=b"{}",
                                      headers={"X-Twitter-Webhooks-Signature": "sha256=x"})
                assert r.status_code == 401

            # Faust over SCRAM: the worker joined its group and got the mention ingest wrote.
            await worker.wait_status("/readyz", 200, 120)
            await wait_for(lambda: "acme over scram" in worker.log_tail(100_000), 60, "the worker's record")

            # The router pages through PagerDuty (after two 500s) and Slack with their secrets.
            incident = pb.Incident(id=incident_id, brand="acme", kind=pb.OUTAGE_CLUSTER, state=pb.OPEN,
                                   mention_count=3, reasons=["outage cluster"])
            incident.opened_at.CopyFrom(ts_from_epoch(time.time()))
            producer = make_producer(plain, "it-secrets")
            await producer.start()
            try:
                await producer.send_and_wait(topics.INCIDENTS, codec.encode(incident), key=incident_id.encode())
                for i in range(3):
                    sm = p1_mention(i, incident_id)
                    await producer.send_and_wait(topics.MENTIONS_SCORED, codec.encode(sm),
                                                 key=sm.mention.mention_id.encode())
            finally:
                await producer.stop()
            await wait_for(lambda: receivers.pagerduty, 120, "a PagerDuty trigger accepted after the 500s")
            # The real router's probes: its loop turns and its consumer fetches.
            async with httpx.AsyncClient(timeout=5) as client:
                r = await client.get(f"http://127.0.0.1:{router_port}/readyz")
                assert r.status_code == 200 and "kafka consumer: ok" in r.text, r.text
        finally:
            ingest.stop()
            worker.stop()
            router.stop()

    logs = {"ingest": ingest.log.read_text(errors="replace"), "worker": worker.log.read_text(errors="replace"),
            "router": router.log.read_text(errors="replace")}
    # The logs are real and verbose (DEBUG), and cover the paths that handle the secrets.
    assert "ingest_kafka_connected" in logs["ingest"], logs["ingest"][-2000:]
    assert "401" in logs["ingest"] or "unauthorized" in logs["ingest"].lower() or "invalid" in logs["ingest"]
    assert "acme over scram" in logs["worker"]
    assert receivers.pd_failures == 0  # the router did get (and log) two failed deliveries
    for service, text in logs.items():
        for what, secret in SECRETS.items():
            # Neither the secret nor a long piece of it (a truncated or partly masked copy).
            for piece in (secret, secret[:12], secret[-12:]):
                assert piece not in text, f"{service}'s log shows the {what} ({piece!r})"
