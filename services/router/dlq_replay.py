"""`triage dlq replay`: deliver the router's dead letters again, once their receiver is back.

Reads `mentions.dlq` with its own consumer group (`--group`, default triage-dlq-replay), so each dead
letter is replayed once: up to the end of the topic as it was at start, then the offsets are committed.
Router deliveries (RoutedMention) and pages (incident notifications) are sent again to the receiver named
in the dead letter, with the same retries, rate limit and circuit breaker as the worker. What fails again
goes back to the DLQ with the new reason and the attempts added up; dead letters of other stages, or of
receivers no longer in the routing file, are skipped and reported.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common import codec, topics
from services.common.codec import pb
from services.common.deadletter import dead_letter
from services.common.kafka import make_producer
from services.router import routing_file as routing
from services.router.config import RouterSettings
from services.router.dead_letters import ROUTED_TYPE
from services.router.delivery import ReceiverGuard, RetryPolicy, call_with_retry
from services.router.grouping import PAGE_TYPE, page_from_doc
from services.router.ratelimit import CircuitBreaker
from services.router.registry import build_receivers
from services.router.tree import RoutingTree


async def replay(settings: RouterSettings, tree: RoutingTree, group: str, receiver_filter: str | None,
                 dry_run: bool = False, out=sys.stdout) -> Counter[str]:  # type: ignore[no-untyped-def]
    stats: Counter[str] = Counter()
    security = settings.kafka_client_options()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest", **security)
    producer = make_producer(settings.kafka_bootstrap, f"{settings.kafka_client_id_prefix}-dlq-replay", **security)
    await consumer.start()
    await producer.start()
    client = httpx.AsyncClient(timeout=settings.delivery_timeout_seconds)
    try:
        receivers = build_receivers(tree.receivers, producer, client, console_url=settings.console_url)
        policy = RetryPolicy(settings.delivery_attempts, settings.delivery_backoff_seconds,
                             settings.delivery_backoff_max_seconds)
        guards = {n: ReceiverGuard(CircuitBreaker(time.monotonic, settings.delivery_breaker_failures,
                                                  settings.delivery_breaker_reset_seconds), None, n)
                  for n in receivers.names()}
        # Manual assignment with a group id: offsets are remembered without waiting for a group rebalance.
        if topics.MENTIONS_DLQ not in await consumer.topics():
            print("dlq replay: no dead letters (topic missing)", file=out)
            return stats
        parts = [TopicPartition(topics.MENTIONS_DLQ, p)
                 for p in sorted(await producer.partitions_for(topics.MENTIONS_DLQ))]
        consumer.assign(parts)
        end = await consumer.end_offsets(parts)
        pending = []
        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in parts])

        while await behind():
            batch = await consumer.getmany(timeout_ms=500, max_records=200)
            for tp, records in batch.items():
                for r in records:
                    if r.offset >= end[tp]:
                        continue
                    dl = codec.decode(r.value, pb.DeadLetter)
                    if dl.stage != "router" or dl.receiver not in receivers.names() or \
                            (receiver_filter and dl.receiver != receiver_filter):
                        stats["skipped"] += 1
                        continue
                    if dl.original_type == ROUTED_TYPE and dl.receiver in receivers.receivers:
                        routed = codec.decode(dl.original, pb.RoutedMention)
                        call = (lambda rc=receivers.receivers[dl.receiver], m=routed: rc.deliver(m))  # noqa: E731
                    elif dl.original_type == PAGE_TYPE and dl.receiver in receivers.pagers:
                        _, page = page_from_doc(dl.original)
                        call = (lambda pg=receivers.pagers[dl.receiver], p=page: pg.notify(p))  # noqa: E731
                    else:
                        stats["skipped"] += 1
                        continue
                    if dry_run:
                        stats["would_replay"] += 1
                        continue
                    outcome = await call_with_retry(dl.receiver, call, policy, guards[dl.receiver])
                    if outcome.delivered:
                        stats["replayed"] += 1
                    else:
                        stats["failed_again"] += 1
                        again = dead_letter(dl.original, "router", f"replay failed: {outcome.error}",
                                            source_topic=dl.source_topic, receiver=dl.receiver,
                                            attempts=dl.attempts + outcome.attempts, original_type=dl.original_type,
                                            service="router")
                        pending.append(await producer.send(topics.MENTIONS_DLQ, codec.encode(again), key=r.key))
        await asyncio.gather(*pending)
        if not dry_run:
            # Only now: a crash before this point replays the same letters again (deliveries are idempotent).
            await consumer.commit({tp: end[tp] for tp in parts})
    finally:
        await client.aclose()
        await producer.stop()
        await consumer.stop()
    print(f"dlq replay: replayed {stats['replayed']}, failed again {stats['failed_again']}, "
          f"skipped {stats['skipped']}" + (f", would replay {stats['would_replay']}" if dry_run else ""), file=out)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage dlq", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["replay"])
    parser.add_argument("--routes", help="routing file (default: TRIAGE_ROUTES_FILE)")
    parser.add_argument("--receiver", help="replay only dead letters of this receiver")
    parser.add_argument("--group", default="triage-dlq-replay", help="consumer group that remembers what was replayed")
    parser.add_argument("--dry-run", action="store_true", help="count what would be replayed; commit nothing")
    args = parser.parse_args(argv)
    settings = RouterSettings()
    try:
        tree = routing.load(args.routes or settings.routes_file)
    except routing.RoutingConfigError as exc:
        print(f"dlq replay: invalid routing file: {exc}", file=sys.stderr)
        return 2
    stats = asyncio.run(replay(settings, tree, args.group, args.receiver, args.dry_run))
    return 1 if stats["failed_again"] else 0
