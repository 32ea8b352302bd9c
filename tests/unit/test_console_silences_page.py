"""The Silences page: every silence by state, with its matchers, author, comment and what it mutes now."""

from __future__ import annotations

import re
import time

from aiohttp.test_utils import TestClient, TestServer
from test_console_app import RecordingService
from test_console_views import incident, q, routed

from services.common import topics
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch
from services.console.app import build_app
from services.console.views import ConsoleView, silences_overview


def _silence(sid: str, matchers: list[str], start: float, end: float, incident_id: str = "") -> pb.Silence:
    msg = pb.Silence(id=sid, matchers=matchers, created_by="ana", comment=f"why {sid}", incident_id=incident_id)
    msg.starts_at.CopyFrom(ts_from_epoch(start))
    msg.ends_at.CopyFrom(ts_from_epoch(end))
    msg.created_at.CopyFrom(ts_from_epoch(start))
    return msg


def _view(now: float) -> ConsoleView:
    v = ConsoleView()
    v.apply_record(topics.INCIDENTS, b"inc-1", incident())
    v.apply_record(q("urgent"), b"x:1", routed("1", pb.P1, incident="inc-1"))
    v.apply_record(q("urgent"), b"x:2", routed("2", pb.P2, intent="question", lang="de"))
    v.apply_silence(_silence("s-inc", ['brand="acme"', 'incident="inc-1"'], now - 60, now + 3600, "inc-1"))
    v.apply_silence(_silence("s-de", ['language="de"'], now - 60, now + 600))
    v.apply_silence(_silence("s-verified", ['author_verified="true"'], now - 60, now + 900))
    v.apply_silence(_silence("s-later", ['brand="acme"'], now + 600, now + 1200))
    v.apply_silence(_silence("s-old", ['brand="acme"'], now - 7200, now - 3600))
    return v


def test_overview_orders_by_state_and_says_what_each_mutes() -> None:
    now = time.time()
    rows = {r.silence.id: r for r in silences_overview(_view(now), now)}
    assert [r.silence.id for r in silences_overview(_view(now), now)] == \
        ["s-de", "s-verified", "s-inc", "s-later", "s-old"]
    assert rows["s-inc"].incidents == ["inc-1"] and rows["s-inc"].items == 1
    assert rows["s-de"].incidents == [] and rows["s-de"].items == 1  # the German question
    assert rows["s-verified"].items is None  # a label the console cannot rebuild
    assert rows["s-later"].state == "pending" and rows["s-later"].items == 0 and rows["s-old"].state == "expired"
    assert [r.silence.id for r in silences_overview(_view(now), now, "expired")] == ["s-old"]


async def test_silences_page_lists_and_expires() -> None:
    now = time.time()
    svc = RecordingService(_view(now))
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/silences")).text()
        assert html.count('<tr class="silence') == 5 and "active 3" in html and "expired 1" in html
        row = re.search(r'<tr class="silence active" data-id="s-inc">.*?</tr>', html, re.S).group(0)  # type: ignore[union-attr]
        assert 'incident=&#34;inc-1&#34;' in row and "ana" in row and "why s-inc" in row
        assert 'href="/incidents/inc-1">inc-1</a>' in row and "1 open item" in row and 'class="expire"' in row
        old = re.search(r'<tr class="silence expired" data-id="s-old">.*?</tr>', html, re.S).group(0)  # type: ignore[union-attr]
        assert "nothing now" in old and 'class="expire"' not in old
        html = await (await client.get("/silences?state=pending")).text()
        assert html.count('<tr class="silence') == 1 and 's-later' in html
        assert (await client.get("/silences?state=bogus")).status == 400
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]
        r = await client.post("/actions/silence/expire", data={"csrf": csrf, "silence_id": "s-de",
                                                               "next": "/silences"}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/silences"
        html = await (await client.get("/silences?state=expired")).text()
        assert 'data-id="s-de"' in html and "expired by console" in html
