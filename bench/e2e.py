"""`make bench-e2e`: the whole pipeline on a real broker at fixed offered rates, ingest -> routed latency.

Starts a private Kafka broker and ingest, classify, router as processes (the way `make up` does, through
`services.devtools.localrun`, in its own run directory and on free ports), with the demo's routing tree whose
P1 receiver is a PagerDuty-shaped stand-in served here on 127.0.0.1. Then, per offered rate (mentions/s,
`--seconds` each, bounded): POSTs NDJSON batches of real UMSAB tweets (all 8 languages) to ingest every
0.1 s; from `--burst-at` seconds into each phase, `--burst-share` of the offered mentions are outage reports
about one brand (distinct posts, several languages). Read back from the queue topics:

- achieved: mentions routed per second during the phase;
- p50/p95/p99 of ingest-accepted (`received_at`) -> routed (`routed_at`), both stamped by the services;
- backlog: mentions accepted but not yet routed when the phase's sending stops (the consumer lag the
  pipeline carries), and how long draining it took (bounded by `--drain`);
- outage trigger delay: first outage post of the burst sent -> first PagerDuty `trigger` received;
- RSS (resident memory, now and peak) of each service process at the end of each phase.

The issue's table is four rates (50, 100, 200, 400 mentions/s offered, 60 s each: about 8-14 minutes with
the drains); `--seconds 15` is the short variant for checking the tooling, not for figures.
Prints figures; asserts nothing (benchmarks are not tests). Stops every process it started. Also writes the
figures, with the CPU's model name and instruction sets, to a JSON file (`bench/results.py`; `$BENCH_OUT`,
default `.cache/bench/`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from services.common import codec
from services.common.codec import pb
from services.common.timeutil import epoch
from services.devtools import localrun
from services.devtools.ports import free_port

OUTAGE_TEXTS = [
    "@{brand} app is down again, can't log in at all",
    "is @{brand} down?? getting error 503 on every login",
    "@{brand} la app no funciona, no puedo entrar a mi cuenta",
    "@{brand} приложение не работает, не могу войти в аккаунт",
    "@{brand} o app caiu? Não consigo acessar minha conta",
    "@{brand} die App geht schon wieder nicht, Login unmöglich",
    "@{brand} ऐप काम नहीं कर रहा, लॉगिन नहीं हो रहा",
    "@{brand} l'application ne marche plus, impossible de me connecter",
]
CHATTER_BRANDS = ("acmebank", "globex", "initech")
DEFAULT_RATES = "50,100,200,400"   # issue 27's four-rate table


async def _until(done: Callable[[], bool], timeout: float) -> bool:
    """Poll ``done`` every 0.2 s for at most ``timeout`` seconds; whether it became true."""
    for _ in range(max(1, int(timeout / 0.2))):
        if done():
            return True
        await asyncio.sleep(0.2)
    return done()


PROFILE_RATE = 25   # py-spy samples per second of the worker profile


async def _start_profiler(pid: int, out: Path, tries: int = 5) -> asyncio.subprocess.Process | None:
    """py-spy recording ``pid`` into ``out``; retried, as attaching sometimes fails to find the interpreter."""
    for _ in range(tries):
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--rate", str(PROFILE_RATE),
            "--format", "raw", "--native", "--threads", "--idle", "-o", str(out),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 3)
        if proc.returncode is None:
            return proc
    print(f"py-spy could not attach to pid {pid}; no profile", flush=True)
    return None


def _percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


@dataclass
class Phase:
    rate: float
    tag: str
    brand: str
    sent_at: dict[str, float] = field(default_factory=dict)   # external_id -> wall time posted
    accepted: int = 0
    rejected: int = 0
    routed: int = 0
    routed_in_window: int = 0
    latencies: list[float] = field(default_factory=list)
    first_burst_sent: float | None = None
    first_trigger: float | None = None
    started: float = 0.0
    stopped: float = 0.0
    drained_s: float | None = None
    backlog_at_stop: int = 0
    rss_mib: dict[str, dict[str, float]] = field(default_factory=dict)   # service -> {"rss": .., "peak": ..}

    def figures(self, seconds: float) -> dict[str, object]:
        lat = self.latencies
        return {
            "offered_per_s": self.rate, "seconds": seconds, "accepted": self.accepted, "rejected": self.rejected,
            "routed": self.routed, "achieved_routed_per_s": self.routed_in_window / seconds,
            "p50_s": _percentile(lat, 50), "p95_s": _percentile(lat, 95), "p99_s": _percentile(lat, 99),
            "backlog_at_stop": self.backlog_at_stop, "drained_s": self.drained_s,
            "outage_trigger_s": (self.first_trigger - self.first_burst_sent
                                 if self.first_trigger and self.first_burst_sent else None),
            "rss_mib": self.rss_mib,
        }


def process_rss_mib(pid: int) -> dict[str, float]:
    """Resident memory of ``pid`` now (VmRSS) and its peak so far (VmHWM), MiB; empty if it is gone."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss" if key == "VmRSS" else "peak"] = int(value.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        return {}
    return out


def services_rss(run_dir: Path) -> dict[str, dict[str, float]]:
    """RSS of every service process `localrun` started in ``run_dir`` (by its pid file)."""
    out = {}
    for name in localrun.SERVICES:
        try:
            pid = int((run_dir / f"{name}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if rss := process_rss_mib(pid):
            out[name] = rss
    return out


class Results:
    """What came out of the pipeline, filed under the phase whose tag is in the post's external id."""

    def __init__(self) -> None:
        self.phases: dict[str, Phase] = {}
        self.warm: int = 0
        self.pd_events: list[tuple[float, dict]] = []

    def on_routed(self, value: bytes) -> None:
        r = codec.decode(value, pb.RoutedMention)
        ext = r.scored.mention.external_id
        tag = ext.split("-")[1] if ext.startswith("e2e-") else ""
        if tag == "warm":
            self.warm += 1
            return
        phase = self.phases.get(tag)
        if phase is None:
            return
        phase.routed += 1
        routed = epoch(r.routed_at)
        if routed <= phase.stopped or not phase.stopped:
            phase.routed_in_window += 1
        if r.scored.mention.received_at.seconds:
            phase.latencies.append(routed - epoch(r.scored.mention.received_at))

    def on_page(self, event: dict) -> None:
        now = time.time()
        self.pd_events.append((now, event))
        if event.get("event_action") != "trigger":
            return
        summary = json.dumps(event.get("payload", {}), ensure_ascii=False).lower()
        for phase in self.phases.values():
            if phase.brand in summary and phase.first_trigger is None:
                phase.first_trigger = now


async def watch(bootstrap: str, results: Results, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, metadata_max_age_ms=2000)
    await consumer.start()
    consumer.subscribe(pattern=r"^triage\.queue\..*$")
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for rec in records:
                    results.on_routed(rec.value)
    finally:
        await consumer.stop()


def _mention(ext_id: str, text: str, brand: str, rng: random.Random) -> str:
    return json.dumps({
        "source": "x", "external_id": ext_id, "text": text, "brands": [brand],
        "author": {"handle": f"user{rng.randint(1, 50_000)}", "followers": rng.choice([5, 300, 5000, 40_000])},
        "engagement": {"likes": rng.randint(0, 30), "reposts": rng.randint(0, 5)},
    }, ensure_ascii=False)


async def _post(client: httpx.AsyncClient, lines: list[str], phase: Phase | None) -> None:
    body = ("\n".join(lines) + "\n").encode()
    for _ in range(20):
        r = await client.post("/v1/mentions", content=body, headers={"Content-Type": "application/x-ndjson"})
        if r.status_code in (429, 503):
            await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            continue
        if phase is not None:
            if r.status_code == 202:
                phase.accepted += len(r.json()["accepted"])
            else:
                phase.rejected += len(lines)
        return


async def run_phase(client: httpx.AsyncClient, phase: Phase, texts: list[str], seconds: float, burst_at: float,
                    burst_share: float, rng: random.Random) -> None:
    tick = 0.1
    per_tick = phase.rate * tick
    owed = 0.0
    i = 0
    pending: set[asyncio.Task[None]] = set()
    phase.started = time.time()
    t0 = time.monotonic()
    n_ticks = round(seconds / tick)
    for k in range(n_ticks):
        owed += per_tick
        lines = []
        in_burst = k * tick >= burst_at
        while owed >= 1:
            owed -= 1
            ext = f"e2e-{phase.tag}-{i}"
            if in_burst and rng.random() < burst_share:
                text = rng.choice(OUTAGE_TEXTS).format(brand=phase.brand) + f" (#{i})"
                lines.append(_mention(ext, text, phase.brand, rng))
                if phase.first_burst_sent is None:
                    phase.first_burst_sent = time.time()
            else:
                lines.append(_mention(ext, texts[i % len(texts)], rng.choice(CHATTER_BRANDS), rng))
            phase.sent_at[ext] = time.time()
            i += 1
        if lines:
            task = asyncio.create_task(_post(client, lines, phase))
            pending.add(task)
            task.add_done_callback(pending.discard)
        delay = t0 + (k + 1) * tick - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    if pending:
        await asyncio.gather(*pending)
    phase.stopped = time.time()


async def run(args: argparse.Namespace) -> int:
    from services.classify.encoder.loader import ensure_default_model
    from services.classify.training.datasets import load_umsab

    ensure_default_model()
    texts = load_umsab("val").texts
    random.Random(0).shuffle(texts)
    rng = random.Random(1)
    results = Results()

    async def enqueue(request: web.Request) -> web.Response:
        event = await request.json()
        results.on_page(event)
        return web.json_response({"status": "success", "message": "Event processed",
                                  "dedup_key": event.get("dedup_key", "")}, status=202)

    pd_port = free_port()
    pd_app = web.Application()
    pd_app.router.add_post("/v2/enqueue", enqueue)
    pd_runner = web.AppRunner(pd_app)
    await pd_runner.setup()
    await web.TCPSite(pd_runner, "127.0.0.1", pd_port).start()

    run_dir: Path = args.run_dir
    localrun.down(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    routes = run_dir / "routes.yaml"
    routes.write_text((localrun.REPO_ROOT / "demo" / "routes.yaml").read_text()
                      .replace("__PAGERDUTY_URL__", f"http://127.0.0.1:{pd_port}/v2/enqueue"))
    os.environ.update({"TRIAGE_ROUTES_FILE": str(routes), "TRIAGE_DEMO_PD_KEY": "bench-integration-key"})
    ports = localrun.Ports(kafka=free_port(), ingest=free_port(), classify_metrics=free_port(),
                           router_metrics=free_port(), console=free_port())
    bootstrap = f"127.0.0.1:{ports.kafka}"
    print(f"# End-to-end benchmark: rates {args.rates} mentions/s offered, {args.seconds:.0f} s each, "
          f"outage burst from {args.burst_at:.0f} s ({args.burst_share:.0%} of the offered mentions); "
          f"{os.cpu_count()} CPUs; logs in {run_dir}", flush=True)
    stop = asyncio.Event()
    warm_after = float("nan")
    watcher: asyncio.Task[None] | None = None
    profiler: asyncio.subprocess.Process | None = None
    try:
        url = await asyncio.to_thread(localrun.up, run_dir, ports)
        watcher = asyncio.create_task(watch(bootstrap, results, stop))
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            # Warm-up: until mentions come out the far end, the model, the consumer groups and the
            # router's tree are all loaded.
            started = time.monotonic()
            n_warm = 0
            while results.warm == 0 and time.monotonic() - started < args.startup_timeout:
                await _post(client, [_mention(f"e2e-warm-{n_warm + j}", texts[j], "acmebank", rng)
                                     for j in range(10)], None)
                n_warm += 10
                await asyncio.sleep(2)
            if results.warm == 0:
                print(f"pipeline produced nothing within {args.startup_timeout:.0f} s; see {run_dir}/*.log")
                return 1
            await _until(lambda: results.warm >= n_warm, args.startup_timeout - (time.monotonic() - started))
            warm_after = time.monotonic() - started
            print(f"pipeline warm after {warm_after:.0f} s ({results.warm} warm-up mentions routed)", flush=True)
            if args.profile:
                profiler = await _start_profiler(int((run_dir / "classify.pid").read_text()), args.profile)
            for n, rate in enumerate(float(r) for r in args.rates.split(",")):
                phase = Phase(rate=rate, tag=f"r{n}", brand=f"fjord{n}tel")
                results.phases[phase.tag] = phase
                await run_phase(client, phase, texts, args.seconds, args.burst_at, args.burst_share, rng)
                phase.backlog_at_stop = phase.accepted - phase.routed
                if await _until(lambda p=phase: p.routed >= p.accepted, args.drain):  # type: ignore[misc]
                    phase.drained_s = time.time() - phase.stopped
                # The trigger waits for group_wait; give it a moment if the burst was late.
                if phase.first_burst_sent:
                    await _until(lambda p=phase: p.first_trigger is not None, 15)  # type: ignore[misc]
                phase.rss_mib = services_rss(run_dir)
                print(_row(phase, args.seconds), flush=True)
    finally:
        if profiler is not None:
            with contextlib.suppress(ProcessLookupError):
                profiler.send_signal(signal.SIGINT)   # py-spy writes its output on SIGINT
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(profiler.wait(), 60)
        stop.set()
        if watcher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watcher, 10)
        await asyncio.to_thread(localrun.down, run_dir)
        await pd_runner.cleanup()
    if profiler is not None and args.profile.exists():
        from bench.profile import print_worker_summary

        print()
        print_worker_summary(args.profile, PROFILE_RATE)
    print("\n| offered /s | accepted | achieved routed /s | p50 s | p95 s | p99 s | backlog at stop | drained in s "
          "| outage trigger s |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for phase in results.phases.values():
        print(_row(phase, args.seconds))
    # PagerDuty's Events v2 has no "update": an update is another `trigger` with the same dedup_key, so the
    # incidents paged are the distinct dedup keys, and the events beyond them are updates.
    triggers = sum(1 for _, e in results.pd_events if e.get("event_action") == "trigger")
    incidents = len({e.get("dedup_key") for _, e in results.pd_events if e.get("event_action") == "trigger"})
    print(f"\nPagerDuty stand-in: {len(results.pd_events)} events: {incidents} incidents triggered (distinct "
          f"dedup keys), {triggers - incidents} re-triggers of them (updates)")
    if any(p.rss_mib for p in results.phases.values()):
        names = [n for n in localrun.SERVICES if any(n in p.rss_mib for p in results.phases.values())]
        print("\n| offered /s | " + " | ".join(f"{n} RSS / peak MiB" for n in names) + " |\n|---:|"
              + "---:|" * len(names))
        for p in results.phases.values():
            cells = [f"{p.rss_mib[n]['rss']:.0f} / {p.rss_mib[n]['peak']:.0f}" if n in p.rss_mib else "-"
                     for n in names]
            print(f"| {p.rate:.0f} | " + " | ".join(cells) + " |")
    if results.phases and not args.no_json:
        from bench.results import write_results

        path = write_results("e2e", {
            "burst_at_s": args.burst_at, "burst_share": args.burst_share, "warm_after_s": warm_after,
            "pagerduty_events": len(results.pd_events), "pagerduty_triggers": triggers,
            "pagerduty_incidents": incidents,
            "phases": [p.figures(args.seconds) for p in results.phases.values()]})
        print(f"\nwrote {path}")
    return 0


def _row(p: Phase, seconds: float) -> str:
    lat = p.latencies
    trig = (f"{p.first_trigger - p.first_burst_sent:.1f}" if p.first_trigger and p.first_burst_sent
            else "none")
    drained = f"{p.drained_s:.0f}" if p.drained_s is not None else "not drained"
    return (f"| {p.rate:.0f} | {p.accepted} | {p.routed_in_window / seconds:.1f} | {_percentile(lat, 50):.2f} "
            f"| {_percentile(lat, 95):.2f} | {_percentile(lat, 99):.2f} | {p.backlog_at_stop} | {drained} | {trig} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.e2e", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default=os.environ.get("BENCH_E2E_RATES", DEFAULT_RATES),
                        help=f"comma-separated offered rates, mentions/s, one phase each (default {DEFAULT_RATES})")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_E2E_SECONDS", "60")))
    parser.add_argument("--burst-at", type=float, default=20.0, help="seconds into each phase the burst starts")
    parser.add_argument("--burst-share", type=float, default=0.05, help="share of mentions in the burst")
    parser.add_argument("--drain", type=float, default=120.0, help="at most this long to drain after a phase")
    parser.add_argument("--startup-timeout", type=float, default=240.0)
    parser.add_argument("--run-dir", type=Path, default=localrun.REPO_ROOT / "run" / "bench-e2e")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy record the classify worker during the phases (raw folded stacks, threads, idle)")
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON results file")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
