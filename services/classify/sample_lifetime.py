"""A bounded lifetime for the samples of resolved incidents on the compacted `incidents` topic.

`incidents` is compacted: the latest record of each incident is kept for ever, and with it the evidence's
sample mention ids and URLs (a URL names its author). Those samples are what responders and post-incident
reviews read while an incident is fresh; once it has been resolved for `incident_sample_retention_seconds`
(`TRIAGE_INCIDENT_SAMPLE_RETENTION_SECONDS`, 14 d by default) the incident is re-published without them, so
compaction drops the copy that had them. Counts, terms, languages and reasons (no personal data) stay.

Every classify replica follows `incidents` whole (`SampleLifetime.observe`); only the replica that owns the
incident's brand on the crisis input re-publishes it (`owns`), the writer of that brand's incidents. The
re-published record carries no samples, so following it removes the incident from what is held: a restart
reads the topic again and finds only the ones still due.

Example:

    lifetime = SampleLifetime(keep_seconds=14 * 86400)
    lifetime.observe(incident_bytes)                       # each record of `incidents`
    for inc in lifetime.due(now, owns=lambda brand: True):
        ...                                                # produce it keyed by inc.id
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from services.classify import metrics as cm
from services.common import codec, topics
from services.common.codec import pb
from services.common.faust_app import retry_until_done
from services.common.follower import TopicFollower
from services.common.logging import get_logger
from services.common.timeutil import epoch

log = get_logger("classify.sample_lifetime")

SWEEP_SECONDS = 60.0   # how often due incidents are looked for (the lifetime is days)
DROPPED_REASON = "samples dropped {days:g} d after the incident was resolved (retention)"


def without_any_samples(incident: pb.Incident, keep_seconds: float) -> pb.Incident:
    """A copy of `incident` with no sample ids or URLs, saying why in its reasons."""
    out = pb.Incident()
    out.CopyFrom(incident)
    del out.evidence.sample_mention_ids[:]
    del out.evidence.sample_urls[:]
    out.reasons.append(DROPPED_REASON.format(days=round(keep_seconds / 86400, 2)))
    return out


class SampleLifetime:
    """The resolved incidents whose samples are still on the topic, and when each is due."""

    def __init__(self, keep_seconds: float):
        self.keep = keep_seconds
        self._held: dict[str, pb.Incident] = {}

    def __len__(self) -> int:
        return len(self._held)

    def observe(self, raw: bytes | None, key: bytes | None = None) -> None:
        """One record of `incidents` (a tombstone forgets its key)."""
        if not raw:
            if key:
                self._held.pop(key.decode(errors="replace"), None)
            return
        try:
            inc = codec.decode(raw, pb.Incident)
        except Exception as exc:   # the router dead-letters it; here it only cannot be held
            log.warning("incident_undecodable", error=type(exc).__name__)
            return
        ev = inc.evidence
        if inc.state == pb.RESOLVED and (ev.sample_mention_ids or ev.sample_urls):
            self._held[inc.id] = inc
        else:
            self._held.pop(inc.id, None)   # open again, or already without samples

    def due(self, now: float, owns: Callable[[str], bool]) -> list[pb.Incident]:
        """The incidents of owned brands resolved `keep_seconds` ago or more, without their samples."""
        out = []
        for inc in self._held.values():
            resolved = epoch(inc.resolved_at) or epoch(inc.updated_at)
            if now - resolved >= self.keep and owns(inc.brand):
                out.append(without_any_samples(inc, self.keep))
        return out


async def publish_due(producer: AIOKafkaProducer, lifetime: SampleLifetime, now: float,
                      owns: Callable[[str], bool]) -> list[str]:
    """Re-publish the due incidents without samples (acked when this returns); returns their ids. The
    follower sees the new records and stops holding them."""
    due = lifetime.due(now, owns)
    futures: list[Any] = [await producer.send(topics.INCIDENTS, codec.encode(inc), key=inc.id.encode())
                          for inc in due]
    await asyncio.gather(*futures)
    for inc in due:
        lifetime.observe(codec.encode(inc))
    if due:
        cm.INCIDENT_SAMPLES_DROPPED.inc(len(due))
        log.info("incident_samples_dropped", incidents=len(due), keep_days=round(lifetime.keep / 86400, 2))
    return [inc.id for inc in due]


def attach_sample_lifetime(app: Any, worker: Any, settings: Any, owns: Callable[[str], bool]) -> SampleLifetime:
    """Follow `incidents` on a Faust app and re-publish due ones every `SWEEP_SECONDS` (`owns`: the brands this
    replica's crisis stage holds). `settings` is the worker's ClassifySettings."""
    lifetime = SampleLifetime(settings.incident_sample_retention_seconds)
    follower = TopicFollower(settings.kafka_bootstrap, topics.INCIDENTS, lambda k, v: lifetime.observe(v, k),
                             client_id=f"{settings.kafka_client_id_prefix}-classify-incidents",
                             client_options=settings.kafka_client_options())
    following = asyncio.Event()

    @app.task
    async def follow_incidents() -> None:
        await retry_until_done(lambda _: follower.start(), None, what="incidents follower")
        following.set()

    @app.timer(interval=SWEEP_SECONDS)
    async def drop_incident_samples() -> None:
        if following.is_set():
            await publish_due(await worker.start_producer(), lifetime, time.time(), owns)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _stop_following(_: Any, **__: Any) -> None:
        await follower.stop()

    return lifetime
