"""A replayed burst opens the incident the backtest predicts: `triage replay --event-time` vs `triage backtest`.

One file of history (calm brand traffic with an outage burst in the middle, created_at 35-3 minutes ago)
goes (a) through `triage backtest` (the model in-process, event time) and (b) through the real pipeline:
ingest's HTTP API -> `mentions.raw` -> the classify worker (converted e5-small + heads, crisis detection
with `TRIAGE_CRISIS_EVENT_TIME=created_at`) -> `incidents`, sent by `replay_event_time` at 20x. Both must
open the same (brand, kind) incidents, the outage among them. A private broker: a replay in event time
needs a pipeline of its own (other tests' mentions on the shared broker would move the crisis clock).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from support import REPO_ROOT, ServiceProcess, consume, free_port, running_app, wait_for, wait_ready

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs
from services.ingest.app import build_app
from services.ingest.config import IngestSettings
from services.ingest.replay import replay_event_time

BRAND = "replaytel"
OUTAGE = [
    "@ReplayTel app is down, can't log in at all",
    "is @ReplayTel down? error 503 every time I try to pay",
    "@ReplayTel la app no funciona, no puedo entrar",
    "@ReplayTel App geht nicht, Login schlägt fehl",
    "@ReplayTel site not loading for me either, outage?",
]
CALM = [
    "thanks @ReplayTel, the new plan is great", "does @ReplayTel have a student discount?",
    "switched to @ReplayTel last month, so far so good", "@ReplayTel what are your shop opening hours",
    "the @ReplayTel ad on tv is funny", "how do I change my @ReplayTel billing address",
    "@ReplayTel roaming prices for Spain?", "nice chat with @ReplayTel support today",
]
SPEED = 60.0   # event time: the speed only sets how long the replay takes


def history(path: Path, now: float) -> int:
    rng = random.Random(11)
    rows, t = [], now - 35 * 60
    while t < now - 3 * 60:
        t += rng.expovariate(3 / 60)
        rows.append((t, rng.choice(CALM)))
    burst = now - 15 * 60
    rows += [(burst + 2.5 * k + rng.random(), rng.choice(OUTAGE)) for k in range(36)]
    with path.open("w") as fh:
        for i, (t, text) in enumerate(sorted(rows)):
            fh.write(json.dumps({"source": "x", "external_id": f"rp-{i}", "text": f"{text} #{i}", "created_at": t,
                                 "author": {"handle": f"u{i}", "followers": 50 + i}, "brands": [BRAND]}) + "\n")
    return len(rows)


async def test_replayed_burst_opens_the_incident_the_backtest_predicts(kafka_broker_factory, tmp_path: Path):
    bootstrap = kafka_broker_factory().bootstrap_servers
    await ensure_topics(bootstrap, all_topic_specs())
    path = tmp_path / "history.jsonl"
    n = history(path, time.time())
    common = {"TRIAGE_PRECISION": "fp32"}   # one precision for both (auto may pick differently per process)
    # Ingest adds the tracked brands it finds in a text; the backtest does the same with the same file.
    brands = tmp_path / "brands.yaml"
    brands.write_text(f"brands:\n  - id: {BRAND}\n    names: [ReplayTel]\n    handles: [{BRAND}]\n")

    backtest = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "services.cli", "backtest", str(path), "--no-table", "--drain", "60",
                         "--brands-file", str(brands)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **common})
    assert backtest.returncode == 0, backtest.stderr[-3000:]
    predicted = {(e["brand"], e["kind"]) for e in map(json.loads, backtest.stdout.splitlines())
                 if e["state"] == "OPEN"}
    assert (BRAND, "OUTAGE_CLUSTER") in predicted, backtest.stdout

    env = {**common, "TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_CLASSIFY_METRICS_PORT": str(free_port()),
           "TRIAGE_DATA_DIR": str(tmp_path / "faust"), "TRIAGE_CLASSIFY_APP_ID": "e2e-replay-classify",
           "TRIAGE_CRISIS_EVENT_TIME": "created_at"}
    classify = ServiceProcess("classify", env, tmp_path)
    try:
        # A replay is a stream the running worker sees arrive. Sent while it still loads its model, it would be
        # one backlog over six partitions, read partition by partition: event times far out of order, the
        # burst's reports late (behind the watermark) and no incident (failed in a CI dry run).
        await wait_ready(classify, f"http://127.0.0.1:{env['TRIAGE_CLASSIFY_METRICS_PORT']}/readyz")
        settings = IngestSettings(kafka_bootstrap=bootstrap, brands_file=brands)  # type: ignore[call-arg]
        async with running_app(build_app(settings)) as url:
            report = await asyncio.to_thread(replay_event_time, path, f"{url}/v1/mentions", SPEED)
        assert report.accepted == n and not report.rejected

        async def all_scored():
            assert classify.alive(), classify.log_tail()
            recs = await consume(bootstrap, [topics.MENTIONS_SCORED], idle=0.5, timeout=5)
            return len(recs) >= n

        await wait_for(all_scored, timeout=400, what=f"{n} scored mentions", interval=3)
        recs = await consume(bootstrap, [topics.INCIDENTS], idle=1.0, timeout=10)
    finally:
        classify.stop()
    incidents = [codec.decode(v, pb.Incident) for _, _, v in recs]
    opened = {(i.brand, pb.IncidentKind.Name(i.kind)) for i in incidents if i.state == pb.OPEN}
    assert opened == predicted, (opened, predicted, classify.log_tail())
    outage = next(i for i in incidents if i.state == pb.OPEN and i.kind == pb.OUTAGE_CLUSTER)
    # Opened in event time, during the burst (12-15 minutes before the replay started), not at arrival.
    assert time.time() - (outage.opened_at.seconds) > 10 * 60
