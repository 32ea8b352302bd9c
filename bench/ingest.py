"""`make bench`: ingest throughput, mentions/s accepted and acknowledged by Kafka, on this machine.

Starts a private single-node Kafka broker (or uses --bootstrap) and `triage ingest`
as its own process (as deployed: the load generator does not share its event
loop), then posts unique mentions to POST /v1/mentions with several batch sizes
and concurrencies. A mention counts only when ingest answered 202, which it does
only after Kafka acknowledged it (idempotent producer, acks=all); the end offsets
of mentions.raw are checked against that count. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def _percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def _mention(run: str, i: int) -> str:
    return json.dumps({
        "source": "x", "external_id": f"bench-{run}-{i}",
        "text": f"@AcmeBank the app is down again, cannot log in ({i}) #AcmeDown",
        "created_at": time.time() - 5, "lang": "en",
        "author": {"handle": f"user{i % 5000}", "followers": i % 100_000},
        "engagement": {"likes": i % 50, "reposts": i % 7},
    })


async def _end_offsets(bootstrap: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition("mentions.raw", p) for p in range(6)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


# The API is closed without a token (fail closed): the bench's ingest gets one of its own, sent on every POST.
BENCH_TOKEN = f"bench-{secrets.token_hex(16)}"


async def _scenario(url: str, run: str, batch: int, concurrency: int, total: int) -> dict[str, float]:
    lines = [_mention(run, i) for i in range(total)]
    bodies = ["\n".join(lines[i:i + batch]) for i in range(0, total, batch)]
    latencies: list[float] = []
    accepted = 0
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not queue.empty():
            body = queue.get_nowait()
            t0 = time.perf_counter()
            r = await client.post("/v1/mentions", content=body, headers={"Content-Type": "application/x-ndjson",
                                                                          "Authorization": f"Bearer {BENCH_TOKEN}"})
            latencies.append(time.perf_counter() - t0)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 202:
                accepted += len(r.json()["accepted"])

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if accepted == 0 and statuses:   # a bench that measured nothing must not print a row of zeros quietly
        raise SystemExit(f"bench: ingest accepted nothing: HTTP statuses {statuses}")
    return {"accepted": accepted, "seconds": elapsed, "rate": accepted / elapsed,
            "p50_ms": _percentile(latencies, 50) * 1000, "p99_ms": _percentile(latencies, 99) * 1000,
            "non_202": sum(n for code, n in statuses.items() if code != 202)}


async def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit("bench: ingest exited during start-up")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise SystemExit("bench: ingest did not become ready")


def _run(bootstrap: str, args: argparse.Namespace) -> None:
    from services.common.kafka import ensure_topics
    from services.common.topics import all_topic_specs
    from services.devtools.ports import free_port

    asyncio.run(ensure_topics(bootstrap, all_topic_specs()))
    port = free_port()
    env = {**os.environ, "TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_INGEST_PORT": str(port),
           "TRIAGE_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1", "TRIAGE_API_TOKENS": json.dumps([BENCH_TOKEN])}
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "ingest"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        asyncio.run(_measure(bootstrap, f"http://127.0.0.1:{port}", proc, args))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _measure(bootstrap: str, url: str, proc: subprocess.Popen[bytes], args: argparse.Namespace) -> None:
    await _wait_ready(url, proc)
    run = str(int(time.time()))
    print(f"ingest throughput (POST /v1/mentions -> 202 after Kafka acks), {os.cpu_count()} CPUs, "
          f"broker {bootstrap}")
    print(f"{'batch':>6} {'conc':>5} {'mentions':>9} {'seconds':>8} {'mentions/s':>11} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'non-202':>8}")
    before = await _end_offsets(bootstrap)
    acked = 0
    for spec in args.scenarios.split(","):
        batch, conc = (int(x) for x in spec.split("x"))
        total = min(args.mentions, max(batch * conc * 20, 2000)) if batch == 1 else args.mentions
        r = await _scenario(url, f"{run}-{batch}x{conc}", batch, conc, total)
        acked += int(r["accepted"])
        print(f"{batch:>6} {conc:>5} {int(r['accepted']):>9} {r['seconds']:>8.2f} {r['rate']:>11.0f} "
              f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {int(r['non_202']):>8}")
    on_topic = await _end_offsets(bootstrap) - before
    print(f"acknowledged by ingest: {acked}; new records on mentions.raw: {on_topic}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ingest", description=__doc__)
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of a private one")
    parser.add_argument("--mentions", type=int, default=int(os.environ.get("BENCH_INGEST_MENTIONS", "20000")))
    parser.add_argument("--scenarios", default="1x16,50x4,500x2", help="BATCHxCONCURRENCY, comma-separated")
    args = parser.parse_args(argv)
    if args.bootstrap:
        _run(args.bootstrap, args)
        return 0
    from services.devtools.kafka_broker import KafkaBroker, ensure_jars

    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        broker = KafkaBroker(Path(tmp), libs_dir=ensure_jars())
        broker.start(timeout=90)
        try:
            _run(broker.bootstrap_servers, args)
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
