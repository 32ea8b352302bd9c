"""Ingest metrics (see docs in README: Metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS

HTTP_REQUESTS = Counter(
    "triage_ingest_http_requests_total", "HTTP requests by endpoint and status code", ["endpoint", "code"]
)
MENTIONS_ACCEPTED = Counter(
    "triage_ingest_mentions_accepted_total", "Mentions acknowledged by Kafka and answered 202", ["source"]
)
MENTIONS_DUPLICATE = Counter(
    "triage_ingest_mentions_duplicate_total", "Mentions dropped as redeliveries within the dedupe window", ["source"]
)
MENTIONS_REJECTED = Counter(
    "triage_ingest_mentions_rejected_total", "Mentions rejected with a 4xx, by reason class", ["reason"]
)
MENTIONS_TRUNCATED = Counter("triage_ingest_mentions_truncated_total", "Mentions whose text was cut to the limit")
PRODUCE_SECONDS = Histogram(
    "triage_ingest_produce_seconds", "Time from request parsed to all Kafka acks", buckets=LATENCY_BUCKETS
)
KAFKA_UP = Gauge("triage_ingest_kafka_up", "1 when the last produce or readiness check reached Kafka")
DEDUPE_ENTRIES = Gauge("triage_ingest_dedupe_entries", "Keys held by the dedupe window")
