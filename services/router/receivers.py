"""Receivers: where routed mentions are delivered (Kafka queue topics, signed webhooks, ...).

Paging receivers (PagerDuty, Opsgenie, Slack, Alertmanager) get grouped incidents
instead of single mentions; they live in paging.py and are built here too.

A receiver's `deliver` either succeeds or raises `DeliveryError`; whether the
error is worth retrying (timeouts, 5xx, 429) or not (4xx: the request itself is
wrong) is its `retryable` flag. Retries and the DLQ live in `delivery.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from typing import Any, Protocol

import httpx
from aiokafka import AIOKafkaProducer

from services.common import codec
from services.common.codec import pb
from services.common.topics import queue_topic
from services.router.tree import Receiver as ReceiverConfig

USER_AGENT = "social-triage-router/0.1"


class DeliveryError(Exception):
    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Receiver(Protocol):
    name: str

    async def deliver(self, routed: pb.RoutedMention) -> None: ...


class KafkaQueueReceiver:
    """Produces the RoutedMention to `triage.queue.<queue>`, keyed by mention id."""

    def __init__(self, name: str, queue: str, producer: AIOKafkaProducer):
        self.name = name
        self.queue = queue
        self.topic = queue_topic(queue)
        self.producer = producer

    async def deliver(self, routed: pb.RoutedMention) -> None:
        try:
            fut = await self.producer.send(self.topic, codec.encode(routed),
                                           key=routed.scored.mention.mention_id.encode())
            await fut
        except Exception as exc:
            raise DeliveryError(f"Kafka produce to {self.topic} failed: {type(exc).__name__}: {exc}") from exc


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `<timestamp>.<body>`, hex, as sent in X-Triage-Signature (sha256=...)."""
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, tolerance: float = 300.0,
           now: float | None = None) -> bool:
    """What a webhook consumer does to trust a delivery (constant-time, with a replay window)."""
    try:
        ts = float(timestamp)
    except ValueError:
        return False
    if abs((now or time.time()) - ts) > tolerance:
        return False
    expected = "sha256=" + sign(secret, timestamp, body)
    return hmac.compare_digest(expected, signature)


def _classify_http(resp: httpx.Response, what: str) -> None:
    if resp.status_code < 300:
        return
    retry_after = None
    if "retry-after" in resp.headers:
        try:
            retry_after = float(resp.headers["retry-after"])
        except ValueError:
            retry_after = None
    retryable = resp.status_code >= 500 or resp.status_code in (408, 425, 429)
    raise DeliveryError(f"{what} answered HTTP {resp.status_code}: {resp.text[:200]}", retryable, retry_after)


class WebhookReceiver:
    """POSTs the routed mention as JSON, signed with HMAC-SHA256 when a secret is configured."""

    def __init__(self, name: str, url: str, client: httpx.AsyncClient, secret: bytes | None = None,
                 headers: dict[str, str] | None = None):
        self.name = name
        self.url = url
        self.client = client
        self.secret = secret
        self.headers = headers or {}

    @staticmethod
    def payload(routed: pb.RoutedMention) -> dict[str, Any]:
        sm = routed.scored
        return {
            "version": "1",
            "mention_id": sm.mention.mention_id,
            "priority": pb.Priority.Name(sm.priority),
            "urgency": round(sm.urgency, 4),
            "reasons": list(sm.reasons),
            "route": routed.route,
            "receiver": routed.receiver,
            "respond_by": codec.to_dict(routed).get("respond_by"),
            "incident_id": sm.incident_id,
            "scored": codec.to_dict(sm),
        }

    async def deliver(self, routed: pb.RoutedMention) -> None:
        await self.post_signed(self.payload(routed), f"{routed.scored.mention.mention_id}:{self.name}")

    async def post_signed(self, document: dict[str, Any], idempotency_key: str) -> None:
        """POST `document` as JSON, HMAC-signed when a secret is set; raises DeliveryError on failure."""
        body = json.dumps(document, ensure_ascii=False, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "Idempotency-Key": idempotency_key, **self.headers}
        if self.secret:
            ts = str(int(time.time()))
            headers["X-Triage-Timestamp"] = ts
            headers["X-Triage-Signature"] = "sha256=" + sign(self.secret, ts, body)
        try:
            resp = await self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {self.name}: {type(exc).__name__}: {exc}") from exc
        _classify_http(resp, f"webhook {self.name}")

    async def notify(self, page: Any) -> str:
        from services.router.paging import webhook_notify

        return await webhook_notify(self, page)


def secret_from(opts: dict[str, Any], key: str = "secret_env") -> bytes | None:
    """Secrets are never in the routing file: it names the env var that holds them."""
    env = opts.get(key)
    if not env:
        return None
    value = os.environ.get(str(env))
    if value is None:
        raise ValueError(f"environment variable {env} (named by {key}) is not set")
    return value.encode()


def build_receivers(configs: dict[str, ReceiverConfig], producer: AIOKafkaProducer,
                    client: httpx.AsyncClient) -> dict[str, Any]:
    """One receiver object per configured receiver; secrets are read from the env vars the file names."""
    from services.router import paging

    out: dict[str, Any] = {}
    for name, cfg in configs.items():
        if cfg.kind == "kafka_queue":
            out[name] = KafkaQueueReceiver(name, str(cfg.options["queue"]), producer)
        elif cfg.kind == "webhook":
            out[name] = WebhookReceiver(name, str(cfg.options["url"]), client, secret_from(cfg.options),
                                        {str(k): str(v) for k, v in (cfg.options.get("headers") or {}).items()})
        elif cfg.kind == "pagerduty":
            o = cfg.options
            out[name] = paging.PagerDutyReceiver(
                name, client, paging.required_secret(o, "routing_key_env", f"receiver {name}"),
                str(o.get("url", "https://events.pagerduty.com/v2/enqueue")))
        elif cfg.kind == "opsgenie":
            o = cfg.options
            out[name] = paging.OpsgenieReceiver(name, client, paging.required_secret(o, "api_key_env",
                                                                                     f"receiver {name}"),
                                                str(o.get("url", "https://api.opsgenie.com")))
        elif cfg.kind == "slack":
            o = cfg.options
            out[name] = paging.SlackReceiver(name, client, paging.required_secret(o, "token_env", f"receiver {name}"),
                                             str(o.get("channel", "")), str(o["url"]))
        elif cfg.kind == "alertmanager":
            out[name] = paging.AlertmanagerReceiver(name, client, str(cfg.options["url"]))
        else:
            raise ValueError(f"receiver {name!r}: unknown type {cfg.kind!r}")
    return out
