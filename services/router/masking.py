"""Personal data masked in what the router sends out: the one point between the router's data and the
renderers (render.py) and webhook payloads (services/common/pii.py does the recognising).

`mask_receivers` wraps every receiver that sends outside the pipeline (PagerDuty, Opsgenie, Slack,
Alertmanager, webhooks) so that a page's group samples, and a webhook's mention text, reach the renderer
already masked; queue topics are not wrapped (the console and inbox apps show responders the original).
On by default (`TRIAGE_MASK_PII`); `TRIAGE_MASK_PII_RECEIVERS='{"audit-hook": false}'` overrides it per
receiver name. A masked webhook copy also drops the platform's raw payload (it holds the text as sent).

Example:

    receivers = mask_receivers(build_receivers(...), enabled=True, overrides={"audit-hook": False})
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from services.common.codec import pb
from services.common.pii import mask_text
from services.router.grouping import Page
from services.router.receivers import KafkaQueueReceiver, Pager, Receiver
from services.router.registry import ReceiverSet


def masked_page(page: Page) -> Page:
    """A copy of `page` whose group samples carry masked texts (the group itself is left as it is)."""
    g = page.group
    samples = [{**s, "text": mask_text(s.get("text", ""))} for s in g.samples]
    return Page(page.action, replace(g, samples=samples), page.at)


def masked_routed(routed: pb.RoutedMention) -> pb.RoutedMention:
    out = pb.RoutedMention()
    out.CopyFrom(routed)
    m = out.scored.mention
    m.text = mask_text(m.text)
    m.raw_payload = b""
    return out


class MaskingPager:
    """A pager whose pages are masked before they are rendered."""

    def __init__(self, inner: Pager):
        self.inner = inner
        self.name = inner.name

    async def notify(self, page: Page) -> str:
        return await self.inner.notify(masked_page(page))

    def __getattr__(self, attr: str) -> Any:
        # Everything else is the wrapped pager's: kind, url, heartbeat_seconds (the Alertmanager heartbeat
        # finds its receivers by it), so a masked pager is the same pager to the rest of the router.
        return getattr(self.inner, attr)


class MaskingReceiver:
    """A webhook receiver whose mentions are masked before the payload is built."""

    def __init__(self, inner: Receiver):
        self.inner = inner
        self.name = inner.name

    async def deliver(self, routed: pb.RoutedMention) -> None:
        await self.inner.deliver(masked_routed(routed))

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


def mask_receivers(receivers: ReceiverSet, enabled: bool, overrides: dict[str, bool] | None = None) -> ReceiverSet:
    """The same receivers, those that leave the pipeline wrapped to mask personal data where it is on."""
    overrides = overrides or {}

    def on(name: str) -> bool:
        return overrides.get(name, enabled)

    return ReceiverSet(
        {name: (MaskingReceiver(r) if on(name) and not isinstance(r, KafkaQueueReceiver) else r)
         for name, r in receivers.receivers.items()},
        {name: (MaskingPager(p) if on(name) else p) for name, p in receivers.pagers.items()},
    )
