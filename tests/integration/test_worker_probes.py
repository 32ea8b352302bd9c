"""A real Faust worker (subprocess) on the real broker: /healthz and /readyz follow its event loop and consumer."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.common.kafka import ensure_topics, make_producer
from services.common.topics import TopicSpec
from tests.support import REPO_ROOT, free_port, wait_for

PROBE_WORKER = Path(__file__).resolve().parent / "probe_worker.py"


class ProbeWorker:
    def __init__(self, env: dict[str, str], log: Path):
        self.port = free_port()
        self.log = log
        self._fh = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(PROBE_WORKER)], cwd=REPO_ROOT, stdout=self._fh, stderr=subprocess.STDOUT,
            env={**os.environ, **env, "PROBE_METRICS_PORT": str(self.port), "PYTHONUNBUFFERED": "1"},
            start_new_session=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def status(self, path: str) -> tuple[int, str]:
        try:
            async with httpx.AsyncClient(timeout=3) as client:
                resp = await client.get(self.url(path))
            return resp.status_code, resp.text
        except httpx.HTTPError as exc:
            return 0, type(exc).__name__

    async def wait_status(self, path: str, status: int, timeout: float) -> str:
        async def reached() -> str | None:
            code, body = await self.status(path)
            return body if code == status else None
        try:
            return await wait_for(reached, timeout, f"{path} {status}", interval=0.25)  # type: ignore[no-any-return]
        except AssertionError as err:
            raise AssertionError(f"{err}; last {await self.status(path)}; log:\n{self.log_tail()}") from None

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._fh.close()


@pytest.fixture
def probe_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    yield {"PROBE_APP_ID": name, "PROBE_TOPIC": f"{name}.in", "TRIAGE_DATA_DIR": str(tmp_path / "data"),
           "TRIAGE_PROBE_LOOP_STALE_SECONDS": "2", "TRIAGE_PROBE_FETCH_STALE_SECONDS": "5"}


async def test_probes_follow_the_workers_loop_and_consumer(kafka_bootstrap: str, probe_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    topic = probe_env["PROBE_TOPIC"]
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1)])
    producer = make_producer(kafka_bootstrap, "probe-test")
    await producer.start()
    worker = ProbeWorker({**probe_env, "TRIAGE_KAFKA_BOOTSTRAP": kafka_bootstrap}, tmp_path / "worker.log")
    try:
        await worker.wait_status("/readyz", 200, 120)
        body = (await worker.status("/readyz"))[1]
        assert "event loop: ok" in body and "kafka consumer: ok" in body

        # A synchronous call blocks the loop: both probes fail, /metrics still answers.
        await producer.send_and_wait(topic, b"wedge:8")
        body = await worker.wait_status("/healthz", 503, 8)
        assert body.startswith("event loop: stalled")
        assert (await worker.status("/readyz"))[0] == 503
        assert (await worker.status("/metrics"))[0] == 200
        await worker.wait_status("/healthz", 200, 15)
        await worker.wait_status("/readyz", 200, 15)

        # An agent stuck on one record: its buffer fills, the consumer stops fetching, readiness fails.
        await producer.send_and_wait(topic, b"stall:40")
        for i in range(30):
            await producer.send(topic, f"filler-{i}".encode())
        await producer.flush()
        body = await worker.wait_status("/readyz", 503, 25)
        assert "kafka consumer: stalled" in body and "event loop: ok" in body, body
        assert (await worker.status("/healthz"))[0] == 200
    finally:
        await producer.stop()
        worker.stop()


async def test_a_worker_whose_faust_producer_broke_fails_liveness(kafka_bootstrap: str, probe_env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    """Faust's own producer writes the tables' changelogs (the crisis state) and is never rebuilt: once its sender
    task ended, only a restart gives the worker a working one, so liveness fails (readiness too)."""
    topic = probe_env["PROBE_TOPIC"]
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1), TopicSpec(f"{topic}.out", 1)])
    producer = make_producer(kafka_bootstrap, "probe-test")
    await producer.start()
    worker = ProbeWorker({**probe_env, "TRIAGE_KAFKA_BOOTSTRAP": kafka_bootstrap}, tmp_path / "worker.log")
    try:
        await worker.wait_status("/healthz", 200, 120)
        await producer.send_and_wait(topic, b"break-faust-producer")
        body = await worker.wait_status("/healthz", 503, 30)
        assert "event loop: ok" in body, body
        assert "kafka producer: broken, its sender task ended" in body, body
        assert (await worker.status("/readyz"))[0] == 503
        assert "send failed" in worker.log_tail()
    finally:
        await producer.stop()
        worker.stop()
