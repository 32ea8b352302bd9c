"""Ingest settings: secrets never appear in reprs/logs; connectors are off unless configured."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.ingest.config import IngestSettings
from services.ingest.dedupe import DedupeWindow
from services.ingest.ingestor import MentionIngestor
from services.ingest.sources import build_connectors


def test_secrets_are_hidden_in_reprs(monkeypatch):
    monkeypatch.setenv("TRIAGE_API_TOKENS", '["tok-123456"]')
    monkeypatch.setenv("TRIAGE_WEBHOOK_SECRET", "whsec-abcdef")
    monkeypatch.setenv("TRIAGE_X_CONSUMER_SECRET", "xsec-abcdef")
    s = IngestSettings()
    assert s.api_tokens[0].get_secret_value() == "tok-123456"
    text = repr(s) + str(s.model_dump())
    for secret in ("tok-123456", "whsec-abcdef", "xsec-abcdef"):
        assert secret not in text


def test_auth_and_rate_limits_are_off_by_default():
    s = IngestSettings()
    assert s.api_tokens == [] and s.rate_limit_per_second == 0


def test_connectors_only_when_configured(monkeypatch):
    s = IngestSettings()
    ingestor = MentionIngestor(None, s, DedupeWindow(60, 10))
    assert build_connectors(s, ingestor) == []
    monkeypatch.setenv("TRIAGE_JETSTREAM_URL", "wss://jetstream2.us-east.bsky.network/subscribe")
    monkeypatch.setenv("TRIAGE_MASTODON_URL", "https://mastodon.social")
    monkeypatch.setenv("TRIAGE_POLLS", '[{"name": "status", "kind": "feed", "url": "https://s.example/feed.xml",'
                                       ' "interval_seconds": 120}]')
    s = IngestSettings()
    names = [c.name for c in build_connectors(s, MentionIngestor(None, s, DedupeWindow(60, 10)))]
    assert names == ["jetstream", "mastodon", "poll-status"]


def test_bad_poll_config_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("TRIAGE_POLLS", '[{"name": "x", "kind": "gopher", "url": "gopher://x"}]')
    with pytest.raises(ValidationError):
        IngestSettings()
