"""`triage forget --author HANDLE --source x` / `triage forget --mention x:1850`: erase a person's posts.

Reads every topic that holds posts (`mentions.raw`, `mentions.scored`, the queue topics, `mentions.dlq`,
`feedback`, `responses`, `incidents`) from the beginning, finds the subject's mentions, then
1. publishes a `MentionDeleted` (reason erasure) per mention found, and one for the author, to
   `mentions.raw` keyed like the mention: classify, the router, the queue topics' consumers and the console
   remove them (services/common/deletions.py);
2. tombstones the compacted keys of those mentions: the router's state (`sla:<mention id>`: it held the
   scored post) and `claims` (keyed by mention id);
3. re-publishes the incidents that show one of them as a sample, without it;
4. prints where copies remain until their topic's retention drops them, and when;
5. writes the audit record (services/common/erasure.py: no personal data) to `erasures` and prints it.
Runs with an operator's credential (it reads every topic), like `triage tail`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer

from services.common import codec, erasure, topics
from services.common.codec import pb
from services.common.deletions import deletion_headers, deletion_key, is_author_deletion, is_deletion
from services.common.kafka import ensure_topics, make_producer
from services.common.settings import ServiceSettings

MENTION_TYPES = {"triage.v1.Mention": pb.Mention, "triage.v1.ScoredMention": pb.ScoredMention,
                 "triage.v1.RoutedMention": pb.RoutedMention}


def _mention_of(msg: Any) -> Any:
    if isinstance(msg, pb.RoutedMention):
        return msg.scored.mention
    if isinstance(msg, pb.ScoredMention):
        return msg.mention
    return msg


class Scan:
    """What the topics hold of the subject: findings per place, and the incidents' latest versions."""

    def __init__(self, subject: erasure.Subject):
        self.subject = subject
        self.findings: dict[str, erasure.Finding] = {}
        self.incidents: dict[str, pb.Incident] = {}
        self.linked: list[tuple[str, str, float]] = []   # (place, mention id, at) of feedback/responses

    def found(self, place: str, mention_id: str, at: float) -> None:
        self.findings.setdefault(place, erasure.Finding(place)).add(mention_id, at)

    def mention_ids(self) -> set[str]:
        return set().union(*(f.mention_ids for f in self.findings.values())) if self.findings else set()

    def fold(self, topic: str, value: bytes | None, headers: Any, at: float) -> None:
        if value is None or is_deletion(headers):
            return
        if topic == topics.INCIDENTS:
            inc = codec.decode(value, pb.Incident)
            self.incidents[inc.id] = inc
            return
        if topic in (topics.FEEDBACK, topics.RESPONSES):
            msg = codec.decode(value, codec.type_for_topic(topic))
            self.linked.append((topic, msg.mention_id, at))  # type: ignore[attr-defined]
            return
        if topic == topics.MENTIONS_DLQ:
            dl = codec.decode(value, pb.DeadLetter)
            cls = MENTION_TYPES.get(dl.original_type)
            if cls is not None:
                mention = _mention_of(codec.decode(dl.original, cls))
                if self.subject.matches(mention):
                    self.found(topic, mention.mention_id, at)
            elif self._in_raw_bytes(dl.original):
                self.found(topic, f"dlq-item@{int(at)}", at)
            return
        mention = _mention_of(codec.decode(value, codec.type_for_topic(topic)))
        if self.subject.matches(mention):
            self.found(topic, mention.mention_id, at)

    def _in_raw_bytes(self, original: bytes) -> bool:
        """An ingest dead letter is the platform's item as sent (JSON): look for the handle or post id in it."""
        text = original.decode("utf-8", "replace").lower()
        if self.subject.mention_id:
            return f'"{self.subject.mention_id.split(":", 1)[1].lower()}"' in text
        return f'"{self.subject.handle.lower()}"' in text or f'"@{self.subject.handle.lower()}"' in text

    def finish(self) -> None:
        ids = self.mention_ids()
        for place, mention_id, at in self.linked:
            if mention_id in ids:
                self.found(place, mention_id, at)


async def read_all(bootstrap: str, names: Iterable[str], scan: Scan, options: dict[str, Any]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **options)
    await consumer.start()
    try:
        wanted = set(names) & await consumer.topics()
        if not wanted:
            return
        consumer.subscribe(sorted(wanted))  # no group: every partition of them is assigned
        for _ in range(300):  # up to 30 s for the partitions' metadata
            if {tp.topic for tp in consumer.assignment()} == wanted:
                break
            await asyncio.sleep(0.1)
        else:
            raise TimeoutError(f"no partition metadata for {sorted(wanted)}")
        tps = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=1000)
            for tp, records in batch.items():
                for r in records:
                    try:
                        scan.fold(tp.topic, r.value, r.headers, r.timestamp / 1000.0)
                    except Exception as exc:   # an undecodable record is not the subject's; say so, go on
                        print(f"forget: skipped an undecodable record of {tp.topic} ({type(exc).__name__})",
                              file=sys.stderr)
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()


async def forget(subject: erasure.Subject, requested_by: str, settings: ServiceSettings,
                 router_app_id: str = "triage-router", out: Any = None) -> pb.ErasureRecord:
    out = out or sys.stdout
    options = settings.kafka_client_options()
    now = time.time()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, **options)
    await consumer.start()
    try:
        queue_topics = {t for t in await consumer.topics() if t.startswith(topics.QUEUE_PREFIX)}
    finally:
        await consumer.stop()
    scan = Scan(subject)
    await read_all(settings.kafka_bootstrap, [topics.MENTIONS_RAW, topics.MENTIONS_SCORED, topics.MENTIONS_DLQ,
                                              topics.FEEDBACK, topics.RESPONSES, topics.INCIDENTS, *queue_topics],
                   scan, options)
    scan.finish()
    ids = sorted(m for m in scan.mention_ids() if ":" in m and not m.startswith("dlq-item@"))
    deletions = [erasure.deletion_for(mention_id=m, requested_by=requested_by, now=now) for m in ids]
    if (author := subject.deletion(requested_by, now)) is not None:
        deletions.append(author)
    state = topics.router_state_spec(router_app_id).name
    republish = [inc for inc in (erasure.without_samples(i, set(ids)) for i in scan.incidents.values()) if inc]
    await ensure_topics(settings.kafka_bootstrap, topics.specs_named(topics.ERASURES),
                        settings.topic_replication_factor, client_options=options)
    producer = make_producer(settings.kafka_bootstrap, f"{settings.kafka_client_id_prefix}-forget", **options)
    await producer.start()
    try:
        futures = []
        for d in deletions:
            key, body = deletion_key(d).encode(), codec.encode(d)
            parts = sorted(await producer.partitions_for(topics.MENTIONS_RAW)) if is_author_deletion(d) else [None]
            for p in parts:
                futures.append(await producer.send(topics.MENTIONS_RAW, body, key=key, partition=p,
                                                   headers=deletion_headers()))
        # The state topic's own count (TRIAGE_ROUTER_PARTITIONS on the router, grown by `triage topics grow`):
        # a tombstone must land in the partition the router hashes the mention id to.
        state_partitions = len(await producer.partitions_for(state)) if ids else 0
        for m in ids:
            futures.append(await producer.send(state, None, key=f"sla:{m}".encode(),
                                               partition=topics.partition_for(m, state_partitions)))
            futures.append(await producer.send(topics.CLAIMS, None, key=m.encode()))  # keyed by the mention
        for inc in republish:
            futures.append(await producer.send(topics.INCIDENTS, codec.encode(inc), key=inc.id.encode()))
        record = erasure.plan(subject, scan.findings.values(), requested_by, now, notices=len(deletions),
                              tombstones={state: len(ids), topics.CLAIMS: len(ids)} if ids else {},
                              republished=len(republish))
        futures.append(await producer.send(topics.ERASURES, codec.encode(record), key=record.id.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    for line in record.actions:
        print(f"done: {line}", file=out)
    for line in record.expiring:
        print(f"expires: {line}", file=out)
    print(codec.to_json(record), file=out)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage forget", description=__doc__.split("\n")[0])
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--author", help="the author's handle on --source")
    who.add_argument("--mention", help="one mention id, e.g. x:1850")
    parser.add_argument("--source", default="", help="the author's platform (x, reddit, mastodon, ...)")
    parser.add_argument("--by", default=os.environ.get("TRIAGE_OPERATOR") or getpass.getuser(),
                        help="who asked for it to be done (recorded in the audit record)")
    parser.add_argument("--router-app-id", default=os.environ.get("TRIAGE_ROUTER_APP_ID", "triage-router"))
    args = parser.parse_args(argv)
    try:
        subject = (erasure.Subject.mention(args.mention) if args.mention
                   else erasure.Subject.author(args.source, args.author))
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(forget(subject, args.by, ServiceSettings(), args.router_app_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
