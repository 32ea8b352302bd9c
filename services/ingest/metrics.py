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
PRODUCER_REPLACED = Counter("triage_ingest_producer_replaced_total",
                            "Kafka producers replaced by a new one because they could not deliver while Kafka answered")
DEDUPE_ENTRIES = Gauge("triage_ingest_dedupe_entries", "Keys held by the dedupe window")
DEDUPE_BYTES = Gauge("triage_ingest_dedupe_bytes", "Approximate memory held by the dedupe window's keys")
SERVER_FAULTS = Counter(
    "triage_ingest_server_faults_total", "Unexpected exceptions (answered 500 or dead-lettered), by where and type",
    ["where", "error"],
)

AUTH_REJECTED = Counter(
    "triage_ingest_auth_rejected_total",
    "Requests answered 401 (bad/missing bearer token or webhook signature), never produced",
    ["endpoint", "reason"],
)
CONNECTIONS_OPEN = Gauge("triage_ingest_connections_open", "Open HTTP connections (refused ones not counted)")
CONNECTIONS_REFUSED = Counter(
    "triage_ingest_connections_refused_total", "Connections answered 429 and closed at once, by reason", ["reason"]
)
RATE_LIMITED = Counter("triage_ingest_rate_limited_total", "Requests answered 429", ["endpoint"])
WEBHOOK_EVENTS = Counter(
    "triage_ingest_webhook_events_total", "Items in signed webhook deliveries, by outcome", ["source", "outcome"]
)
BRAND_MATCHES = Counter("triage_ingest_brand_matches_total", "Mentions tagged with a tracked brand", ["brand"])

CONNECTOR_CONNECTED = Gauge(
    "triage_ingest_connector_connected", "1 while a stream/poll connector is connected", ["connector"]
)
CONNECTOR_LAG = Gauge(
    "triage_ingest_connector_lag_seconds", "How far the connector's cursor is behind the source's clock", ["connector"]
)
CONNECTOR_LAST_EVENT = Gauge(
    "triage_ingest_connector_last_event_timestamp_seconds", "Unix time of the last event received", ["connector"]
)
CONNECTOR_EVENTS = Counter(
    "triage_ingest_connector_events_total", "Events a connector received, by outcome", ["connector", "outcome"]
)
CONNECTOR_RECONNECTS = Counter(
    "triage_ingest_connector_reconnects_total", "Connection attempts after a failure", ["connector"]
)
DELETIONS_ACCEPTED = Counter(
    "triage_ingest_deletions_accepted_total", "MentionDeleted records produced (platform deletions, erasures)",
    ["source", "reason"],
)
