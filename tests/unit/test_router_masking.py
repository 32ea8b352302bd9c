"""Pages and webhook payloads carry no phone, card, e-mail or IBAN unless a receiver's override says so."""

from __future__ import annotations

import json
from typing import Any

from services.common.codec import pb
from services.router import render
from services.router.grouping import Group, Page
from services.router.masking import mask_receivers
from services.router.receivers import KafkaQueueReceiver, WebhookReceiver
from services.router.registry import ReceiverSet

TEXT = "@AcmeBank card 4556 7375 8689 9855 charged twice, call me on +1 415 555 2671 or ana@example.com"
SECRETS = ("4556", "9855", "555 2671", "ana@example.com")


def group() -> Group:
    return Group(key="k", id="g1", receiver="oncall", route="root/p1", incident_id="inc-1", labels={"brand": "acme"},
                 priority="P1", group_wait=0, group_interval=60, repeat_interval=3600, quiet_period=600,
                 first_at=1_800_000_000.0, last_at=1_800_000_060.0, count=3, reasons={"outage report": 3},
                 samples=[{"mention_id": "x:1", "text": TEXT, "url": "https://x.com/ana/status/1"}])


class RenderingPager:
    """Renders every page as each paging API would receive it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.documents: list[str] = []

    async def notify(self, page: Page) -> str:
        docs: list[Any] = [render.pagerduty_event(page, "rk"), render.opsgenie_alert(page),
                           render.slack_message(page, "#oncall"), render.alertmanager_alerts(page),
                           render.webhook_page(page)]
        self.documents += [json.dumps(d, ensure_ascii=False) for d in docs]
        return ""


class RecordingHook(WebhookReceiver):
    def __init__(self, name: str) -> None:
        super().__init__(name, "http://127.0.0.1:9/hook", None)  # type: ignore[arg-type]
        self.payloads: list[str] = []

    async def deliver(self, routed: pb.RoutedMention) -> None:
        self.payloads.append(json.dumps(self.payload(routed), ensure_ascii=False))


async def test_every_page_format_is_masked_by_default_and_the_group_keeps_its_text():
    pager = RenderingPager("oncall")
    masked = mask_receivers(ReceiverSet({}, {"oncall": pager}), enabled=True)
    g = group()
    await masked.pagers["oncall"].notify(Page("trigger", g, 1_800_000_060.0))
    assert len(pager.documents) == 5
    for doc in pager.documents:
        assert not [s for s in SECRETS if s in doc], doc
        assert "[card]" in doc or "[phone]" in doc or "alertname" in doc   # Alertmanager carries no samples
    assert g.samples[0]["text"] == TEXT   # the router's own state is not rewritten


async def test_a_receiver_override_sends_the_original_and_queues_are_never_masked():
    pager, hook = RenderingPager("audit"), RecordingHook("hook")
    queue = KafkaQueueReceiver("urgent", "urgent", None)  # type: ignore[arg-type]
    masked = mask_receivers(ReceiverSet({"hook": hook, "urgent": queue}, {"audit": pager}), enabled=True,
                            overrides={"audit": False})
    assert masked.receivers["urgent"] is queue and masked.pagers["audit"] is pager
    await masked.pagers["audit"].notify(Page("trigger", group(), 1_800_000_060.0))
    assert "4556 7375 8689 9855" in pager.documents[0]
    routed = pb.RoutedMention(receiver="hook")
    routed.scored.mention.text = TEXT
    routed.scored.mention.raw_payload = TEXT.encode()
    await masked.receivers["hook"].deliver(routed)
    assert not [s for s in SECRETS if s in hook.payloads[0]] and "[card]" in hook.payloads[0]
    assert routed.scored.mention.text == TEXT


async def test_masking_off_sends_originals():
    pager = RenderingPager("oncall")
    plain = mask_receivers(ReceiverSet({}, {"oncall": pager}), enabled=False)
    await plain.pagers["oncall"].notify(Page("trigger", group(), 1_800_000_060.0))
    assert "ana@example.com" in pager.documents[0]


def test_a_masked_pager_keeps_the_wrapped_pagers_attributes() -> None:
    # The Alertmanager heartbeat finds its pagers by `heartbeat_seconds`: masking must not hide it.
    from services.router.masking import MaskingPager

    class Inner:
        name, kind, heartbeat_seconds = "am", "alertmanager", 60.0

        async def notify(self, page):  # pragma: no cover - not called here
            return ""

    wrapped = MaskingPager(Inner())
    assert (wrapped.name, wrapped.kind, wrapped.heartbeat_seconds) == ("am", "alertmanager", 60.0)
