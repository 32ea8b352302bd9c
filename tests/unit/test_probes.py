"""Worker /healthz and /readyz tell the truth: a wedged event loop or a consumer that stopped fetching is a 503,
while /metrics (its own thread) keeps answering."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from services.common.metrics import serve_metrics
from services.common.probes import WorkerProbes, watch_faust_consumer
from tests.support import free_port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_status(url: str, status: int, within: float) -> str:
    deadline = time.monotonic() + within
    seen: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        seen = get(url)
        if seen[0] == status:
            return seen[1]
        time.sleep(0.05)
    raise AssertionError(f"{url} answered {seen} for {within}s, never {status}")


class WorkerLoop:
    """An event loop on its own thread, as a worker's: tests can block it with a synchronous call."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def wedge(self, seconds: float) -> None:
        """Block the loop the way a synchronous call in an agent does (inference, a blocking client)."""
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            self.loop.call_soon_threadsafe(task.cancel)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def worker_loop() -> Iterator[WorkerLoop]:
    loop = WorkerLoop()
    yield loop
    loop.close()


@pytest.fixture
def served() -> Iterator[tuple[WorkerProbes, str]]:
    probes = WorkerProbes(loop_stale_seconds=0.5, fetch_stale_seconds=0.8)
    port = free_port()
    server = serve_metrics(port, "127.0.0.1", probes.routes())
    yield probes, f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


class FakeFaustConsumer:
    """Stands in for Faust's Consumer: `getmany` is an async generator of (tp, message), one round per call."""

    def __init__(self) -> None:
        self.offset = 0

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[str, int]]:
        await asyncio.sleep(0.02)  # the broker's answer
        for _ in range(3):
            self.offset += 1
            yield "mentions.raw-0", self.offset


async def drain(consumer: Any, buffer: asyncio.Queue[int]) -> None:
    """Faust's fetch loop in miniature: fetch a round, hand each record to the stream's bounded buffer."""
    while True:
        async for _tp, offset in consumer.getmany(timeout=1.0):
            await buffer.put(offset)


def test_a_wedged_loop_fails_both_probes_while_metrics_answers(worker_loop: WorkerLoop,
                                                                served: tuple[WorkerProbes, str]) -> None:
    probes, base = served
    assert get(base + "/healthz") == (503, "event loop: not started yet\n")
    worker_loop.run(probes.heartbeat.run(interval=0.05))
    consumer = FakeFaustConsumer()
    watch_faust_consumer(consumer, probes.fetch)
    buffer: asyncio.Queue[int] = asyncio.Queue()  # unbounded: the agent keeps up
    worker_loop.run(drain(consumer, buffer))
    body = wait_status(base + "/readyz", 200, 3)
    assert "event loop: ok" in body and "kafka consumer: ok" in body

    worker_loop.wedge(2.0)
    body = wait_status(base + "/healthz", 503, 1.5)
    assert body.startswith("event loop: stalled, last ") and "(limit 0.5s)" in body
    assert get(base + "/readyz")[0] == 503
    status, metrics = get(base + "/metrics")
    assert status == 200 and "triage_messages_in_total" in metrics  # the metrics thread never noticed

    # The loop comes back: so do the probes, without a restart.
    wait_status(base + "/healthz", 200, 3)
    wait_status(base + "/readyz", 200, 3)


def test_a_consumer_that_stopped_fetching_fails_readiness_not_liveness(worker_loop: WorkerLoop,
                                                                        served: tuple[WorkerProbes, str]) -> None:
    probes, base = served
    worker_loop.run(probes.heartbeat.run(interval=0.05))
    wait_status(base + "/healthz", 200, 2)
    status, body = get(base + "/readyz")
    assert status == 503 and body.endswith("kafka consumer: has not fetched yet\n")
    consumer = FakeFaustConsumer()
    watch_faust_consumer(consumer, probes.fetch)
    # A stuck agent: its buffer fills and the fetch loop blocks handing it the next record.
    buffer: asyncio.Queue[int] = asyncio.Queue(maxsize=10)
    worker_loop.run(drain(consumer, buffer))
    wait_status(base + "/readyz", 200, 2)
    body = wait_status(base + "/readyz", 503, 3)
    assert "event loop: ok" in body and "kafka consumer: stalled" in body
    assert get(base + "/healthz")[0] == 200  # Kafka-side trouble must not get the pod restarted
    assert consumer.offset == 11  # 10 buffered, the 11th waits

    # The agent catches up: fetching resumes and the pod is ready again.
    worker_loop.run(_empty(buffer))
    wait_status(base + "/readyz", 200, 2)


async def _empty(buffer: asyncio.Queue[int]) -> None:
    while True:
        await buffer.get()


def test_probe_answers_from_the_timestamps() -> None:
    now = [100.0]
    probes = WorkerProbes(loop_stale_seconds=10, fetch_stale_seconds=60, clock=lambda: now[0])
    assert (probes.healthz().status, probes.readyz().status) == (503, 503)
    probes.heartbeat.beat()
    assert probes.healthz().status == 200
    assert probes.readyz().lines == ("event loop: ok, last 0.0s ago", "kafka consumer: has not fetched yet")
    probes.fetch.fetched()
    now[0] += 10
    assert probes.readyz().ok and probes.healthz().body == "event loop: ok, last 10.0s ago\n"
    now[0] += 0.5
    assert not probes.healthz().ok and probes.readyz().status == 503
    probes.heartbeat.beat()
    now[0] += 50
    assert probes.readyz().lines[1] == "kafka consumer: stalled, last 60.5s ago (limit 60s)"


def test_a_workers_own_gate_holds_readiness_but_never_liveness() -> None:
    consuming = [False]
    probes = WorkerProbes(loop_stale_seconds=10, fetch_stale_seconds=60,
                          gates=lambda: [(consuming[0], "agent: consuming" if consuming[0] else "agent: restoring")])
    probes.heartbeat.beat()
    probes.fetch.fetched()
    assert probes.healthz().ok and not probes.readyz().ok  # waiting is not broken: no restart for it
    assert probes.readyz().lines[-1] == "agent: restoring"
    consuming[0] = True
    assert probes.readyz().ok and probes.readyz().lines[-1] == "agent: consuming"


def test_the_classify_workers_gate_opens_once_its_agent_consumes() -> None:
    from services.classify.app import ClassifyWorker

    worker = ClassifyWorker.__new__(ClassifyWorker)  # the gate reads one flag: no model, no Kafka
    worker.consuming = False
    assert worker.ready_gate() == (False, "classify agent: restoring the deletions it remembers, not consuming yet")
    worker.consuming = True
    assert worker.ready_gate() == (True, "classify agent: consuming")


def test_without_probes_every_path_is_metrics() -> None:
    port = free_port()
    server = serve_metrics(port, "127.0.0.1")
    try:
        status, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "triage_messages_in_total" in body
    finally:
        server.shutdown()
        server.server_close()
