"""A minimal Faust worker built the way classify and router are (faust_app + run_worker), for the probe and
Kafka-security integration tests: python tests/integration/probe_worker.py (TRIAGE_* and PROBE_* env).

Its agent reads PROBE_TOPIC: `wedge:S` blocks the event loop for S seconds (time.sleep, as a synchronous call in an
agent would), `stall:S` keeps the agent busy for S seconds while the loop turns, `break-faust-producer` makes the
next produce request of Faust's own producer raise inside aiokafka's sender (tests/support.py) and sends one
record through it, which ends its sender task; every value is then printed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.common.faust_app import faust_app, faust_producer, run_worker
from services.common.logging import configure_logging
from services.common.settings import WorkerSettings
from tests.support import break_producer_sender


def main() -> None:
    settings = WorkerSettings()
    configure_logging(settings.log_level, settings.log_json)
    # A small stream buffer, as the workers keep it: a busy agent soon stops the fetch loop.
    app = faust_app(os.environ["PROBE_APP_ID"], settings, stream_buffer_maxsize=4)

    @app.agent(app.topic(os.environ["PROBE_TOPIC"]), concurrency=1)
    async def handle(stream: Any) -> None:
        async for value in stream:
            text = value.decode(errors="replace")
            if text.startswith("wedge:"):
                time.sleep(float(text[6:]))  # noqa: ASYNC251 - the point: a wedged loop
            elif text.startswith("stall:"):
                await asyncio.sleep(float(text[6:]))
            elif text == "break-faust-producer":
                break_producer_sender(faust_producer(app))
                try:
                    await app.producer.send_and_wait(os.environ["PROBE_TOPIC"] + ".out", key=None, value=b"x",
                                                     partition=None, timestamp=None, headers=None)
                except Exception as exc:   # the point: the send fails and the sender ends
                    print(f"send failed: {exc!r}", flush=True)
            print(f"handled {text[:40]!r}", flush=True)

    run_worker(app, settings, int(os.environ["PROBE_METRICS_PORT"]), "probe worker")


if __name__ == "__main__":
    main()
