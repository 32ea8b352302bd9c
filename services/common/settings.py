"""Settings shared by every service (pydantic-settings, env prefix `TRIAGE_`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Base of every service's settings; values come from `TRIAGE_*` env vars or a .env file."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_file=".env", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated")
    kafka_client_id_prefix: str = Field("triage", description="prefix of Kafka client ids")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_json: bool = Field(False, description="log JSON lines instead of key=value")
    metrics_host: str = Field("127.0.0.1", description="address the /metrics endpoint binds")
