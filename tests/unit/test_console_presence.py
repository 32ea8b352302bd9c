"""Presence ("also viewing"): the heartbeat fold with its expiry and bounds (pure, clock injected), and the
console's pages and presence API for two signed-in responders (no Kafka)."""

from __future__ import annotations

import re
import time

from aiohttp.test_utils import TestClient, TestServer
from test_console_app import RecordingService, _view

from services.common import codec, topics
from services.common.codec import pb
from services.console.app import build_app
from services.console.config import ConsoleToken
from services.console.presence import (
    MAX_TARGETS_PER_HEARTBEAT,
    PresenceBoard,
    Viewer,
    presence_line,
    valid_targets,
)
from services.console.views import ConsoleView

T0 = 1_700_000_000.0
ANA, BO = "ana-token-0123456789ab", "bo-token-0123456789abcd"


def test_a_viewer_is_listed_for_what_their_page_shows_until_the_expiry() -> None:
    board = PresenceBoard(expiry=30)
    board.apply(board.heartbeat("ana", ["item:x:1", "incident:inc-1"], now=T0))
    board.apply(board.heartbeat("bo", ["item:x:1"], now=T0 + 3))
    assert board.viewers("item:x:1", T0 + 5) == [Viewer("bo", T0 + 3), Viewer("ana", T0)]  # most recent first
    assert board.viewers("item:x:1", T0 + 5, excluding="bo") == [Viewer("ana", T0)]  # never yourself
    assert board.viewers("incident:inc-1", T0 + 5, excluding="ana") == []
    assert board.viewers("item:x:2", T0 + 5) == []
    assert [v.name for v in board.viewers("item:x:1", T0 + 29.9)] == ["bo", "ana"]
    assert [v.name for v in board.viewers("item:x:1", T0 + 30)] == ["bo"]  # ana's page is gone: forgotten
    assert board.viewers("item:x:1", T0 + 33) == []


def test_a_late_older_heartbeat_never_makes_a_viewer_look_older_and_copies_change_nothing() -> None:
    board = PresenceBoard(expiry=30)
    old, new = board.heartbeat("ana", ["item:x:1"], now=T0), board.heartbeat("ana", ["item:x:1"], now=T0 + 20)
    for msg in (new, old, pb.Presence.FromString(new.SerializeToString())):
        board.apply(msg)
    assert board.viewers("item:x:1", T0 + 40) == [Viewer("ana", T0 + 20)]
    assert board.viewers("item:x:1", T0 + 15) == [Viewer("ana", T0 + 15)]  # another replica's clock ahead: 0 s ago
    board.apply(pb.Presence(targets=["item:x:1"]))  # no name: nobody to show
    assert len(board.viewers("item:x:1", T0 + 40)) == 1


def test_the_board_forgets_expired_targets_and_keeps_at_most_max_targets() -> None:
    board = PresenceBoard(expiry=30, max_targets=3)
    for k in range(5):
        board.apply(board.heartbeat("ana", [f"item:x:{k}"], now=T0 + k))
    assert len(board) == 3 and board.viewers("item:x:0", T0 + 5) == [] and board.viewers("item:x:4", T0 + 5)
    board.apply(board.heartbeat("bo", ["incident:inc-9"], now=T0 + 100))  # every earlier heartbeat expired
    assert len(board) == 1


def test_heartbeat_targets_are_incidents_and_items_only_deduplicated_and_bounded() -> None:
    raw = ["item:x:1", "item:x:1", "incident:inc-1", "queue:urgent", "item:", 7, "item:\x00", "incident:" + "i" * 400]
    assert valid_targets(raw) == ["item:x:1", "incident:inc-1"]
    many = [f"item:x:{k}" for k in range(MAX_TARGETS_PER_HEARTBEAT + 50)]
    assert len(PresenceBoard().heartbeat("ana", many, now=T0).targets) == MAX_TARGETS_PER_HEARTBEAT


def test_the_line_a_page_shows() -> None:
    assert presence_line([Viewer("bo", T0 - 4), Viewer("cy", T0 - 12.5)], T0) == \
        "also viewing: bo (4 s ago), cy (12 s ago)"
    assert presence_line([], T0) == ""


def test_the_view_folds_presence_records_from_the_topic() -> None:
    view = ConsoleView(presence_expiry=30)
    msg = view.presence.heartbeat("ana", ["item:x:1"], now=T0)
    view.apply_record(topics.PRESENCE, b"ana", codec.encode(msg))
    assert view.presence.viewers("item:x:1", T0 + 1) == [Viewer("ana", T0)]


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]


async def _sign_in(client: TestClient, token: str) -> None:
    page = await client.get("/login")
    r = await client.post("/login", data={"csrf": _csrf(await page.text()), "token": token}, allow_redirects=False)
    assert r.status == 303


def _card(html: str, mention_id: str) -> str:
    return html.split(f'data-mention="{mention_id}"', 1)[1].split('<div class="item', 1)[0]


async def test_two_responders_see_each_other_viewing_on_pages_and_through_the_api() -> None:
    tokens = [ConsoleToken(name="ana", token=ANA), ConsoleToken(name="bo", token=BO)]  # type: ignore[arg-type]
    svc = RecordingService(_view(), insecure_dev=False, console_tokens=tokens, console_presence_expiry_seconds=30)
    svc.share_presence = True  # as a replica among others: heartbeats are published
    async with TestClient(TestServer(build_app(svc.settings, svc))) as ana, \
            TestClient(TestServer(build_app(svc.settings, svc))) as bo:
        await _sign_in(ana, ANA)
        await _sign_in(bo, BO)
        html = await (await ana.get("/queues/urgent")).text()
        assert "also viewing" not in html  # nobody else yet, and never ana herself
        sent = [m for t, _, m in svc.published if t == topics.PRESENCE]
        assert sent and sent[-1].responder == "ana" and "item:x:1" in sent[-1].targets  # type: ignore[attr-defined]

        page = await (await bo.get("/queues/urgent")).text()
        assert re.search(r"also viewing: ana \(\d s ago\)", _card(page, "x:1"))
        assert "also viewing: bo" not in page
        incident = await (await bo.get("/incidents/inc-1")).text()
        assert "also viewing: ana" in incident  # x:1 is an item of inc-1 that ana's queue page shows
        items = {i["mention_id"]: i for i in (await (await bo.get("/api/queues/urgent")).json())["items"]}
        assert [v["name"] for v in items["x:1"]["viewers"]] == ["ana"]  # bo is viewing too, but never listed
        assert [v["name"] for v in (await (await ana.get("/api/incidents/inc-1")).json())["viewers"]] == ["bo"]
        csrf = re.search(r'data-csrf="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]

        r = await ana.post("/api/presence", json={"targets": ["incident:inc-1", "item:x:9"]},
                           headers={"X-CSRF-Token": csrf})
        assert r.status == 403  # bo's token is not ana's
        ana_csrf = re.search(r'data-csrf="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]
        r = await ana.post("/api/presence", json={"targets": ["incident:inc-1", "item:x:9"]},
                           headers={"X-CSRF-Token": ana_csrf})
        assert r.status == 200
        answer = await r.json()
        assert [v["name"] for v in answer["viewers"]["incident:inc-1"]] == ["bo"]
        assert answer["viewers"]["item:x:9"] == [] and answer["expiry_seconds"] == 30
        r = await ana.post("/api/presence", data="targets=item:x:1", headers={"X-CSRF-Token": ana_csrf,
                                                                            "Content-Type": "text/plain"})
        assert r.status == 415
    async with TestClient(TestServer(build_app(svc.settings, svc))) as stranger:
        r = await stranger.post("/api/presence", json={"targets": ["item:x:1"]}, headers={"X-CSRF-Token": csrf})
        assert r.status == 401  # sign in first


async def test_without_sign_in_nobody_is_shown_and_no_heartbeat_is_sent() -> None:
    svc = RecordingService(_view(), insecure_dev=True)
    svc.share_presence = True
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/queues/urgent")).text()
        assert 'class="presence"' in html and "data-csrf" not in html  # the script then sends nothing
        assert not svc.published and len(svc.view.presence) == 0


def _triage_row(html: str, group_key: str) -> str:
    return html.split(f'data-group="{group_key}"', 1)[1].split("</tr>", 1)[0]


async def test_two_responders_deciding_on_a_held_incident_see_each_other_on_the_triage_page() -> None:
    from test_console_triage import KEY, triage_record

    tokens = [ConsoleToken(name="ana", token=ANA), ConsoleToken(name="bo", token=BO)]  # type: ignore[arg-type]
    view = _view()
    view.apply_record(topics.PAGES, b"inc-1", triage_record("held", time.time() - 60))
    svc = RecordingService(view, insecure_dev=False, console_tokens=tokens, console_presence_expiry_seconds=30)
    svc.share_presence = True
    async with TestClient(TestServer(build_app(svc.settings, svc))) as ana, \
            TestClient(TestServer(build_app(svc.settings, svc))) as bo:
        await _sign_in(ana, ANA)
        await _sign_in(bo, BO)
        html = await (await ana.get("/triage")).text()
        assert 'data-presence="incident:inc-1"' in _triage_row(html, KEY) and "also viewing" not in html
        sent = [m for t, _, m in svc.published if t == topics.PRESENCE]
        assert sent and sent[-1].responder == "ana" and list(sent[-1].targets) == ["incident:inc-1"]  # type: ignore[attr-defined]

        page = await (await bo.get("/triage")).text()
        assert re.search(r"also viewing: ana \(\d s ago\)", _triage_row(page, KEY))
        # The incident page says so too: ana is deciding whether to page for it.
        assert "also viewing: ana" in await (await bo.get("/incidents/inc-1")).text()
        assert "also viewing: bo" in await (await ana.get("/triage")).text()
