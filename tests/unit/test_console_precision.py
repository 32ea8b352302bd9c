"""Live precision on the console: pages and P1/P2 items responders marked wrong, per brand (no Kafka)."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY
from test_console_app import RecordingService, _view
from test_console_views import T0

from services.classify.training.feedback_set import examples
from services.common import codec, topics
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch
from services.console.app import build_app


def _paged_view():  # type: ignore[no-untyped-def]
    v = _view()
    rec = pb.PageRecord(incident_id="inc-1", receiver="pagerduty", action="trigger", delivered=True,
                        detail="40 mentions", at=ts_from_epoch(T0 + 30))
    v.apply_record(topics.PAGES, b"inc-1", codec.encode(rec))
    return v


async def test_wrong_page_is_published_counted_per_brand_and_kept_out_of_the_dev_set() -> None:
    svc = RecordingService(_paged_view())
    assert svc.view.pages_marked_wrong() == {"acme": (0, 1)}
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/incidents/inc-1")).text()
        assert 'action="/actions/page-feedback"' in html
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]
        r = await client.post("/actions/page-feedback", data={"csrf": csrf, "incident_id": "inc-1",
                                                              "corrected_priority": "P3", "comment": "a promo"},
                              allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/incidents/inc-1"
        topic, key, fb = svc.published[-1]
        assert topic == topics.FEEDBACK and key == "inc-1"
        assert fb.incident_id == "inc-1" and not fb.mention_id and fb.corrected_priority == pb.P3  # type: ignore[attr-defined]
        assert examples([fb]) == []  # type: ignore[list-item]  # not a labelled mention
        assert svc.view.pages_marked_wrong() == {"acme": (1, 1)}
        assert "Marked a wrong page" in await (await client.get("/incidents/inc-1")).text()
        assert "1 of 1 pages marked wrong" in await (await client.get("/")).text()
        svc._update_gauges()
        assert REGISTRY.get_sample_value("triage_console_pages_marked_wrong_ratio", {"brand": "acme"}) == 1.0

        r = await client.post("/actions/page-feedback", data={"csrf": csrf, "incident_id": "nope"})
        assert r.status == 404
        r = await client.post("/actions/page-feedback", data={"csrf": csrf, "incident_id": "inc-1",
                                                              "corrected_priority": "P9"})
        assert r.status == 400


async def test_an_incident_that_never_paged_cannot_be_marked_a_wrong_page() -> None:
    svc = RecordingService(_view())
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/incidents/inc-1")).text()
        assert 'action="/actions/page-feedback"' not in html
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]
        r = await client.post("/actions/page-feedback", data={"csrf": csrf, "incident_id": "inc-1"})
        assert r.status == 409 and "no page" in await r.text() and not svc.published
