"""Ingest settings (env prefix `TRIAGE_`, e.g. `TRIAGE_INGEST_PORT=8080`).

Secrets (webhook secrets, bearer tokens) are `SecretStr` so they never show in
logs or reprs. Fail closed: `/v1/mentions` answers 401 while no API token is configured, a webhook
answers 401 while its secret is empty, and bound to anything but loopback ingest refuses to start
without `TRIAGE_API_TOKENS` (`missing_credentials`). Only `TRIAGE_INSECURE_DEV=1` (set by `make demo`
and `make up`) opens `/v1/mentions` without a token.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator

from services.common.settings import ServiceSettings, service_env


class PollSource(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    kind: str = Field(pattern=r"^(feed|reddit)$")
    url: str = Field(min_length=8)
    interval_seconds: float = Field(300.0, ge=1.0)


class IngestSettings(ServiceSettings):
    ingest_host: str = Field("127.0.0.1", description="address the HTTP API binds")
    ingest_port: int = Field(8080, description="port of the HTTP API (and its /metrics)")
    max_body_bytes: int = Field(4 * 1024 * 1024, description="larger request bodies get 413")
    max_batch: int = Field(2000, validation_alias=service_env("ingest", "max_batch"),
                           description="max mentions in one NDJSON/array request (413 above)")
    max_text_chars: int = Field(10_000, description="longer texts are truncated and flagged")
    max_raw_payload_bytes: int = Field(64 * 1024, description="raw payload kept for audit, cut above this")
    dedupe_window_seconds: float = Field(3600.0, description="a (source, id, engagement) seen within this is a dup")
    dedupe_max_entries: int = Field(1_000_000, description="bound on the dedupe memory (oldest evicted first)")
    produce_timeout_seconds: float = Field(15.0, description="wait this long for Kafka acks before answering 503")
    retry_after_seconds: int = Field(5, description="Retry-After sent with 503 when Kafka is unavailable")
    future_skew_seconds: float = Field(300.0, description="created_at further in the future than this is 422")
    request_timeout_seconds: float = Field(30.0, description="a request body not read within this gets 408")
    idle_timeout_seconds: float = Field(15.0, gt=0, description="a connection whose request headers are not "
                                        "complete within this (after connecting or after a response) is closed")
    max_connections_per_client: int = Field(64, ge=0, description="open connections one client address may "
                                            "hold; more are answered 429 and closed (0 = unlimited)")
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=list, validation_alias=service_env("ingest", "trusted_proxies"),
        description='JSON list of CIDRs of the proxies in front (the ingress controller), e.g. ["10.0.0.0/8"]: '
                    "their X-Forwarded-For names the client (from anyone else it is ignored) and their "
                    "connections count against max_connections_per_proxy")
    max_connections_per_proxy: int = Field(1024, ge=0, description="open connections one trusted proxy may hold "
                                           "(0 = unlimited)")
    kafka_probe_interval_seconds: float = Field(1.0, description="how often a down Kafka is probed to recover")
    producer_stuck_seconds: float = Field(
        30.0, gt=0, description="a Kafka producer is replaced by a new one when, while Kafka answers its probes, "
        "sends have failed for this long (producer_stuck_after times in a row) or an attempt has waited this long "
        "for its ack; a producer that broke for good (its sender ended, or the broker rejected its producer id or "
        "sequence) is replaced at once")
    producer_stuck_after: int = Field(3, ge=1, description="see producer_stuck_seconds")

    # Brand tracking.
    brands_file: Path | None = Field(None, description="tracked brands YAML (default: services/ingest/"
                                                       "brands.default.yaml)")

    # Access control of POST /v1/mentions: closed (401) unless tokens are configured or in dev mode.
    api_tokens: list[SecretStr] = Field(default_factory=list, description="bearer tokens accepted by /v1/mentions "
                                        "(JSON list); empty = every request is 401 (open only with "
                                        "TRIAGE_INSECURE_DEV=1)")
    insecure_dev: bool = Field(False, description="developer's machine only (make demo/up set it): /v1/mentions "
                               "takes requests without a token, and no credential is required at start")
    rate_limit_per_second: float = Field(0.0, description="requests/s on POST endpoints per API token (after "
                                         "authentication), else per client address; 0 = unlimited")
    rate_limit_burst: int = Field(20, description="requests a client may send at once before being limited")

    # Webhooks: an endpoint answers 401 to everything until its secret is configured.
    x_consumer_secret: SecretStr = Field(SecretStr(""), description="X app consumer secret (CRC + signatures)")
    meta_app_secret: SecretStr = Field(SecretStr(""), description="Meta app secret (X-Hub-Signature-256)")
    meta_verify_token: SecretStr = Field(SecretStr(""), description="hub.verify_token set in the Meta app")
    webhook_secret: SecretStr = Field(SecretStr(""), description="secret of the generic signed webhook")
    webhook_tolerance_seconds: float = Field(300.0, description="generic webhook timestamps older/newer are 401")

    # Pull connectors (each off while its URL is empty).
    stream_filter_brands: bool = Field(True, description="stream/poll events must mention a tracked brand")
    connector_rewind_seconds: float = Field(5.0, description="a resumed stream re-reads this much (deduped)")
    jetstream_url: str = Field("", description="e.g. wss://jetstream2.us-east.bsky.network/subscribe")
    jetstream_collections: list[str] = Field(default_factory=lambda: ["app.bsky.feed.post"],
                                             description="wantedCollections")
    mastodon_url: str = Field("", description="instance base URL, e.g. https://mastodon.social")
    mastodon_stream: str = Field("public", description="public, hashtag or list")
    mastodon_tag: str = Field("", description="hashtag for mastodon_stream=hashtag")
    mastodon_list: str = Field("", description="list id for mastodon_stream=list")
    mastodon_token: SecretStr = Field(SecretStr(""), description="access token (read:statuses)")
    polls: list[PollSource] = Field(default_factory=list, description='JSON list of {"name", "kind": "feed"|'
                                    '"reddit", "url", "interval_seconds"}')

    @model_validator(mode="after")
    def _meta_webhook_whole(self) -> IngestSettings:
        """A Meta webhook is configured by two secrets: one without the other is a mistake, not a choice."""
        if bool(self.meta_app_secret.get_secret_value()) != bool(self.meta_verify_token.get_secret_value()):
            raise ValueError("TRIAGE_META_APP_SECRET and TRIAGE_META_VERIFY_TOKEN go together (set both, or "
                             "neither to leave /webhooks/meta closed)")
        return self

    def missing_credentials(self) -> list[str]:
        """The settings ingest must have before other hosts may reach it (each webhook without its secret
        answers 401 on its own, so only the API's tokens are required)."""
        return [] if self.api_tokens else ["TRIAGE_API_TOKENS"]
