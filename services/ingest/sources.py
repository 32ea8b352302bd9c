"""Which pull connectors this ingest process runs, from its settings (none unless configured)."""

from __future__ import annotations

from typing import Any

from services.ingest.config import IngestSettings
from services.ingest.connector import StreamConnector
from services.ingest.ingestor import MentionIngestor
from services.ingest.jetstream import JetstreamConnector
from services.ingest.mastodon import MastodonConnector
from services.ingest.polling import Poller


def build_connectors(settings: IngestSettings, ingestor: MentionIngestor) -> list[StreamConnector]:
    common: dict[str, Any] = {"filter_brands": settings.stream_filter_brands,
                              "rewind_seconds": settings.connector_rewind_seconds}
    out: list[StreamConnector] = []
    if settings.jetstream_url:
        out.append(JetstreamConnector(ingestor, settings.jetstream_url,
                                      collections=tuple(settings.jetstream_collections), **common))
    if settings.mastodon_url:
        out.append(MastodonConnector(ingestor, settings.mastodon_url, stream=settings.mastodon_stream,
                                     tag=settings.mastodon_tag, list_id=settings.mastodon_list,
                                     token=settings.mastodon_token.get_secret_value(), **common))
    for poll in settings.polls:
        out.append(Poller(ingestor, poll.url, poll.kind, name=f"poll-{poll.name}",
                          interval_seconds=poll.interval_seconds, **common))
    return out
