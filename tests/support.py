"""Helpers for tests that run pipeline pieces against the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer

from services.devtools.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


async def consume(bootstrap: str, topics: list[str] | None = None, pattern: str | None = None,
                  until: int | None = None, idle: float = 3.0, timeout: float = 60.0) -> list[tuple[str, bytes, bytes]]:
    """Read (topic, key, value) from the beginning until `until` records arrived (or `idle` s of silence
    after at least that many, or `timeout`)."""
    consumer = AIOKafkaConsumer(*(topics or []), bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, metadata_max_age_ms=1000)
    await consumer.start()
    if pattern:
        consumer.subscribe(pattern=pattern)
    out: list[tuple[str, bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for tp, records in batch.items():
                for r in records:
                    out.append((tp.topic, r.key, r.value))
                    last = time.monotonic()
            if until is not None and len(out) >= until and time.monotonic() - last > idle:
                break
            if until is None and out and time.monotonic() - last > idle:
                break
    finally:
        await consumer.stop()
    return out


@contextlib.asynccontextmanager
async def running_app(app: web.Application, port: int | None = None) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = port or free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class ServiceProcess:
    """A service started as `python -m services.cli NAME` with TRIAGE_* env, logging to a file."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path):
        self.name = name
        self.log = log_dir / f"{name}.log"
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self._fh = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.cli", name], cwd=REPO_ROOT, env=full_env,
                                     stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._fh.close()

    async def dump_stacks(self, settle: float = 2.0) -> str:
        """Where a live worker is stuck: Faust's workers (mode) print every thread's stack and every asyncio
        task on SIGUSR1, into the log (long: it is left there). Returns a line saying where, for a failure."""
        if self.proc.poll() is not None:
            return f"{self.name} exited with {self.proc.returncode}"
        start = self.log.stat().st_size
        self.proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(settle)
        return f"{self.name}'s threads and tasks: {self.log} from byte {start}"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._fh.close()


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.5,  # type: ignore[no-untyped-def]
                   on_timeout=None):
    """Until `predicate()` (sync or async) returns something truthy, which is returned. On timeout the
    AssertionError says what was awaited, with what `on_timeout()` (async, returning text) found, if given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(interval)
    found = f"\n{await on_timeout()}" if on_timeout is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{found}")


async def wait_ready(process: ServiceProcess, url: str, timeout: float = 300) -> None:
    """Until a service process answers 200 on ``url`` (its /readyz). A stream sent before a worker is ready
    (still loading its model on a loaded machine) reaches it as one backlog, not as the stream it was."""
    import httpx

    async def ready() -> bool:
        assert process.alive(), process.log_tail()
        async with httpx.AsyncClient(timeout=5) as probe:
            try:
                return (await probe.get(url)).status_code == 200
            except httpx.HTTPError:
                return False

    await wait_for(ready, timeout=timeout, what=f"{process.name} to be ready", interval=1)


PD_KEY = "R0UTINGKEY0000000000000000000000"
SLACK_TOKEN = "xoxb-test-token"


class FakeApis:
    """PagerDuty Events v2 (/v2/enqueue) and Slack Web API (chat.postMessage), recording accepted requests."""

    def __init__(self) -> None:
        self.pagerduty: list[dict] = []
        self.slack: list[dict] = []
        self.slack_ts: set[str] = set()

    async def enqueue(self, request: web.Request) -> web.Response:
        ev = await request.json()
        errors = []
        if ev.get("routing_key") != PD_KEY:
            errors.append("routing_key is invalid")
        if ev.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            errors.append("event_action is invalid")
        if not ev.get("dedup_key"):
            errors.append("dedup_key is missing")
        if ev.get("event_action") == "trigger":
            p = ev.get("payload") or {}
            if not (p.get("summary") and p.get("source")) or p.get("severity") not in ("critical", "error",
                                                                                       "warning", "info"):
                errors.append("payload is invalid")
        if errors:
            return web.json_response({"status": "invalid event", "message": "Event object is invalid",
                                      "errors": errors}, status=400)
        self.pagerduty.append(ev)
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": ev["dedup_key"]},
                                 status=202)

    async def post_message(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        msg = await request.json()
        if not msg.get("channel"):
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if "thread_ts" in msg and msg["thread_ts"] not in self.slack_ts:
            return web.json_response({"ok": False, "error": "thread_not_found"})
        ts = f"{time.time():.6f}"
        self.slack_ts.add(ts)
        self.slack.append({**msg, "ts": ts})
        return web.json_response({"ok": True, "channel": msg["channel"], "ts": ts, "message": {"text": msg["text"]}})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self.enqueue)
        app.router.add_post("/api/chat.postMessage", self.post_message)
        return app

    def pd(self, notification: str) -> list[dict]:
        return [e for e in self.pagerduty if e["event_action"] == "trigger"
                and e["payload"]["custom_details"]["notification"] == notification]


def break_producer_sender(producer: Any) -> None:
    """Fault injection: the producer's next produce request raises inside aiokafka's sender routine, which then ends
    with "Unexpected error during batch delivery" (aiokafka issues 907 and 1004): aiokafka fails the batches it holds
    and every later send, on a real broker."""
    async def fails(node_id: Any, batches: Any) -> None:
        raise RuntimeError("injected fault in the produce request")

    producer._sender._send_produce_req = fails
