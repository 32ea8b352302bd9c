"""Settings shared by every service (pydantic-settings, env prefix `TRIAGE_`).

Where the same word means different things in different services (a batch is 2,000 mentions in an
ingest request, 32 in a classify micro-batch, 64 in a router batch), each service has its own
prefixed name (`TRIAGE_INGEST_MAX_BATCH`, `TRIAGE_CLASSIFY_MAX_BATCH`, `TRIAGE_ROUTER_MAX_BATCH`) so
that one `.env` can serve all of them. The old shared name is still read as an alias for one release
(`service_env`); the prefixed name wins when both are set.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "TRIAGE_"


def service_env(service: str, name: str) -> AliasChoices:
    """`TRIAGE_<SERVICE>_<NAME>`, falling back to the deprecated shared `TRIAGE_<NAME>`."""
    return AliasChoices(f"{ENV_PREFIX}{service}_{name}".upper(), f"{ENV_PREFIX}{name}".upper())


def env_names(settings_cls: type[BaseSettings]) -> dict[str, tuple[str, ...]]:
    """field -> the environment variables that set it (the first one is the documented name)."""
    out: dict[str, tuple[str, ...]] = {}
    for name, info in settings_cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            out[name] = tuple(str(c) for c in alias.choices)
        elif isinstance(alias, str):
            out[name] = (alias,)
        else:
            out[name] = (f"{ENV_PREFIX}{name}".upper(),)
    return out


class ServiceSettings(BaseSettings):
    """Base of every service's settings; values come from `TRIAGE_*` env vars or a .env file."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", populate_by_name=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated")
    kafka_client_id_prefix: str = Field("triage", description="prefix of Kafka client ids")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_json: bool = Field(False, description="log JSON lines instead of key=value")
    metrics_host: str = Field("127.0.0.1", description="address the /metrics endpoint binds")


class WorkerSettings(ServiceSettings):
    """What every Faust worker (classify, router) has: its table store, data directory and static membership."""

    DEFAULT_DATA_DIR: ClassVar[str] = "run/faust-data"

    store: str = Field("memory://", description="Faust table store (rocksdict:// in production)")
    data_dir: str = Field("", description="Faust data directory (tables, rocksdict); empty = run/<service>-data")
    instance_id: str = Field(
        default_factory=lambda: os.environ.get("POD_NAME", ""),
        description="static group membership id (pod name); avoids rebalance storms on rolling restarts",
    )

    def faust_data_dir(self) -> str:
        return self.data_dir or self.DEFAULT_DATA_DIR

    def faust_options(self) -> dict[str, Any]:
        """The Faust app options these settings decide."""
        options: dict[str, Any] = {
            "broker": "kafka://" + self.kafka_bootstrap.replace(",", ";kafka://"),
            "store": self.store,
            "datadir": self.faust_data_dir(),
        }
        if self.instance_id:
            options["consumer_group_instance_id"] = self.instance_id
        return options
