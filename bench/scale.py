"""`make bench-scale`: classify throughput with 1, 2 and 4 replicas over the same 6-partition `mentions.raw`.

Starts a private Kafka broker, then for each replica count, side by side in one run and one after another:

1. a fresh consumer group (app id `bench-scale-<n>r-<uuid>`), its offsets committed at the end of
   `mentions.raw` before any replica starts, so every run reads only its own mentions;
2. `n` classify workers, each its own `python -m services.cli classify` process (`services.devtools.localrun
   .spawn_service`) with `TRIAGE_TORCH_THREADS=1`, the same pinned precision and `POD_NAME` (static
   membership), crisis detection OFF (`TRIAGE_CRISIS_ENABLED=false`): only scoring is measured, the
   expensive part that spreads over every partition; the crisis stage (`triage.classify.crisis-input`,
   keyed by brand) is not in the figure;
3. once the group is stable with `n` members holding all 6 partitions: a warm-up (every replica has run the
   model), then the backlog: the same `--mentions` real UMSAB tweets (8 languages) every run, all about ONE
   brand (a hot brand), keyed by mention id as ingest keys them, so they spread over the 6 partitions;
4. mentions/s from the first backlog record sent to the last one's `mentions.scored` record (its Kafka
   timestamp), every mention read back from `mentions.scored` (scored once? duplicates?), the group's lag
   sampled every `--sample` s (printed per run as a small lag-over-time table), and which partitions each
   replica held (from the group's member assignments).

The backlog is produced after the replicas joined rather than before: with a backlog waiting, the first
replica to finish loading the model would drain it while the others are still starting (on 2 cores that
takes tens of seconds), and the figure would measure start-up, not scaling. Producing it takes well under
a second; scoring it, tens of seconds.

Prints figures; asserts nothing (benchmarks are not tests; tests/integration/test_bench_scale.py checks
that every mention is scored once). Every process it starts is stopped in `finally`, every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.partitioner import DefaultPartitioner

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics, make_producer
from services.common.lag import ConsumerLagMonitor
from services.common.timeutil import now_ts
from services.common.topics import all_topic_specs
from services.devtools import localrun
from services.devtools.kafka_broker import KafkaBroker, ensure_jars
from services.devtools.ports import free_port

HOT_BRAND = "fjordtel"
BACKLOG_PREFIX = "x:scale-hot-"
WARMUP_PREFIX = "x:scale-warm-"
CRISIS_NOTE = ("crisis detection OFF in every replica (TRIAGE_CRISIS_ENABLED=false): only scoring "
               "(mentions.raw -> model -> mentions.scored) is measured, not the crisis stage keyed by brand")


@dataclass
class Replica:
    """One classify worker process."""

    pod: str
    run_dir: Path
    proc: subprocess.Popen[bytes]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 3000) -> str:
        path = self.run_dir / "classify.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def signal(self, sig: signal.Signals) -> None:
        # Its own process group (spawn_service): the worker and anything it started.
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)


def stop_all(replicas: list[Replica], timeout: float = 15.0) -> None:
    """SIGTERM every replica at once, SIGKILL what is left after ``timeout`` s."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for r in replicas:
            r.signal(sig)
        deadline = time.monotonic() + wait
        for r in replicas:
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.proc.wait(max(0.1, deadline - time.monotonic()))
        if all(not r.alive() for r in replicas):
            return


_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class CpuSnapshot:
    """CPU time of the replicas' processes (all their threads) and of the whole machine, at one moment."""

    at: float
    replicas: float
    machine: float

    @classmethod
    def take(cls, replicas: list[Replica]) -> CpuSnapshot:
        used = 0.0
        for r in replicas:
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{r.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                used += (int(fields[11]) + int(fields[12])) / _TICK   # utime + stime
        machine = 0.0
        with contextlib.suppress(OSError, IndexError, ValueError):
            cpu = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
            machine = (sum(cpu[:8]) - cpu[3] - cpu[4]) / _TICK   # all but idle and iowait
        return cls(time.monotonic(), used, machine)

    def cores_since(self, before: CpuSnapshot) -> tuple[float, float]:
        wall = max(1e-6, self.at - before.at)
        return (self.replicas - before.replicas) / wall, (self.machine - before.machine) / wall


@dataclass
class RunResult:
    replicas: int
    mentions: int
    app_id: str
    seconds: float = float("nan")
    produce_seconds: float = float("nan")
    partitions: dict[str, list[int]] = field(default_factory=dict)  # pod -> partitions of mentions.raw
    rebalanced: bool = False  # the assignment changed while the backlog was being scored
    scored: Counter[str] = field(default_factory=Counter)  # backlog mention id -> times on mentions.scored
    lag: list[tuple[float, dict[int, int]]] = field(default_factory=list)  # (s since t0, partition -> lag)
    startup_seconds: float = float("nan")
    replica_cores: float = float("nan")  # CPU seconds of all replicas / wall seconds, while scoring the backlog
    machine_cores: float = float("nan")  # the same for the whole machine (every process, others' too)
    error: str = ""

    @property
    def rate(self) -> float:
        return self.mentions / self.seconds if self.seconds > 0 else float("nan")

    @property
    def missing(self) -> int:
        return self.mentions - len(self.scored)

    @property
    def duplicates(self) -> int:
        return sum(c - 1 for c in self.scored.values())


def backlog_mentions(texts: list[str], n: int, prefix: str = BACKLOG_PREFIX) -> list[pb.Mention]:
    """``n`` mentions of the hot brand, the same ids and texts in every run."""
    out = []
    for i in range(n):
        m = pb.Mention(source=pb.SOURCE_X, external_id=f"{prefix[2:]}{i}", mention_id=f"{prefix}{i}",
                       text=texts[i % len(texts)])
        m.brands.append(HOT_BRAND)
        out.append(m)
    return out


async def _produce(bootstrap: str, mentions: list[pb.Mention]) -> float:
    """Send every mention keyed by its id (the default partitioner, as ingest does); seconds until all acked."""
    producer = make_producer(bootstrap, "bench-scale")
    await producer.start()
    try:
        started = time.monotonic()
        futures = []
        for m in mentions:
            m.received_at.CopyFrom(now_ts())
            futures.append(await producer.send(topics.MENTIONS_RAW, codec.encode(m), key=m.mention_id.encode()))
        await asyncio.gather(*futures)
        return time.monotonic() - started
    finally:
        await producer.stop()


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-scale-admin")
    await admin.start()
    try:
        for _ in range(50):
            # All-topics metadata: naming the topic would auto-create it on a broker that allows that.
            parts = [TopicPartition(topic, p["partition"]) for t in await admin.describe_topics()
                     if t["topic"] == topic and not t["error_code"] for p in t["partitions"]]
            if parts:
                return sorted(parts)
            await asyncio.sleep(0.2)
        raise RuntimeError(f"topic {topic} has no partitions")
    finally:
        await admin.close()


async def _end_offsets(bootstrap: str, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


async def gate_group(bootstrap: str, group: str, parts: list[TopicPartition]) -> None:
    """Commit ``group``'s offsets at the current end of ``parts`` (the group is still empty, so a consumer
    with a manual assignment may commit for it): its replicas then read only what is produced from now on."""
    ends = await _end_offsets(bootstrap, parts)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()


async def group_assignment(admin: AIOKafkaAdminClient, group: str, topic: str) -> tuple[str, dict[str, list[int]]]:
    """(group state, member -> partitions of ``topic``). A static member's id starts with its
    `group.instance.id` (POD_NAME), so the member is named by that prefix when it has one."""
    [response] = await admin.describe_consumer_groups([group])
    [described] = response.groups
    state = described[2]
    members: dict[str, list[int]] = {}
    for member in described[5]:
        member_id, member_assignment = member[0], member[4]
        name = member_id.split("-", 2)
        pod = "-".join(name[:2]) if len(name) == 3 and name[0] == "classify" else member_id
        parts: list[int] = []
        if member_assignment:
            decoded = ConsumerProtocolMemberAssignment.decode(member_assignment)
            for t, ps in decoded.assignment:
                if t == topic:
                    parts.extend(ps)
        members[pod] = sorted(parts)
    return state, members


class ScoredReader:
    """Reads `mentions.scored` from given offsets: how often each mention id came out, and when the last
    record of ``prefix`` was produced (its Kafka timestamp, stamped by the classify worker's producer)."""

    def __init__(self, bootstrap: str, start: dict[TopicPartition, int], prefix: str):
        self.bootstrap = bootstrap
        self.start = start
        self.prefix = prefix
        self.counts: Counter[str] = Counter()
        self.last_ts = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(list(self.start))
            for tp, offset in self.start.items():
                consumer.seek(tp, offset)
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                for records in batch.values():
                    for rec in records:
                        mid = codec.decode(rec.value, pb.ScoredMention).mention.mention_id
                        if mid.startswith(self.prefix):
                            self.counts[mid] += 1
                            self.last_ts = max(self.last_ts, rec.timestamp / 1000)
        finally:
            await consumer.stop()

    def start_reading(self) -> None:
        self._task = asyncio.create_task(self._run())

    def seen(self, ids: set[str]) -> int:
        return sum(1 for i in ids if i in self.counts)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)


async def _until(what: str, check, timeout: float, replicas: list[Replica], interval: float = 0.5):  # type: ignore[no-untyped-def]
    """Await ``check()`` until truthy; fails after ``timeout`` s or as soon as a replica died."""
    deadline = time.monotonic() + timeout
    while True:
        for r in replicas:
            if not r.alive():
                raise RuntimeError(f"{r.pod} exited (rc {r.proc.returncode}) while waiting for {what}; "
                                   f"log tail:\n{r.log_tail()}")
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout:.0f} s")
        await asyncio.sleep(interval)


def replica_env(bootstrap: str, run_dir: Path, app_id: str, pod: str, precision: str,
                max_batch: int | None) -> dict[str, str]:
    ports = localrun.Ports(classify_metrics=free_port())  # the other services' ports are not used here
    extra = {
        "TRIAGE_CLASSIFY_APP_ID": app_id,
        "TRIAGE_TORCH_THREADS": "1",
        "TRIAGE_CRISIS_ENABLED": "false",
        "TRIAGE_PRECISION": precision,
        "POD_NAME": pod,
        # The tokenizer's own thread pool would take a core of its own beside torch's one thread.
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    if max_batch:
        extra["TRIAGE_CLASSIFY_MAX_BATCH"] = str(max_batch)
    return localrun.service_env(bootstrap, ports, run_dir, extra)


async def run_replicas(bootstrap: str, n: int, backlog: list[pb.Mention], warmup: list[pb.Mention], run_dir: Path,
                       *, precision: str, max_batch: int | None = None, startup_timeout: float = 300.0,
                       drain_timeout: float = 600.0, sample: float = 1.0,
                       log=print) -> RunResult:  # type: ignore[no-untyped-def]
    """One run: ``n`` classify replicas under a fresh group score ``backlog`` (after ``warmup``)."""
    app_id = f"bench-scale-{n}r-{uuid.uuid4().hex[:8]}"
    result = RunResult(replicas=n, mentions=len(backlog), app_id=app_id)
    raw_parts = await _partitions(bootstrap, topics.MENTIONS_RAW)
    scored_parts = await _partitions(bootstrap, topics.MENTIONS_SCORED)
    await gate_group(bootstrap, app_id, raw_parts)
    scored_start = await _end_offsets(bootstrap, scored_parts)
    warm_reader = ScoredReader(bootstrap, scored_start, WARMUP_PREFIX)
    reader = ScoredReader(bootstrap, scored_start, BACKLOG_PREFIX)
    backlog_ids = {m.mention_id for m in backlog}
    warm_ids = {m.mention_id for m in warmup}
    monitor = ConsumerLagMonitor("bench-scale", app_id, [topics.MENTIONS_RAW], bootstrap=bootstrap, timeout=10)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-scale-admin")
    await admin.start()
    replicas: list[Replica] = []
    try:
        started = time.monotonic()
        for k in range(n):
            pod = f"classify-{k}"
            rdir = run_dir / f"{n}r" / pod
            env = replica_env(bootstrap, rdir, app_id, pod, precision, max_batch)
            replicas.append(Replica(pod, rdir, localrun.spawn_service("classify", rdir, env)))

        async def joined() -> dict[str, list[int]] | None:
            state, members = await group_assignment(admin, app_id, topics.MENTIONS_RAW)
            covered = sorted(p for ps in members.values() for p in ps)
            if state == "Stable" and len(members) == n and all(members.values()) and \
                    covered == [tp.partition for tp in raw_parts]:
                return members
            return None

        await _until(f"stable group of {n} replicas holding all partitions", joined, startup_timeout, replicas)
        warm_reader.start_reading()
        await _produce(bootstrap, warmup)

        async def warmed() -> bool:
            return warm_reader.seen(warm_ids) == len(warm_ids)

        await _until("scored warm-up", warmed, startup_timeout, replicas)

        async def committed() -> bool:  # the warm-up's offsets too, so the lag table starts at the backlog
            return not any((await monitor.measure()).values())

        await _until("warm-up committed", committed, 30, replicas)
        result.startup_seconds = time.monotonic() - started
        result.partitions = await joined() or {}
        if not result.partitions:
            raise RuntimeError("the group rebalanced during the warm-up")
        log(f"  {n} replica(s) ready in {result.startup_seconds:.0f} s (group {app_id}); partitions "
            + ", ".join(f"{pod}: {ps}" for pod, ps in sorted(result.partitions.items())), flush=True)

        reader.start_reading()
        t0 = time.time()
        cpu0 = CpuSnapshot.take(replicas)
        result.produce_seconds = await _produce(bootstrap, backlog)
        deadline = time.monotonic() + drain_timeout
        while True:
            for r in replicas:
                if not r.alive():
                    raise RuntimeError(f"{r.pod} exited (rc {r.proc.returncode}); log tail:\n{r.log_tail()}")
            with contextlib.suppress(Exception):
                lags = await monitor.measure()
                result.lag.append((time.time() - t0, {tp.partition: v for tp, v in lags.items()}))
            if reader.seen(backlog_ids) == len(backlog_ids):
                result.replica_cores, result.machine_cores = CpuSnapshot.take(replicas).cores_since(cpu0)
                break
            if time.monotonic() > deadline:
                result.error = f"not drained after {drain_timeout:.0f} s"
                break
            await asyncio.sleep(sample)
        if not result.error:
            result.seconds = reader.last_ts - t0
            # The last commits follow the last produce by up to the commit interval (1 s): one more sample
            # shows the lag at zero.
            for _ in range(10):
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    lags = await monitor.measure()
                    result.lag.append((time.time() - t0, {tp.partition: v for tp, v in lags.items()}))
                    if not any(lags.values()):
                        break
        after = await joined()
        result.rebalanced = after != result.partitions
        await asyncio.sleep(1.0)  # duplicates, if any, would come out right after
    except (RuntimeError, TimeoutError) as exc:
        result.error = str(exc)
    finally:
        await asyncio.to_thread(stop_all, replicas)
        await reader.stop()
        await warm_reader.stop()
        with contextlib.suppress(Exception):
            await monitor.stop()
        await admin.close()
    result.scored = Counter({k: v for k, v in reader.counts.items() if k in backlog_ids})
    return result


def lag_table(result: RunResult, rows: int = 10) -> str:
    """The group's lag over time: at most ``rows`` evenly spaced samples (first and last included)."""
    samples = result.lag
    if not samples:
        return "  (no lag samples)"
    if len(samples) > rows:
        idx = sorted({round(i * (len(samples) - 1) / (rows - 1)) for i in range(rows)})
        samples = [samples[i] for i in idx]
    parts = sorted(samples[0][1])
    head = "| t s | lag | " + " | ".join(f"p{p}" for p in parts) + " |"
    lines = [head, "|" + "---:|" * (2 + len(parts))]
    for t, lags in samples:
        lines.append(f"| {t:.1f} | {sum(lags.values())} | " + " | ".join(str(lags.get(p, 0)) for p in parts) + " |")
    return "\n".join(lines)


def results_table(results: list[RunResult]) -> str:
    base = next((r.rate for r in results if r.replicas == 1 and not r.error), float("nan"))
    lines = ["| replicas | mentions | seconds | mentions/s | speed-up vs 1 | per-replica partitions "
             "| replicas' CPU, cores | machine CPU, cores | scored once | duplicates | missing |",
             "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in results:
        parts = " / ".join(",".join(map(str, ps)) for _, ps in sorted(r.partitions.items())) or "-"
        if r.rebalanced:
            parts += " (rebalanced during the run)"
        if r.error:
            lines.append(f"| {r.replicas} | {r.mentions} | failed: {r.error.splitlines()[0][:120]} | | | {parts} "
                         f"| | | {len(r.scored)} | {r.duplicates} | {r.missing} |")
            continue
        lines.append(f"| {r.replicas} | {r.mentions} | {r.seconds:.1f} | {r.rate:.1f} | {r.rate / base:.2f}x "
                     f"| {parts} | {r.replica_cores:.2f} | {r.machine_cores:.2f} | {len(r.scored)} | {r.duplicates} "
                     f"| {r.missing} |")
    return "\n".join(lines)


def default_precision() -> str:
    """bf16 weights where the CPU has native bf16, else fp32; pinned, so that `auto`'s start-up measurement
    (on cores the other replicas are loading) cannot pick differently per replica."""
    from services.classify.encoder.precision import native_bf16

    return "bf16-weights" if native_bf16() else "fp32"


def load_texts(n: int, seed: int = 0) -> list[str]:
    from services.classify.training.datasets import load_umsab

    texts = load_umsab("train").texts
    random.Random(seed).shuffle(texts)
    return texts[:n]


async def run(args: argparse.Namespace) -> int:
    from services.classify.encoder.loader import ensure_default_model

    ensure_default_model()
    counts = [int(c) for c in args.replicas.split(",")]
    texts = load_texts(args.mentions + args.warmup)
    backlog = backlog_mentions(texts[:args.mentions], args.mentions)
    warmup = backlog_mentions(texts[args.mentions:], args.warmup, prefix=WARMUP_PREFIX)
    precision = args.precision or default_precision()
    run_dir: Path = args.run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    print(f"# Classify scale-out benchmark: replicas {args.replicas}, {args.mentions} mentions per run "
          f"(real UMSAB tweets, one hot brand '{HOT_BRAND}', keyed by mention id) over the same "
          f"{topics.MENTIONS_RAW} topic; 1 torch thread per replica, precision {precision}; "
          f"{os.cpu_count()} CPUs; logs in {run_dir}", flush=True)
    print(f"# {CRISIS_NOTE}", flush=True)
    results: list[RunResult] = []
    # SIGTERM (`timeout`, `make` stopped) and ^C cancel the run, so the `finally`s stop the replicas (their
    # own sessions: a signal to this process group does not reach them) and the broker.
    main_task = asyncio.current_task()
    assert main_task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main_task.cancel)
    with KafkaBroker(run_dir / "kafka", libs_dir=ensure_jars()) as broker:
        bootstrap = broker.bootstrap_servers
        await ensure_topics(bootstrap, all_topic_specs())
        spread = await _spread(bootstrap, backlog)
        print(f"# backlog per partition of {topics.MENTIONS_RAW}: "
              + ", ".join(f"p{p}: {c}" for p, c in sorted(spread.items())), flush=True)
        try:
            await _run_all(args, counts, bootstrap, backlog, warmup, run_dir, precision, results)
        finally:
            print(f"\n# Classify replicas, 1 torch thread each, {os.cpu_count()} CPUs; {CRISIS_NOTE}")
            print(results_table(results), flush=True)
    return 0 if len(results) == len(counts) and all(not r.error for r in results) else 1


async def _run_all(args: argparse.Namespace, counts: list[int], bootstrap: str, backlog: list[pb.Mention],
                   warmup: list[pb.Mention], run_dir: Path, precision: str, results: list[RunResult]) -> None:
    for n in counts:
        print(f"\n## {n} replica(s)", flush=True)
        result = await run_replicas(bootstrap, n, backlog, warmup, run_dir, precision=precision,
                                    max_batch=args.max_batch, startup_timeout=args.startup_timeout,
                                    drain_timeout=args.drain_timeout, sample=args.sample)
        results.append(result)
        if result.error:
            print(f"  run failed: {result.error}", flush=True)
        else:
            print(f"  {result.mentions} mentions in {result.seconds:.1f} s = {result.rate:.1f} mentions/s "
                  f"(backlog produced in {result.produce_seconds:.2f} s); the replicas used "
                  f"{result.replica_cores:.2f} cores, the whole machine {result.machine_cores:.2f} of "
                  f"{os.cpu_count()}", flush=True)
        print("  consumer lag of the group on mentions.raw over time (t from the first backlog record sent):")
        print(lag_table(result), flush=True)


async def _spread(bootstrap: str, mentions: list[pb.Mention]) -> dict[int, int]:
    """Which partition each backlog mention goes to, as the producers' default (murmur2) partitioner places it."""
    parts = [tp.partition for tp in await _partitions(bootstrap, topics.MENTIONS_RAW)]
    partitioner = DefaultPartitioner()
    return dict(Counter(partitioner(m.mention_id.encode(), parts, parts) for m in mentions))


def main(argv: list[str] | None = None) -> int:
    # aiokafka logs a fresh broker's retriable coordinator errors as errors; the figures are what matters here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", default="1,2,4", help="comma-separated replica counts (default 1,2,4)")
    parser.add_argument("--mentions", type=int, default=3000, help="backlog mentions per run (default 3000)")
    parser.add_argument("--warmup", type=int, default=60, help="warm-up mentions per run before the backlog")
    parser.add_argument("--precision", default="", help="encoder precision of every replica (default: "
                                                         "bf16-weights with native bf16, else fp32)")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="TRIAGE_CLASSIFY_MAX_BATCH of every replica (default: the setting's default)")
    parser.add_argument("--sample", type=float, default=1.0, help="lag sampling interval, s")
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="per run: replicas up and warm, s")
    parser.add_argument("--drain-timeout", type=float, default=400.0, help="per run: backlog scored, s")
    parser.add_argument("--run-dir", type=Path, default=localrun.REPO_ROOT / "run" / "bench-scale")
    args = parser.parse_args(argv)
    if args.mentions < 1 or args.mentions > 20000:
        parser.error("--mentions must be 1..20000 (bounded)")
    try:
        return asyncio.run(run(args))
    except asyncio.CancelledError:
        print("interrupted: replicas and broker stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
