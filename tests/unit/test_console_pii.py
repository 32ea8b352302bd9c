"""The console shows a post's original text to responders only; read-only users see it masked."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from test_console_app import RecordingService, _view
from test_console_views import routed

from services.common import codec
from services.common.codec import pb
from services.console.app import build_app

TEXT = "card 4556 7375 8689 9855 charged twice, call me on +1 415 555 2671"


def _service(**settings: object) -> RecordingService:
    view = _view()
    item = codec.decode(routed("pii"), pb.RoutedMention)
    item.scored.mention.text = TEXT
    view.apply_routed(item, "urgent")
    return RecordingService(view, **settings)


async def test_read_only_visitors_see_masked_text_and_responders_the_original():
    ro = _service(insecure_dev=False)
    async with TestClient(TestServer(build_app(ro.settings, ro))) as client:
        html = await (await client.get("/queues/urgent")).text()
        assert "charged twice" in html and "[card]" in html and "4556" not in html and "555 2671" not in html
        items = (await (await client.get("/api/queues/urgent")).json())["items"]
        assert "card [card] charged twice, call me on [phone]" in [i["text"] for i in items]
    rw = _service(insecure_dev=True)
    async with TestClient(TestServer(build_app(rw.settings, rw))) as client:
        html = await (await client.get("/queues/urgent")).text()
        assert "4556 7375 8689 9855" in html
        items = (await (await client.get("/api/queues/urgent")).json())["items"]
        assert TEXT in [i["text"] for i in items]
