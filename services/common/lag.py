"""Consumer lag per partition of a worker's consumer group, exported as Prometheus gauges.

Lag is what the group still has to read: the partition's end offset (the offset the next record
will get) minus the offset the group committed. It is measured from Kafka's committed offsets,
not from the worker's in-memory position, because that is what a restarted or rebalanced worker
resumes from and what an autoscaler or an alert must see.

Every replica of a worker reports the lag of the whole group, not only of the partitions it
owns (assignments move on every rebalance, committed offsets do not), so dashboards and the
HPA aggregate with ``max by (service, topic, partition)`` before summing.

    monitor = ConsumerLagMonitor("classify", group_id="triage-classify", topics=["mentions.raw"],
                                 bootstrap="kafka:9092")
    await monitor.start()            # measures every `interval` seconds in a background task
    ...
    await monitor.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from services.common.logging import get_logger

log = get_logger("lag")

CONSUMER_LAG = Gauge(
    "triage_consumer_lag_messages",
    "Records a worker's consumer group has not committed yet (end offset - committed offset), per partition",
    ["service", "topic", "partition"],
)
# Where the group resumes: the committed offset, or the log start when it has none. A partition
# with lag whose offset stopped moving is a stalled consumer (the lag alone cannot tell a stall
# from a steady backlog).
COMMITTED_OFFSET = Gauge(
    "triage_consumer_committed_offset",
    "Offset a worker's consumer group resumes from (committed, or the log start if none), per partition",
    ["service", "topic", "partition"],
)
LAG_ERRORS = Counter(
    "triage_consumer_lag_errors_total",
    "Lag measurements that failed; the service's lag series are removed until one succeeds",
    ["service"],
)


def resume_offset(committed: int | None, beginning: int) -> int:
    """Where the group resumes on a partition.

    A group that never committed on a partition starts at the log start offset
    (auto_offset_reset=earliest), and one whose committed offset retention already deleted
    resumes there too, so neither counts records that no longer exist.
    """
    return beginning if committed is None or committed < 0 else max(committed, beginning)


def partition_lag(end: int, committed: int | None, beginning: int) -> int:
    """Lag of one partition: records between where the group resumes and the end of the log."""
    return max(0, end - resume_offset(committed, beginning))


class ConsumerLagMonitor:
    """Measures one consumer group's lag on `topics` and keeps `triage_consumer_lag_messages` current.

    It uses its own admin client and a group-less consumer (it never joins the group, so it
    cannot trigger a rebalance), because the Faust workers' consumer lives on another thread.
    """

    def __init__(self, service: str, group_id: str, topics: Sequence[str], *, bootstrap: str,
                 interval: float = 15.0, timeout: float = 10.0, client_options: Mapping[str, Any] | None = None):
        self.service = service
        self.group_id = group_id
        self.topics = tuple(topics)
        self.bootstrap = bootstrap
        self.interval = interval
        self.timeout = timeout
        # Security settings (SASL/TLS) a production cluster needs; passed to both clients.
        self.client_options = dict(client_options or {})
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._exported: set[tuple[str, str]] = set()

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            client_id = f"triage-{self.service}-lag"
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=client_id,
                                        request_timeout_ms=int(self.timeout * 1000), **self.client_options)
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, client_id=client_id, group_id=None,
                                        enable_auto_commit=False, request_timeout_ms=int(self.timeout * 1000),
                                        **self.client_options)
            try:
                await admin.start()
                await consumer.start()
            except BaseException:
                await admin.close()
                await consumer.stop()
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def measure(self) -> dict[TopicPartition, int]:
        """One measurement: lag per partition of every existing topic in `topics`; updates the gauge."""
        admin, consumer = await self._clients()

        async def offsets() -> tuple[list[TopicPartition], dict[Any, Any], dict[Any, Any], dict[Any, Any]]:
            # All-topics metadata: asking for named topics would auto-create missing ones on
            # brokers with auto.create.topics.enable.
            described = await admin.describe_topics()
            parts = [TopicPartition(t["topic"], p["partition"])
                     for t in described if t["topic"] in self.topics and not t["error_code"]
                     for p in t["partitions"]]
            if not parts:
                return [], {}, {}, {}
            while True:
                try:
                    committed = await admin.list_consumer_group_offsets(self.group_id, partitions=parts)
                    break
                except KafkaError as exc:
                    # A fresh cluster creates __consumer_offsets on the first FindCoordinator and
                    # a coordinator moves on broker restarts: retriable, within this round's timeout.
                    if not exc.retriable:
                        raise
                    await asyncio.sleep(0.2)
            ends = await consumer.end_offsets(parts)
            beginnings = await consumer.beginning_offsets(parts)
            return parts, committed, ends, beginnings

        # end_offsets can wait forever on a partition without a leader: bound the whole round.
        parts, committed, ends, beginnings = await asyncio.wait_for(offsets(), self.timeout)
        lags: dict[TopicPartition, int] = {}
        exported: set[tuple[str, str]] = set()
        for tp in parts:
            meta = committed.get(tp)
            offset = meta.offset if meta is not None else None
            lags[tp] = partition_lag(ends[tp], offset, beginnings[tp])
            labels = (tp.topic, str(tp.partition))
            exported.add(labels)
            CONSUMER_LAG.labels(self.service, *labels).set(lags[tp])
            COMMITTED_OFFSET.labels(self.service, *labels).set(resume_offset(offset, beginnings[tp]))
        self._remove(self._exported - exported)
        self._exported = exported
        return lags

    def _remove(self, series: set[tuple[str, str]]) -> None:
        for topic, partition in series:
            for gauge in (CONSUMER_LAG, COMMITTED_OFFSET):
                with contextlib.suppress(KeyError):
                    gauge.remove(self.service, topic, partition)

    def _forget(self) -> None:
        # A stale lag value looks like a healthy, flat line; no value at all is honest.
        self._remove(self._exported)
        self._exported = set()

    async def _reset_clients(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()

    async def run(self) -> None:
        """Measure every `interval` seconds until cancelled; failures are counted and logged, never raised."""
        while True:
            try:
                await self.measure()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                LAG_ERRORS.labels(self.service).inc()
                self._forget()
                log.warning("lag_measure_failed", service=self.service, group=self.group_id,
                            error=type(exc).__name__, detail=str(exc)[:200])
                # Fresh connections next round: a broker restart can leave the old ones wedged.
                await self._reset_clients()
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"lag-{self.service}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._forget()
        await self._reset_clients()


def attach_to_faust(app: Any, monitor: ConsumerLagMonitor) -> ConsumerLagMonitor:
    """Run `monitor` for the life of a Faust worker: measured from start-up, stopped on shutdown."""

    @app.task
    async def _measure_consumer_lag() -> None:
        await monitor.run()

    @app.on_before_shutdown.connect
    async def _stop_lag_monitor(app: Any, **_: Any) -> None:
        await monitor.stop()

    return monitor
