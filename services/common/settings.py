"""Settings shared by every service (pydantic-settings, env prefix `TRIAGE_`).

Where the same word means different things in different services (a batch is 2,000 mentions in an
ingest request, 32 in a classify micro-batch, 64 in a router batch), each service has its own
prefixed name (`TRIAGE_INGEST_MAX_BATCH`, `TRIAGE_CLASSIFY_MAX_BATCH`, `TRIAGE_ROUTER_MAX_BATCH`) so
that one `.env` can serve all of them. The old shared name is still read as an alias for one release
(`service_env`); the prefixed name wins when both are set.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.topics import DEFAULT_PARTITIONS, PartitionLayout

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
    """Base of every service's settings; values come from `TRIAGE_*` env vars or a .env file.

    Each service subclasses it (``IngestSettings``, ``ClassifySettings``, ``RouterSettings``,
    ``ConsoleSettings``); a bad value stops the start-up with the variable's name and the reason.

    Example:

        import os
        from services.ingest.config import IngestSettings

        os.environ["TRIAGE_KAFKA_BOOTSTRAP"] = "kafka-0:9093"
        settings = IngestSettings()                  # reads TRIAGE_* (and .env)
        settings.kafka_bootstrap                     # 'kafka-0:9093'
        IngestSettings(kafka_bootstrap="127.0.0.1:9092")   # or explicit values, e.g. in tests
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", populate_by_name=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated")
    kafka_client_id_prefix: str = Field("triage", description="prefix of Kafka client ids")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_json: bool = Field(False, description="log JSON lines instead of key=value")
    mask_pii: bool = Field(True, description="mask phone numbers, e-mail addresses, card numbers, IBANs and "
                           "national ids in logs and in what the router sends to paging receivers and webhooks "
                           "(services/common/pii.py)")
    metrics_host: str = Field("127.0.0.1", description="address the /metrics endpoint binds")

    # Kafka security, as a Strimzi cluster issues it: a TLS listener with the cluster CA, and a
    # KafkaUser with SCRAM-SHA-512 (password in the user's Secret) or TLS client certificates.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol of every client (SASL_SSL for Strimzi SCRAM users)"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (Strimzi's scram-sha-512 KafkaUsers)"
    )
    kafka_sasl_username: str = Field("", description="SASL user (the KafkaUser's name)")
    kafka_sasl_password: SecretStr = Field(SecretStr(""),
                                           description="SASL password (the KafkaUser Secret's `password`)")
    kafka_ssl_cafile: str = Field("", description="CA bundle that signed the brokers' certificates (Strimzi cluster CA "
                                                  "`ca.crt`); empty = the system CAs")
    kafka_ssl_certfile: str = Field("", description="client certificate for mutual TLS (a tls KafkaUser's `user.crt`)")
    kafka_ssl_keyfile: str = Field("", description="client certificate's key (`user.key`)")
    kafka_ssl_check_hostname: bool = Field(True, description="check that the broker's certificate names its host")
    topic_replication_factor: int = Field(
        1, ge=1, description="replication factor of the topics the services create themselves (Faust changelogs and "
                             "repartition topics, the router's state topic); 3 in prod"
    )
    # Every service and tool reads the same counts (the triage-env ConfigMap in a cluster, generated from
    # deploy/k8s/base/config/partitions.env): the router hashes keys to its state partitions with its count,
    # and a worker whose count disagrees with its topics' refuses to start (services/common/kafka.py).
    classify_partitions: int = Field(
        DEFAULT_PARTITIONS, ge=1, le=1000,
        description="partitions of mentions.raw and the crisis input: at most this many classify replicas do work; "
                    "grow with `triage topics grow --stage classify`"
    )
    router_partitions: int = Field(
        DEFAULT_PARTITIONS, ge=1, le=1000,
        description="partitions of mentions.scored, responses, the page requests and the router's state "
                    "(co-partitioned): at most this many router replicas; grow with `triage topics grow --stage router`"
    )

    def partition_layout(self) -> PartitionLayout:
        """The partition counts these settings give the topics (`topics.all_topic_specs(layout=...)`)."""
        return PartitionLayout(classify=self.classify_partitions, router=self.router_partitions)

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> ServiceSettings:
        """Refuse at start-up what would otherwise fail on the first connection, with a less clear error."""
        protocol = self.kafka_security_protocol
        has_login = bool(self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value())
        if protocol.startswith("SASL_") and not has_login:
            raise ValueError(f"TRIAGE_KAFKA_SECURITY_PROTOCOL={protocol} needs TRIAGE_KAFKA_SASL_USERNAME "
                             "and TRIAGE_KAFKA_SASL_PASSWORD")
        uses_tls = protocol in ("SSL", "SASL_SSL")
        tls_files = {"TRIAGE_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
                     "TRIAGE_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
                     "TRIAGE_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile}
        for env, path in tls_files.items():
            if path and not uses_tls:
                raise ValueError(f"{env} is set but TRIAGE_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS")
            if path and not Path(path).is_file():
                raise ValueError(f"{env}={path}: no such file")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("TRIAGE_KAFKA_SSL_CERTFILE and TRIAGE_KAFKA_SSL_KEYFILE go together")
        return self

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every Kafka client, or None on a plaintext listener."""
        if self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(cafile=self.kafka_ssl_cafile or None)
        context.check_hostname = self.kafka_ssl_check_hostname
        if self.kafka_ssl_certfile:
            context.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        return context

    def kafka_client_options(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client (producer, consumer, admin) needs to reach the cluster,
        besides `bootstrap_servers`; empty on a plaintext listener, so the defaults stay aiokafka's."""
        protocol = self.kafka_security_protocol
        if protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": protocol}
        context = self.kafka_ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if protocol.startswith("SASL_"):
            options.update(sasl_mechanism=self.kafka_sasl_mechanism, sasl_plain_username=self.kafka_sasl_username,
                           sasl_plain_password=self.kafka_sasl_password.get_secret_value())
        return options

    def faust_broker_credentials(self) -> Any:
        """The same security as Faust `broker_credentials` (None on a plaintext listener)."""
        import faust
        from faust.types.auth import SASLMechanism

        protocol = self.kafka_security_protocol
        if protocol == "PLAINTEXT":
            return None
        context = self.kafka_ssl_context()
        if protocol == "SSL":
            return faust.SSLCredentials(context)
        return faust.SASLCredentials(
            username=self.kafka_sasl_username, password=self.kafka_sasl_password.get_secret_value(),
            mechanism=SASLMechanism(self.kafka_sasl_mechanism), ssl_context=context,
        )


class WorkerSettings(ServiceSettings):
    """What every Faust worker (classify, router) has: its table store, data directory and static membership."""

    DEFAULT_DATA_DIR: ClassVar[str] = "run/faust-data"

    store: str = Field("memory://", description="Faust table store (rocksdict:// in production)")
    data_dir: str = Field("", description="Faust data directory (tables, rocksdict); empty = run/<service>-data")
    instance_id: str = Field(
        default_factory=lambda: os.environ.get("POD_NAME", ""),
        description="static group membership id (pod name); avoids rebalance storms on rolling restarts",
    )
    probe_loop_stale_seconds: float = Field(
        10.0, gt=0, description="/healthz and /readyz answer 503 when the event loop has not run its heartbeat "
                                "for this long (a wedged loop)"
    )
    probe_fetch_stale_seconds: float = Field(
        60.0, gt=0, description="/readyz answers 503 when the Kafka consumer has not fetched (nor handed a record "
                                "to an agent) for this long"
    )

    def faust_data_dir(self) -> str:
        return self.data_dir or self.DEFAULT_DATA_DIR

    def faust_options(self) -> dict[str, Any]:
        """The Faust app options these settings decide."""
        options: dict[str, Any] = {
            "broker": "kafka://" + self.kafka_bootstrap.replace(",", ";kafka://"),
            "store": self.store,
            "datadir": self.faust_data_dir(),
            "topic_replication_factor": self.topic_replication_factor,
        }
        credentials = self.faust_broker_credentials()
        if credentials is not None:
            options["broker_credentials"] = credentials
        if self.instance_id:
            options["consumer_group_instance_id"] = self.instance_id
        return options
