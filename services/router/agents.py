"""The router's thin Faust agents around `RouterWorker` (app.py): each takes a batch and hands it over.

`create_app` wires a worker into a Faust app: `mentions.scored` (with each record's type header: a
MentionDeleted or a ScoredMention), the page requests, the triage decisions, `incidents` and `responses` go to
the worker; partition assignments and revocations move the owned partitions' state; a timer ticks paging,
heartbeats and SLA clocks.

Example:

    from services.router.agents import create_app
    from services.router.app import RouterWorker

    worker = RouterWorker(settings, tree)
    create_app(settings, worker).main()      # what `triage router` runs
"""

from __future__ import annotations

from typing import Any

import faust

from services.common import topics
from services.common.deletions import is_deletion
from services.common.faust_app import faust_app, retry_until_done
from services.common.lag import ConsumerLagMonitor, attach_to_faust
from services.common.logging import get_logger
from services.router.app import RouterWorker
from services.router.config import RouterSettings

log = get_logger("router")


def create_app(settings: RouterSettings, worker: RouterWorker) -> faust.App:
    """N replicas of this app share the work by Kafka partitions (docs/scaling.md): `mentions.scored`,
    `responses`, the page requests and the triage decisions are co-partitioned, so partition p of each (and of
    the state topic) belongs to one replica at a time; incidents and silences are followed whole by every replica."""
    worker.ownership.owned = set()
    worker.grouping.repartition = True
    app = faust_app(settings.router_app_id, settings, stream_buffer_maxsize=max(4 * settings.max_batch, 128),
                    broker_session_timeout=settings.router_session_timeout_seconds,
                    broker_heartbeat_interval=max(1.0, settings.router_session_timeout_seconds / 10))
    owned_topics = [topics.MENTIONS_SCORED, topics.ROUTER_PAGE_REQUESTS, topics.RESPONSES, topics.TRIAGE_DECISIONS]
    attach_to_faust(app, ConsumerLagMonitor("router", settings.router_app_id, owned_topics,
                                            bootstrap=settings.kafka_bootstrap,
                                            client_options=settings.kafka_client_options()))

    @app.agent(app.topic(topics.MENTIONS_SCORED), concurrency=1)
    async def route(stream: Any) -> None:
        async for events in stream.take_events(settings.max_batch, within=settings.max_wait_seconds):
            values = [e.value for e in events]
            flags = [is_deletion(e.message.headers) for e in events]
            await retry_until_done(lambda batch: worker.process(*batch), (values, flags), what="router batch")

    @app.agent(app.topic(topics.ROUTER_PAGE_REQUESTS), concurrency=1)
    async def page_requests(stream: Any) -> None:
        async for events in stream.take_events(settings.max_batch, within=settings.max_wait_seconds):
            values = [e.value for e in events]
            flags = [is_deletion(e.message.headers) for e in events]
            await retry_until_done(lambda batch: worker.on_page_requests(*batch), (values, flags),
                                   what="page requests")

    @app.agent(app.topic(topics.TRIAGE_DECISIONS), concurrency=1)
    async def triage_decisions(stream: Any) -> None:
        async for values in stream.take(settings.max_batch, within=settings.max_wait_seconds):
            await retry_until_done(worker.on_triage_decisions, list(values), what="triage decisions")

    @app.agent(app.topic(topics.INCIDENTS), concurrency=1)
    async def incidents(stream: Any) -> None:
        # Besides every replica following the topic whole (inhibition, closing groups), the consumer group reads
        # each record once (committed after its page requests are on Kafka): an open incident pages by itself.
        async for value in stream:
            await retry_until_done(worker.on_incident, value, what="incident")

    @app.agent(app.topic(topics.RESPONSES), concurrency=1)
    async def responses(stream: Any) -> None:
        async for value in stream:
            await retry_until_done(worker.on_response, value, what="response")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(_: faust.App, revoked: set[Any], **__: Any) -> None:
        await worker.on_partitions_revoked({tp.partition for tp in revoked if tp.topic in owned_topics})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(_: faust.App, assigned: set[Any], **__: Any) -> None:
        await retry_until_done(worker.on_partitions_assigned,
                               {tp.partition for tp in assigned if tp.topic in owned_topics}, what="assignment")

    @app.timer(interval=settings.tick_seconds)
    async def tick() -> None:
        try:
            await worker.tick()
        except Exception as exc:  # a failed tick is retried by the next one; state is unchanged
            log.warning("tick_failed", error=type(exc).__name__, detail=str(exc)[:200])

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # faust's signal stubs reject async receivers
    async def _shutdown(app: faust.App, **_: Any) -> None:
        await worker.stop()

    return app
