"""Faust plumbing both workers share: app defaults and the retry-until-done batch loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import faust

from services.common.logging import get_logger
from services.common.settings import WorkerSettings
from services.common.topics import TopicSpec

log = get_logger("faust")


def faust_app(app_id: str, settings: WorkerSettings, **extra: Any) -> faust.App:
    """A Faust app with the pipeline's defaults (raw bytes in, our own protobuf decoding); its Kafka
    security and the replication factor of its internal topics come from `settings`."""
    options: dict[str, Any] = {
        **settings.faust_options(),
        "value_serializer": "raw",
        "key_serializer": "raw",
        "web_enabled": False,
        "producer_acks": -1,
        "broker_commit_interval": 1.0,
        "consumer_auto_offset_reset": "earliest",
    }
    options.update(extra)
    return faust.App(app_id, **options)


async def retry_until_done(fn: Any, arg: Any, what: str, max_backoff: float = 30.0) -> None:
    """Retry `fn(arg)` until it succeeds: the batch's offsets are not committed meanwhile,
    so a Kafka outage pauses the worker instead of losing the batch."""
    delay = 0.5
    while True:
        try:
            await fn(arg)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("retrying", what=what, error=type(exc).__name__, detail=str(exc)[:200], in_s=delay)
            await asyncio.sleep(delay)
            delay = min(max_backoff, delay * 2)


def faust_producer(app: faust.App) -> Any:
    """The aiokafka producer under Faust's own (it writes the tables' changelogs, e.g. the crisis state), or None
    before Faust made it. Read without `app.producer`, which would build one, from the probe's thread."""
    return getattr(getattr(app, "_producer", None), "_producer", None)


def run_worker(app: faust.App, settings: WorkerSettings, metrics_port: int, banner: str,
               topics: Iterable[TopicSpec] = (), producers: Callable[[], Iterable[Any]] = tuple,
               ready_gates: Callable[[], Iterable[tuple[bool, str]]] = tuple) -> None:
    """Serve /metrics, /healthz and /readyz, say where, and run the Faust worker until it is stopped (blocks).

    The probes watch this worker's event loop, its Kafka consumer, `producers()` (the worker's own aiokafka
    producers) and Faust's own producer, which writes the tables' changelogs (services/common/probes.py); /readyz
    also the worker's own `ready_gates()` ((ok, line) each). `topics` are created first when missing (with
    their partition counts: co-partitioning depends on them; a broker's auto-creation would give them its
    default).
    """
    import sys

    from services.common.fetch_guard import guard_fetches
    from services.common.kafka import PartitionCountMismatch, check_partitions, ensure_topics, wait_for_kafka
    from services.common.metrics import serve_metrics
    from services.common.probes import WorkerProbes, watch_faust_consumer

    probes = WorkerProbes(settings.probe_loop_stale_seconds, settings.probe_fetch_stale_seconds,
                          producers=lambda: (*producers(), faust_producer(app)), gates=ready_gates)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    specs = list(topics)
    if specs:
        security = settings.kafka_client_options()
        worker.loop.run_until_complete(wait_for_kafka(settings.kafka_bootstrap, 120, client_options=security))
        worker.loop.run_until_complete(ensure_topics(settings.kafka_bootstrap, specs,
                                                     settings.topic_replication_factor, client_options=security))
        try:
            worker.loop.run_until_complete(check_partitions(settings.kafka_bootstrap, specs, security))
        except PartitionCountMismatch as exc:
            log.error("worker_refused_to_start", reason=str(exc))
            print(f"{app.conf.id}: refused to start: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from exc
    # Before the worker starts: the fetcher binds the consumer's getmany when it starts, and the
    # heartbeat must beat during table recovery too (app tasks start only after it).
    watch_faust_consumer(app.consumer, probes.fetch)
    # No commits past records a rebalance's stale fetch skipped, or that Faust's flow-control resume dropped.
    guard_fetches(app.consumer, specs, app=app)
    worker.loop.create_task(probes.heartbeat.run(interval=min(1.0, settings.probe_loop_stale_seconds / 4)))
    serve_metrics(metrics_port, settings.metrics_host, probes.routes())
    print(f"{banner}, metrics on http://{settings.metrics_host}:{metrics_port}/metrics (probes /healthz, /readyz)",
          file=sys.stderr, flush=True)
    worker.execute_from_commandline()
