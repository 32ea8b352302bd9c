"""The ingest core: validated mentions into acknowledged Kafka records, independent of any request.

Every source (the HTTP API in `app.py`, the signed webhooks in `webhooks.py`, the stream and
poll connectors) goes through `MentionIngestor`: one path into Kafka, one dedupe window, one
brand matcher. Start-up does not need Kafka: the producer is (re)connected in the background
and `kafka_up` is clear until it is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from services.common import codec, topics
from services.common.deadletter import dead_letter
from services.common.deletions import deletion_headers, deletion_key, is_author_deletion
from services.common.errors import TriageError
from services.common.kafka import make_producer, producer_failure, retire_producer, wait_for_kafka
from services.common.logging import get_logger
from services.common.metrics import MESSAGES_OUT
from services.ingest import metrics as m
from services.ingest.adapters import Candidate
from services.ingest.brands import DEFAULT_BRANDS_FILE, BrandMatcher, load_brands
from services.ingest.config import IngestSettings
from services.ingest.dedupe import DedupeWindow
from services.ingest.faults import FAULTS
from services.ingest.normalize import Limits, MentionError, dedupe_key, normalize

log = get_logger("ingest")


NOT_ACCEPTED = "not_accepted"
UNKNOWN = "unknown"


class KafkaUnavailable(TriageError, RuntimeError):
    """Kafka is down or did not acknowledge in time.

    `outcome` is what the caller may tell its client: `NOT_ACCEPTED` when nothing of the attempt reached
    Kafka (it was known to be down, or every send failed), `UNKNOWN` when records were handed to the
    producer and may still be written (an ack that came late). Either way a retry is safe: mentions
    are deduplicated, so whatever did land comes back as a duplicate, never twice on the topic.
    """

    def __init__(self, reason: str, futures: list[asyncio.Future[Any]] | None = None,
                 outcome: str = NOT_ACCEPTED):
        super().__init__(reason)
        self.futures = futures or []  # the send futures of the failed attempt (see send_records)
        self.outcome = outcome


class MentionIngestor:
    """The request-independent core: turns validated mentions into acknowledged Kafka records.

    Every source (the HTTP API, webhooks, stream and poll connectors, `triage replay`) goes through it.

    Example:

        from services.ingest.adapters import Candidate
        from services.ingest.config import IngestSettings
        from services.ingest.dedupe import DedupeWindow
        from services.ingest.ingestor import MentionIngestor

        settings = IngestSettings()
        ingestor = MentionIngestor(None, settings, DedupeWindow(settings.dedupe_window_seconds,
                                                                settings.dedupe_max_entries))
        await ingestor.connect()                          # idempotent producer, acks=all
        mentions, errors = ingestor.build([Candidate(obj={"source": "x", "external_id": "1850",
                                                          "text": "app down"}, raw=b"...")])
        accepted, duplicates = await ingestor.produce(mentions)   # after Kafka acknowledged them
        await ingestor.close()
    """

    def __init__(self, producer: AIOKafkaProducer | None, settings: IngestSettings, dedupe: DedupeWindow,
                 matcher: BrandMatcher | None = None):
        # Created by `connect()` (aiokafka needs a running loop) unless a started one is injected.
        self.producer: AIOKafkaProducer = producer  # type: ignore[assignment]
        self._owns_producer = producer is None
        self.settings = settings
        self.dedupe = dedupe
        self.matcher = matcher or BrandMatcher([])
        self.limits = Limits(settings.max_text_chars, settings.max_raw_payload_bytes, settings.future_skew_seconds)
        self.kafka_up = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._unsettled: dict[str, float] = {}  # dedupe keys whose failed attempt may still be delivered -> since
        self._attempt_ended = asyncio.Condition()  # notified whenever a produce attempt settles
        self._settling: set[asyncio.Task[None]] = set()
        self._started = producer is not None
        # A producer that cannot deliver any more while Kafka answers is replaced (`_producer_broken`): the reason
        # once known; when Kafka was last marked up, and how many periods of it in a row (since a send last
        # succeeded) ended in a failed send, the first at `_failed_first`.
        self._broken: str | None = None
        self._up_since = 0.0
        self._up_period = 0
        self._failed_periods: set[int] = set()
        self._failed_first = 0.0
        self._retiring: set[asyncio.Task[None]] = set()

    # -- Kafka link ---------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Start the background task that (re)connects to Kafka; returns at once."""
        if self._started:
            self._mark(True)
        else:
            # One attempt now so a healthy start is ready at once; a failure is retried in the background.
            try:
                await asyncio.wait_for(self._start_producer(), timeout=self.settings.produce_timeout_seconds)
            except Exception as exc:
                self._mark(False)
                log.warning("kafka_unreachable_at_start", error=type(exc).__name__)
        self._supervisor = asyncio.create_task(self._supervise(), name="ingest-kafka-supervisor")

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                pass
        if self._started and self._owns_producer:
            try:
                await asyncio.wait_for(self.producer.stop(), timeout=10)
                await asyncio.gather(*self._settling, return_exceptions=True)
            except Exception as exc:
                log.warning("producer_stop_failed", error=type(exc).__name__)
        await asyncio.gather(*self._retiring, return_exceptions=True)

    def mark_down(self) -> None:
        """Kafka is known to be unreachable (a failed readiness probe): pushes answer 503 until it is back."""
        self._mark(False)

    def _mark(self, up: bool) -> None:
        if up and not self.kafka_up.is_set():
            log.info("kafka_up", kafka=self.settings.kafka_bootstrap)
            self._up_since, self._up_period = asyncio.get_running_loop().time(), self._up_period + 1
        elif not up and self.kafka_up.is_set():
            log.warning("kafka_down", kafka=self.settings.kafka_bootstrap)
        (self.kafka_up.set if up else self.kafka_up.clear)()
        m.KAFKA_UP.set(1 if up else 0)

    async def _supervise(self) -> None:
        interval = self.settings.kafka_probe_interval_seconds
        backoff = interval
        unreachable_since: float | None = None  # the producer's probes have failed since
        loop = asyncio.get_running_loop()
        while True:
            try:
                if not self._started:
                    await self._start_producer()
                elif self._owns_producer and (reason := self._producer_broken()) is not None:
                    await self._replace_producer(reason)
                elif not self.kafka_up.is_set():
                    await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout=3)
                    self._mark(True)
                backoff, unreachable_since = interval, None
                await asyncio.sleep(interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._mark(False)
                log.info("kafka_unreachable", error=type(exc).__name__, retry_in=round(backoff, 1))
                now = loop.time()
                if unreachable_since is None or not self._started:
                    unreachable_since = now
                elif self._owns_producer and now - unreachable_since >= self.settings.producer_stuck_seconds:
                    # Long unreachable for the producer's own client: a real outage, or a client that lost its way.
                    unreachable_since = now  # (asked again after as long)
                    if await self._kafka_answers_a_new_client():
                        await self._replace_producer("Kafka answers a new client but not the producer's")
                        backoff = interval
                        continue
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 15.0)

    async def _kafka_answers_a_new_client(self) -> bool:
        try:
            await wait_for_kafka(self.settings.kafka_bootstrap, timeout=3,
                                 client_options=self.settings.kafka_client_options())
        except Exception:
            return False
        return True

    def _producer_broken(self) -> str | None:
        """Why the producer must be replaced, or None. Besides what `producer_failure` recognises (a dead sender, a
        rejected producer state), it is taken for stuck when sends failed right after each of `producer_stuck_after`
        successive times Kafka was found up again, over at least `producer_stuck_seconds`, or an attempt has waited
        that long for its ack while Kafka is up (aiokafka retries an idempotent batch for ever). `_supervise` also
        replaces one whose own client has not reached Kafka for that long while a new client does."""
        if self._broken is None:
            self._broken = producer_failure(self.producer)
        if self._broken is not None:
            return self._broken
        limit = self.settings.producer_stuck_seconds
        now = asyncio.get_running_loop().time()
        failed = len(self._failed_periods)
        if failed >= self.settings.producer_stuck_after and now - self._failed_first >= limit:
            return (f"sends failed each time Kafka answered again, {failed} times in a row over "
                    f"{now - self._failed_first:.0f} s")
        if self.kafka_up.is_set() and self._unsettled:
            waited = now - max(min(self._unsettled.values()), self._up_since)
            if waited >= limit:
                return f"an attempt has waited {waited:.0f} s for its ack while Kafka answers"
        return None

    async def _replace_producer(self, reason: str) -> None:
        """A new producer (a new producer id) for one that cannot deliver any more. The old one is retired in the
        background: what it still holds is delivered within the produce timeout or failed, so the dedupe keys of its
        unsettled attempts are released and their retries go out on the new producer (which, for a record the old
        one did write before its ack was lost, can mean a second copy on the topic; the router's ledger still puts
        each mention version on its queue once)."""
        old = self.producer
        log.warning("ingest_producer_replaced", reason=reason)
        m.PRODUCER_REPLACED.inc()
        self._mark(False)
        self._started, self._broken = False, None
        self._failed_periods.clear()
        task = asyncio.create_task(retire_producer(old, self.settings.produce_timeout_seconds), name="ingest-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        await self._start_producer()

    async def _start_producer(self) -> None:
        producer = make_producer(self.settings.kafka_bootstrap, f"{self.settings.kafka_client_id_prefix}-ingest",
                                 **self.settings.kafka_client_options())
        try:
            await producer.start()
        except BaseException:
            await asyncio.wait_for(producer.stop(), timeout=5)
            raise
        self.producer, self._started = producer, True
        log.info("ingest_kafka_connected", kafka=self.settings.kafka_bootstrap)
        self._mark(True)

    async def send_records(self, records: Sequence[tuple[Any, ...]]) -> None:
        """Send and wait for every ack; raises KafkaUnavailable (fast when Kafka is known to be down).

        On failure the exception carries the send futures: records already handed to the producer
        may still be delivered after the timeout (aiokafka keeps retrying them), so the caller must
        not treat them as lost, nor as delivered, until those futures settle.
        """
        if not records:
            return
        if not self.kafka_up.is_set():
            raise KafkaUnavailable("Kafka is unreachable")
        loop = asyncio.get_running_loop()
        producer, period = self.producer, self._up_period
        deadline = loop.time() + self.settings.produce_timeout_seconds
        futures: list[asyncio.Future[Any]] = []
        try:
            for record in records:
                # (topic, value, key) or (topic, value, key, headers, partition): deletions carry a type header.
                topic, value, key = record[:3]
                extra = {"headers": record[3], "partition": record[4]} if len(record) > 3 else {}
                # A send that is cancelled here (waiting for metadata or buffer space) was never enqueued.
                futures.append(await asyncio.wait_for(producer.send(topic, value=value, key=key, **extra),
                                                      timeout=max(0.01, deadline - loop.time())))
            # asyncio.wait, not wait_for(gather): a timeout must not cancel the futures, whose outcome we need.
            _done, pending = await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
            if pending:
                raise TimeoutError(f"{len(pending)} of {len(records)} records not acknowledged in time")
            for fut in futures:
                if fut.exception() is not None:
                    raise fut.exception()  # type: ignore[misc]
        except Exception as exc:
            self._send_failed(producer, period, exc)
            raise KafkaUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}", futures) from exc
        self._send_succeeded(producer)

    def _send_succeeded(self, producer: AIOKafkaProducer) -> None:
        """A send on `producer` was acknowledged: the run of failed up periods (`_producer_broken`) ends. Not for a
        producer replaced meanwhile: a late ack from the retiring one says nothing of the new one."""
        if producer is self.producer:
            self._failed_periods.clear()

    def _send_failed(self, producer: AIOKafkaProducer, period: int, exc: BaseException) -> None:
        """A send on `producer`, begun in up period `period`, failed: Kafka is marked down, and the failure counts
        towards the producer's replacement (`_producer_broken`). Not for a producer replaced meanwhile: its failures
        say nothing of the new one."""
        if producer is not self.producer:
            return
        if not self._failed_periods:
            self._failed_first = asyncio.get_running_loop().time()
        self._failed_periods.add(period)
        self._broken = self._broken or producer_failure(producer, exc)
        self._mark(False)

    def _settle_later(self, keys: list[str], futures: list[asyncio.Future[Any]]) -> None:
        """After a failed attempt: a key is committed if its record was delivered after all, else released."""
        unsettled: dict[str, asyncio.Future[Any]] = {}
        futures = futures[: len(keys)]
        for i, key in enumerate(keys):
            fut = futures[i] if i < len(futures) else None
            if fut is None or (fut.done() and (fut.cancelled() or fut.exception() is not None)):
                self.dedupe.release(key)  # never enqueued, or failed: a retry must produce it
            elif fut.done():
                self.dedupe.commit(key)  # it is on Kafka: a retry is a duplicate
            else:
                unsettled[key] = fut
        if not unsettled:
            return
        since = asyncio.get_running_loop().time()
        self._unsettled.update(dict.fromkeys(unsettled, since))

        async def settle() -> None:
            try:
                await asyncio.wait(list(unsettled.values()))
            finally:
                for key, fut in unsettled.items():
                    ok = fut.done() and not fut.cancelled() and fut.exception() is None
                    (self.dedupe.commit if ok else self.dedupe.release)(key)
                    self._unsettled.pop(key, None)
                await self._notify_attempt_ended()

        task = asyncio.create_task(settle(), name="ingest-settle")
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    # -- the path every source takes ----------------------------------------------------------------

    def build(self, candidates: Iterable[Candidate], now: float | None = None,
              ) -> tuple[list[Any], list[tuple[Candidate, MentionError]]]:
        """Normalise and brand-tag candidates: (mentions, [(candidate, error)])."""
        now = time.time() if now is None else now
        mentions, errors = [], []
        for cand in candidates:
            if cand.error is not None:
                errors.append((cand, MentionError("$", cand.error)))
                continue
            try:
                mentions.append(self.tag(normalize(cand.obj, cand.raw, self.limits, now=now)))
            except MentionError as exc:
                errors.append((cand, exc))
            except (ValueError, TypeError, OverflowError, RecursionError) as exc:
                # A fault of ours on one item: that item is refused with a reason, the rest go on.
                FAULTS.report("normalize", exc)
                errors.append((cand, MentionError("$", f"could not be normalised ({type(exc).__name__})")))
        return mentions, errors

    def tag(self, mention: Any) -> Any:
        """Adds the tracked brands found in the text to `mention.brands` (keeps the ones the sender gave)."""
        if self.matcher:
            found = self.matcher.match(mention.text).brands
            known = set(mention.brands)
            for brand in found:
                m.BRAND_MATCHES.labels(brand).inc()
                if brand not in known:
                    mention.brands.append(brand)
        return mention

    async def _notify_attempt_ended(self) -> None:
        async with self._attempt_ended:
            self._attempt_ended.notify_all()

    async def _wait_for_other_attempts(self, keys: Iterable[str]) -> None:
        """Waits (up to the produce timeout) while another request is writing one of `keys`.

        A key reserved by a concurrent request is not yet on Kafka: calling it a duplicate now could
        tell this client "already stored" for a record whose write then fails. Nothing is reserved
        while waiting, so two requests cannot wait on each other.
        """
        wanted = set(keys)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.produce_timeout_seconds
        async with self._attempt_ended:
            while busy := [k for k in wanted if self.dedupe.in_flight(k) and k not in self._unsettled]:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise KafkaUnavailable(f"{len(busy)} mention(s) still being written by an earlier request",
                                           outcome=UNKNOWN)
                try:
                    await asyncio.wait_for(self._attempt_ended.wait(), remaining)
                except TimeoutError:
                    continue

    async def produce(self, mentions: list[Any],
                      dead_letters: list[tuple[bytes, str]] | None = None) -> tuple[list[str], list[str]]:
        """Produce new mentions (and DLQ records); returns (accepted ids, duplicate ids).

        A duplicate is a mention already acknowledged by Kafka (within the dedupe window), never a
        rejection. Raises KafkaUnavailable when Kafka did not acknowledge: with outcome NOT_ACCEPTED
        nothing was written, with UNKNOWN some records may land later (and are then duplicates of
        the client's retry); keys count as seen only once their records are acknowledged.
        """
        await self._wait_for_other_attempts(dedupe_key(mn) for mn in mentions)
        try:
            return await self._produce_reserved(mentions, dead_letters)
        finally:
            await self._notify_attempt_ended()

    async def _produce_reserved(self, mentions: list[Any], dead_letters: list[tuple[bytes, str]] | None,
                                ) -> tuple[list[str], list[str]]:
        fresh: list[Any] = []
        dups: list[str] = []
        keys: list[str] = []
        for mention in mentions:
            key = dedupe_key(mention)
            if key in self._unsettled:
                # An earlier attempt may still land: answering "duplicate" could lose it, producing again
                # could duplicate it. Ask for a retry until that attempt settles.
                for k in keys:
                    self.dedupe.release(k)
                raise KafkaUnavailable("an earlier attempt with this mention is still in flight (its ack is "
                                       "late)", outcome=UNKNOWN)
            if self.dedupe.reserve(key):
                fresh.append(mention)
                keys.append(key)
            else:
                dups.append(mention.mention_id)
                m.MENTIONS_DUPLICATE.labels(codec.pb.Source.Name(mention.source)).inc()
        records: list[tuple[str, bytes, bytes | None]] = [
            (topics.MENTIONS_RAW, codec.encode(mn), mn.mention_id.encode()) for mn in fresh
        ]
        dlq = [dead_letter(raw, "ingest", reason, service="ingest") for raw, reason in dead_letters or []]
        records += [(topics.MENTIONS_DLQ, codec.encode(d), None) for d in dlq]
        try:
            started = time.perf_counter()
            await self.send_records(records)
            m.PRODUCE_SECONDS.observe(time.perf_counter() - started)
        except KafkaUnavailable as exc:
            self._settle_later(keys, exc.futures)
            if any(not (f.done() and (f.cancelled() or f.exception() is not None)) for f in exc.futures):
                exc.outcome = UNKNOWN  # a record was handed over and delivered, or may still be
            raise
        except BaseException:
            for key in keys:
                self.dedupe.release(key)
            raise
        for key in keys:
            self.dedupe.commit(key)
        m.DEDUPE_ENTRIES.set(len(self.dedupe))
        m.DEDUPE_BYTES.set(self.dedupe.size_bytes())
        for mn in fresh:
            m.MENTIONS_ACCEPTED.labels(codec.pb.Source.Name(mn.source)).inc()
        if fresh:
            MESSAGES_OUT.labels("ingest", topics.MENTIONS_RAW).inc(len(fresh))
        if dlq:
            MESSAGES_OUT.labels("ingest", topics.MENTIONS_DLQ).inc(len(dlq))
        return [mn.mention_id for mn in fresh], dups


    async def produce_deletions(self, deletions: list[Any]) -> list[str]:
        """Produce `MentionDeleted` records to `mentions.raw`, keyed like their mention (services/common/deletions.py);
        an author's deletion goes to every partition. Returns their keys; raises KafkaUnavailable (a retry is
        safe: a deletion applied twice removes nothing more)."""
        if not deletions:
            return []
        if not self.kafka_up.is_set():
            raise KafkaUnavailable("Kafka is unreachable")
        records: list[tuple[Any, ...]] = []
        headers = deletion_headers()
        for d in deletions:
            key = deletion_key(d).encode()
            if is_author_deletion(d):
                partitions = sorted(await self.producer.partitions_for(topics.MENTIONS_RAW))
                records += [(topics.MENTIONS_RAW, codec.encode(d), key, headers, p) for p in partitions]
            else:
                records.append((topics.MENTIONS_RAW, codec.encode(d), key, headers, None))
        await self.send_records(records)
        for d in deletions:
            m.DELETIONS_ACCEPTED.labels(codec.pb.Source.Name(d.source), codec.pb.DeletionReason.Name(d.reason)).inc()
        MESSAGES_OUT.labels("ingest", topics.MENTIONS_RAW).inc(len(records))
        return [deletion_key(d) for d in deletions]


def load_matcher(settings: IngestSettings) -> BrandMatcher:
    return BrandMatcher(load_brands(settings.brands_file or DEFAULT_BRANDS_FILE))
