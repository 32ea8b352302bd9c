"""Mention receivers: Kafka queue topics and signed webhooks (the paging receivers are in paging.py).

Two roles, two Protocols: a `Receiver` takes one routed mention at a time (`deliver`), a `Pager`
takes an incident's notifications (`notify`, grouping.Page); a webhook is both. Either call
succeeds or raises `DeliveryError` with the reason it failed (transport.py); whether it is worth
another attempt (timeouts, 5xx, 429) or not (4xx: the request itself is wrong) follows from that
reason. Retries and the DLQ live in `delivery.py`; which kind builds which receiver is in
`registry.py`.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from services.common import codec
from services.common.codec import pb
from services.common.errors import DeliveryError, DeliveryReason
from services.common.topics import queue_topic
from services.router.grouping import Page
from services.router.ledger import VERSION_HEADER, mention_version
from services.router.render import webhook_page
from services.router.transport import USER_AGENT, classify_http, delivery_error, sign, transport_failure


@runtime_checkable
class Receiver(Protocol):
    """Takes routed mentions one at a time: a queue topic, a webhook.

    Example:

        receiver = KafkaQueueReceiver("urgent", "urgent", producer)
        await receiver.deliver(routed)      # or raises DeliveryError (with its reason)
    """

    name: str

    async def deliver(self, routed: pb.RoutedMention) -> None: ...


@runtime_checkable
class Pager(Protocol):
    """Takes an incident's pages (trigger, update, resolve): PagerDuty, Opsgenie, Slack, Alertmanager, a webhook
    on a grouping route. `notify` returns the receiver's handle of the incident (Slack's thread ts) or "".

    Example:

        pager = PagerDutyReceiver("oncall", client, routing_key)
        await pager.notify(Page(PageAction.TRIGGER, group, now))   # or raises DeliveryError
    """

    name: str

    async def notify(self, page: Page) -> str: ...


def kafka_failure(exc: Exception, topic: str) -> DeliveryError:
    """A produce to a queue topic that failed: timeout, network (no broker), or server_error (the broker
    refused it); all worth another attempt."""
    if isinstance(exc, KafkaTimeoutError | TimeoutError):
        reason = DeliveryReason.TIMEOUT
    elif isinstance(exc, KafkaConnectionError):
        reason = DeliveryReason.NETWORK
    else:
        reason = DeliveryReason.SERVER_ERROR
    return delivery_error(f"Kafka produce to {topic} failed: {type(exc).__name__}: {exc}", reason)


class KafkaQueueReceiver:
    """Produces the RoutedMention to `triage.queue.<queue>`, keyed by mention id, with the mention's version in
    the `triage-version` header (what the router's ledger reads back to skip replays; ledger.py)."""

    def __init__(self, name: str, queue: str, producer: AIOKafkaProducer):
        self.name = name
        self.queue = queue
        self.topic = queue_topic(queue)
        self.producer = producer

    async def deliver(self, routed: pb.RoutedMention) -> None:
        try:
            fut = await self.producer.send(
                self.topic, codec.encode(routed), key=routed.scored.mention.mention_id.encode(),
                headers=[(VERSION_HEADER, mention_version(routed.scored.mention).encode())])
            await fut
        except Exception as exc:
            raise kafka_failure(exc, self.topic) from exc


# Printable ASCII but "%": what `header_safe` leaves as it is.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def header_safe(value: str) -> str:
    """An HTTP header value for an id: HTTP header values are ASCII (httpx refuses anything else), but a mention
    id is `<source>:<external id>` and an external id may be any printable text ("x:ñandú"). Percent-encodes
    UTF-8 bytes outside printable ASCII, and "%" itself so the mapping stays one-to-one; an ASCII id without
    "%" is unchanged, so its Idempotency-Key is the same as before."""
    return quote(value, safe=_HEADER_SAFE)


class WebhookReceiver:
    """POSTs the routed mention as JSON, signed with HMAC-SHA256 when a secret is configured."""

    def __init__(self, name: str, url: str, client: httpx.AsyncClient, secret: bytes | None = None,
                 headers: dict[str, str] | None = None, console_url: str = ""):
        self.name = name
        self.url = url
        self.console_url = console_url
        self.client = client
        self.secret = secret
        self.headers = headers or {}

    @staticmethod
    def payload(routed: pb.RoutedMention) -> dict[str, Any]:
        scored = routed.scored
        return {
            "version": "1",
            "mention_id": scored.mention.mention_id,
            "priority": pb.Priority.Name(scored.priority),
            "urgency": round(scored.urgency, 4),
            "reasons": list(scored.reasons),
            "route": routed.route,
            "receiver": routed.receiver,
            "respond_by": codec.to_dict(routed).get("respond_by"),
            "incident_id": scored.incident_id,
            "scored": codec.to_dict(scored),
        }

    async def deliver(self, routed: pb.RoutedMention) -> None:
        await self.post_signed(self.payload(routed), f"{routed.scored.mention.mention_id}:{self.name}")

    async def post_signed(self, document: dict[str, Any], idempotency_key: str) -> None:
        """POST `document` as JSON, HMAC-signed when a secret is set; raises DeliveryError on failure."""
        body = json.dumps(document, ensure_ascii=False, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "Idempotency-Key": header_safe(idempotency_key), **self.headers}
        if self.secret:
            ts = str(int(time.time()))
            headers["X-Triage-Timestamp"] = ts
            headers["X-Triage-Signature"] = "sha256=" + sign(self.secret, ts, body)
        try:
            resp = await self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise transport_failure(exc, f"webhook {self.name}") from exc
        classify_http(resp, f"webhook {self.name}")

    async def notify(self, page: Page) -> str:
        """On a grouping route a webhook gets signed incident documents instead of single mentions."""
        await self.post_signed(webhook_page(page, self.console_url), f"{page.group.id}:{page.action}:{int(page.at)}")
        return ""
