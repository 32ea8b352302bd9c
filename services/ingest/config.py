"""Ingest settings (env prefix `TRIAGE_`, e.g. `TRIAGE_INGEST_PORT=8080`)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    ingest_host: str = Field("127.0.0.1", description="address the HTTP API binds")
    ingest_port: int = Field(8080, description="port of the HTTP API (and its /metrics)")
    max_body_bytes: int = Field(4 * 1024 * 1024, description="larger request bodies get 413")
    max_batch: int = Field(2000, description="max mentions in one NDJSON/array request (413 above)")
    max_text_chars: int = Field(10_000, description="longer texts are truncated and flagged")
    max_raw_payload_bytes: int = Field(64 * 1024, description="raw payload kept for audit, cut above this")
    dedupe_window_seconds: float = Field(3600.0, description="a (source, id, engagement) seen within this is a dup")
    dedupe_max_entries: int = Field(1_000_000, description="bound on the dedupe memory (oldest evicted first)")
    produce_timeout_seconds: float = Field(15.0, description="wait this long for Kafka acks before answering 503")
    retry_after_seconds: int = Field(5, description="Retry-After sent with 503 when Kafka is unavailable")
    future_skew_seconds: float = Field(300.0, description="created_at further in the future than this is 422")
