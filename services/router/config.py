"""Router settings (env prefix `TRIAGE_`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from services.common.settings import WorkerSettings, service_env

DEFAULT_ROUTES = Path(__file__).resolve().parent / "routes.default.yaml"


class RouterSettings(WorkerSettings):
    DEFAULT_DATA_DIR: ClassVar[str] = "run/router-data"

    router_app_id: str = Field("triage-router", description="Faust app id (= consumer group)")
    routes_file: str = Field(str(DEFAULT_ROUTES), description="routing file YAML (see services/router/ROUTING.md)")
    router_metrics_port: int = Field(9102, description="port of the worker's /metrics")
    max_batch: int = Field(64, ge=1, validation_alias=service_env("router", "max_batch"),
                           description="scored mentions handled per batch")
    max_wait_seconds: float = Field(0.1, gt=0, validation_alias=service_env("router", "max_wait_seconds"),
                                    description="flush a partial batch after this long")
    delivery_timeout_seconds: float = Field(10.0, gt=0, description="HTTP timeout of one delivery attempt")
    delivery_attempts: int = Field(5, ge=1, description="attempts per delivery before it goes to the DLQ")
    delivery_backoff_seconds: float = Field(0.5, gt=0, description="first retry delay (doubles, with jitter)")
    delivery_backoff_max_seconds: float = Field(30.0, gt=0)
    delivery_breaker_failures: int = Field(5, ge=1, description="failures in a row that open a receiver's breaker")
    delivery_breaker_reset_seconds: float = Field(30.0, gt=0, description="how long an open breaker waits to probe")
    sla_retention_seconds: float = Field(7 * 86400.0, gt=0, description="how long an escalated, unanswered "
                                         "item is kept open after its deadline")
    tick_seconds: float = Field(1.0, gt=0, description="how often due pages and SLA breaches are checked")
    page_retry_backoff_seconds: float = Field(1.0, gt=0, description="first delay before a failed page is "
                                              "attempted again (doubles, with jitter)")
    page_retry_max_seconds: float = Field(5.0, gt=0, description="longest delay between two attempts of a trigger "
                                          "or resolve (updates: delivery_backoff_max_seconds); keeps a trigger "
                                          "within group_wait + 30 s once the receiver answers again")
    page_retry_budget_seconds: float = Field(3600.0, gt=0, description="how long an undelivered page is retried "
                                             "before it goes to the DLQ (an incident that resolves first "
                                             "dead-letters its undelivered trigger at once)")
    page_update_reserve: float = Field(0.25, ge=0, le=1, description="share of a receiver's rate-limit burst "
                                       "that updates leave free for triggers and resolves")
    dedupe_window_seconds: float = Field(3600.0, ge=0, description="how far back the router reads its queue "
                                         "topics on start to skip mentions it already routed (0: off)")
    router_session_timeout_seconds: float = Field(30.0, gt=0, description="Kafka consumer session timeout")
    mask_pii_receivers: dict[str, bool] = Field(default_factory=dict, description="per receiver name, whether its "
                                                "pages and payloads are masked (overrides TRIAGE_MASK_PII)")
    console_url: str = Field("", description="public base URL of the responder console; when set, pages link "
                             "to <console_url>/incidents/<id>")
