"""The receiver registry: each receiver kind a routing file may name, its options, and the factory that builds it.

The routing file's allowed kinds and options (`routing_file`/`tree`: a missing required option or an
unknown one is a `route-check` error with its line) and the paging kinds derive from here, so a new
receiver is added in one place. `ReceiverConfig` is a receiver as the routing file configures
it; `build_receivers` turns those into the runtime objects, the `Receiver`s (one mention at a time)
and the `Pager`s (incident pages) of receivers.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from services.common.alerting.durations import parse_duration
from services.router.heartbeat import DEFAULT_HEARTBEAT_SECONDS
from services.router.paging import AlertmanagerReceiver, OpsgenieReceiver, PagerDutyReceiver, SlackReceiver
from services.router.receivers import KafkaQueueReceiver, Pager, Receiver, WebhookReceiver
from services.router.transport import required_secret, secret_from


class ReceiverKind(StrEnum):
    KAFKA_QUEUE = "kafka_queue"
    WEBHOOK = "webhook"
    PAGERDUTY = "pagerduty"
    OPSGENIE = "opsgenie"
    SLACK = "slack"
    ALERTMANAGER = "alertmanager"


@dataclass
class ReceiverConfig:
    """One entry of the routing file's `receivers`: its name, kind (a ReceiverKind) and the kind's options.

    Example:

        ReceiverConfig("urgent", "kafka_queue", {"queue": "urgent"}, line=12)
    """

    name: str
    kind: str
    options: dict[str, Any]
    line: int = 0


@dataclass(frozen=True)
class Transports:
    producer: AIOKafkaProducer
    client: httpx.AsyncClient
    console_url: str = ""  # pages link back to the responder console (RouterSettings.console_url)


Factory = Callable[[str, dict[str, Any], Transports], Receiver | Pager]


def _kafka_queue(name: str, o: dict[str, Any], t: Transports) -> Receiver:
    return KafkaQueueReceiver(name, str(o["queue"]), t.producer)


def _webhook(name: str, o: dict[str, Any], t: Transports) -> WebhookReceiver:
    return WebhookReceiver(name, str(o["url"]), t.client, secret_from(o),
                           {str(k): str(v) for k, v in (o.get("headers") or {}).items()}, t.console_url)


def _pagerduty(name: str, o: dict[str, Any], t: Transports) -> Pager:
    return PagerDutyReceiver(name, t.client, required_secret(o, "routing_key_env", f"receiver {name}"),
                             str(o.get("url", "https://events.pagerduty.com/v2/enqueue")), t.console_url)


def _opsgenie(name: str, o: dict[str, Any], t: Transports) -> Pager:
    return OpsgenieReceiver(name, t.client, required_secret(o, "api_key_env", f"receiver {name}"),
                            str(o.get("url", "https://api.opsgenie.com")), t.console_url)


def _slack(name: str, o: dict[str, Any], t: Transports) -> Pager:
    return SlackReceiver(name, t.client, required_secret(o, "token_env", f"receiver {name}"),
                         str(o["channel"]), str(o["url"]), t.console_url)


def _alertmanager(name: str, o: dict[str, Any], t: Transports) -> Pager:
    return AlertmanagerReceiver(name, t.client, str(o["url"]), t.console_url,
                                parse_duration(o.get("heartbeat", DEFAULT_HEARTBEAT_SECONDS)))


@dataclass(frozen=True)
class KindEntry:
    factory: Factory
    pages: bool  # a paging receiver: gets grouped incidents (Page) instead of single mentions
    required: tuple[str, ...] = ()  # options the routing file must give (non-empty)
    optional: tuple[str, ...] = ()  # the other options it may give; any receiver may set `rate_per_minute`


REGISTRY: dict[ReceiverKind, KindEntry] = {
    ReceiverKind.KAFKA_QUEUE: KindEntry(_kafka_queue, pages=False, required=("queue",)),
    ReceiverKind.WEBHOOK: KindEntry(_webhook, pages=False, required=("url",), optional=("secret_env", "headers")),
    ReceiverKind.PAGERDUTY: KindEntry(_pagerduty, pages=True, required=("routing_key_env",), optional=("url",)),
    ReceiverKind.OPSGENIE: KindEntry(_opsgenie, pages=True, required=("api_key_env",), optional=("url",)),
    # chat.postMessage needs the channel (an incoming webhook's fixed channel cannot thread, see paging.py)
    ReceiverKind.SLACK: KindEntry(_slack, pages=True, required=("url", "token_env", "channel")),
    ReceiverKind.ALERTMANAGER: KindEntry(_alertmanager, pages=True, required=("url",), optional=("heartbeat",)),
}
COMMON_OPTIONS: tuple[str, ...] = ("rate_per_minute",)
RECEIVER_KINDS: tuple[str, ...] = tuple(REGISTRY)
PAGING_KINDS: tuple[str, ...] = tuple(k for k, e in REGISTRY.items() if e.pages)


@dataclass(frozen=True)
class ReceiverSet:
    """The built receivers by name: those that take single mentions and those that take pages (a webhook is in
    both)."""

    receivers: dict[str, Receiver]
    pagers: dict[str, Pager]

    def names(self) -> set[str]:
        return set(self.receivers) | set(self.pagers)

    def queue_topics(self) -> list[str]:
        """The queue topics the kafka_queue receivers produce to (what the router's ledger reads back)."""
        return [r.topic for r in self.receivers.values() if isinstance(r, KafkaQueueReceiver)]

    def queue_topic(self, name: str) -> str | None:
        """The topic of receiver `name` when it is a queue topic receiver."""
        receiver = self.receivers.get(name)
        return receiver.topic if isinstance(receiver, KafkaQueueReceiver) else None


def build_receivers(configs: Mapping[str, ReceiverConfig], producer: AIOKafkaProducer,
                    client: httpx.AsyncClient, console_url: str = "") -> ReceiverSet:
    """One runtime object per configured receiver; secrets are read from the env vars the file names.
    `console_url` (the router's TRIAGE_CONSOLE_URL) makes every page link back to the console."""
    transports = Transports(producer, client, console_url)
    built = ReceiverSet({}, {})
    for name, cfg in configs.items():
        if cfg.kind not in RECEIVER_KINDS:
            raise ValueError(f"receiver {name!r}: unknown type {cfg.kind!r}")
        receiver = REGISTRY[ReceiverKind(cfg.kind)].factory(name, cfg.options, transports)
        if isinstance(receiver, Receiver):
            built.receivers[name] = receiver
        if isinstance(receiver, Pager):
            built.pagers[name] = receiver
    return built
