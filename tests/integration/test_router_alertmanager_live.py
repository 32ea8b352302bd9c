"""A real Alertmanager (Debian's prometheus-alertmanager, started here on 127.0.0.1) keeps an open incident
firing for as long as the router says so, and resolves it when the incident resolves.

Alertmanager's `resolve_timeout` is 5 s here and the router's heartbeat 1 s (endsAt 3 s ahead): the incident
stays open for twice the resolve_timeout, changes priority (P2 -> P1) on the way, and must be one alert,
firing, the whole time; an alert posted the old way (no endsAt) next to it resolves after resolve_timeout,
which shows that the timeout is in force. The worker runs in-process on the real broker with the real clock.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common import codec
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.devtools.ports import free_port
from services.router.app import RouterWorker
from services.router.config import RouterSettings
from services.router.routing_file import loads

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
RESOLVE_TIMEOUT = 5.0
INCIDENT = f"inc-live-{uuid.uuid4().hex[:6]}"

CONFIG = f"""\
global:
  resolve_timeout: {RESOLVE_TIMEOUT:.0f}s
route:
  receiver: blackhole
  group_wait: 1s
receivers:
  - name: blackhole
"""


@asynccontextmanager
async def alertmanager(tmp_path: Path) -> AsyncIterator[str]:
    if not Path(ALERTMANAGER).exists():
        pytest.fail(f"{ALERTMANAGER} is not installed (Debian package prometheus-alertmanager)", pytrace=False)
    (tmp_path / "alertmanager.yml").write_text(CONFIG)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "alertmanager.log"
    with log.open("w") as out:
        proc = await asyncio.create_subprocess_exec(
            ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", stdout=out,
            stderr=asyncio.subprocess.STDOUT)
    try:
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get(f"{base}/-/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.returncode is not None or time.monotonic() > deadline:
                    pytest.fail(f"alertmanager did not start: {log.read_text()[-2000:]}")
                await asyncio.sleep(0.2)
        yield base
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def mention(i: int, priority: int) -> bytes:
    sm = pb.ScoredMention(priority=priority, language="en", incident_id=INCIDENT, reasons=["outage report 0.94"],
                          intents={"outage_report": 0.94})
    sm.mention.mention_id = f"x:{uuid.uuid4().hex[:8]}{i}"
    sm.mention.text = f"@acme app down <!channel> ({i})"
    sm.mention.brands.append("acme")
    return codec.encode(sm)


async def firing(client: httpx.AsyncClient, base: str, alertname: str) -> list[dict[str, Any]]:
    resp = await client.get(f"{base}/api/v2/alerts", params={"filter": f'alertname="{alertname}"'})
    resp.raise_for_status()
    return [a for a in resp.json() if a["status"]["state"] in ("active", "unprocessed", "suppressed")]


async def test_an_open_incident_stays_firing_past_resolve_timeout_and_resolves_with_it(kafka_bootstrap, tmp_path):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    async with alertmanager(tmp_path) as base, httpx.AsyncClient() as client:
        tree = loads(f"""
route:
  receiver: queue
  group_wait: 0s
  group_interval: 1h
  repeat_interval: 4h
  routes:
    - matchers: ['priority=~"P1|P2"']
      receiver: am
receivers:
  - name: queue
    kafka_queue: {{queue: normal}}
  - name: am
    alertmanager: {{url: "{base}", heartbeat: 1s}}
""")
        worker = RouterWorker(RouterSettings(kafka_bootstrap=kafka_bootstrap,
                                             router_app_id=f"test-router-{uuid.uuid4().hex[:8]}"), tree)
        try:
            await worker.on_incident(codec.encode(pb.Incident(id=INCIDENT, brand="acme", kind=pb.OUTAGE_CLUSTER,
                                                              state=pb.OPEN)))
            # The old way: no endsAt, so Alertmanager ends it resolve_timeout after this post.
            (await client.post(f"{base}/api/v2/alerts", json=[{"labels": {"alertname": "Control"}}])).raise_for_status()
            await worker.process([mention(0, pb.P2)])
            started = time.monotonic()
            seen: list[dict[str, Any]] = []
            escalated = False
            while time.monotonic() - started < 2 * RESOLVE_TIMEOUT:
                if not escalated and time.monotonic() - started > RESOLVE_TIMEOUT / 2:
                    await worker.process([mention(1, pb.P1)])  # P2 -> P1 while open
                    escalated = True
                await worker.tick()
                if time.monotonic() - started > 1:  # (the trigger went out at the first tick)
                    alerts = await firing(client, base, "SocialMentionIncident")
                    assert len(alerts) == 1, alerts  # firing all along, and one alert across the priority change
                    seen.append(alerts[0])
                await asyncio.sleep(0.25)
            assert await firing(client, base, "Control") == []  # resolve_timeout is in force
            assert seen[0]["labels"] == seen[-1]["labels"] and seen[0]["labels"]["incident"] == INCIDENT
            assert seen[0]["annotations"]["priority"] == "P2" and seen[-1]["annotations"]["priority"] == "P1"
            assert seen[-1]["annotations"]["severity"] == "critical"

            await worker.on_incident(codec.encode(pb.Incident(id=INCIDENT, brand="acme", kind=pb.OUTAGE_CLUSTER,
                                                              state=pb.RESOLVED)))
            await worker.tick()
            assert await firing(client, base, "SocialMentionIncident") == []  # resolved at once, nothing orphaned
            for _ in range(8):  # and no heartbeat brings it back
                await worker.tick()
                await asyncio.sleep(0.25)
            assert await firing(client, base, "SocialMentionIncident") == []
        finally:
            await worker.stop()
