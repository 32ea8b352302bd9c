"""Claims on queue items: who is on it, lapsing after the TTL, hand-over and release (pure, clock injected),
and the console's claim actions and cards for two signed-in responders (no Kafka)."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_console_app import RecordingService, _view
from test_console_views import T0

from services.common import codec, topics
from services.common.codec import pb
from services.console import actions
from services.console.app import build_app
from services.console.claims import ClaimBook, ClaimConflict
from services.console.config import ConsoleToken
from services.console.render import claim_line

TTL = 900.0


def test_a_claim_holds_the_item_until_the_ttl_then_it_is_offered_again() -> None:
    book = ClaimBook(TTL)
    book.apply(book.claim("x:1", "urgent", "ana", now=T0))
    held = book.holder("x:1", T0 + 180)
    assert held is not None and held.holder == "ana" and claim_line(held, T0 + 180) == "ana is on it, 3 min"
    with pytest.raises(ClaimConflict, match="ana is on it"):
        book.claim("x:1", "urgent", "bo", now=T0 + 180)
    assert book.holder("x:1", T0 + TTL - 1) is not None
    assert book.holder("x:1", T0 + TTL) is None  # lapsed without an answer
    book.apply(book.claim("x:1", "urgent", "bo", now=T0 + TTL + 5))
    assert book.holder("x:1", T0 + TTL + 6).holder == "bo"  # type: ignore[union-attr]


def test_hand_over_gives_the_item_a_fresh_claim_and_only_the_holder_releases() -> None:
    book = ClaimBook(TTL)
    book.apply(book.claim("x:1", "urgent", "ana", now=T0))
    with pytest.raises(ClaimConflict, match="only they can hand it over"):
        book.hand_over("x:1", "urgent", "bo", "cy", now=T0 + 60)
    book.apply(book.hand_over("x:1", "urgent", "ana", "bo", now=T0 + 600))
    held = book.holder("x:1", T0 + TTL + 60)  # past ana's TTL: bo's own clock started at the hand-over
    assert held is not None and held.holder == "bo" and held.handed_over_by == "ana"
    assert claim_line(held, T0 + 660, user="bo") == "you are on it, 1 min, from ana"
    with pytest.raises(ClaimConflict, match="only they can release"):
        book.release("x:1", "urgent", "ana", now=T0 + 700)
    book.apply(book.release("x:1", "urgent", "bo", now=T0 + 700))
    assert book.holder("x:1", T0 + 701) is None
    with pytest.raises(ClaimConflict, match="nobody holds it"):
        book.release("x:1", "urgent", "bo", now=T0 + 702)


def test_folding_is_idempotent_and_an_earlier_record_read_late_changes_nothing() -> None:
    book = ClaimBook(TTL)
    claim = book.claim("x:1", "urgent", "ana", now=T0)
    book.apply(claim)
    release = book.release("x:1", "urgent", "ana", now=T0)  # the same clock tick: still ordered after the claim
    book.apply(release)
    for msg in (claim, release, claim):  # the consumer's copies, read after the local folds
        book.apply(pb.Claim.FromString(msg.SerializeToString()))
    assert book.holder("x:1", T0 + 1) is None
    other = ClaimBook(TTL)  # another replica reading the topic in order gets the same answer
    for msg in (claim, release):
        other.apply(msg)
    assert other.holder("x:1", T0 + 1) is None


def test_the_view_folds_claims_and_tombstones_from_the_topic() -> None:
    view = _view()
    msg = view.claims.claim("x:1", "urgent", "ana", now=T0)
    view.apply_record(topics.CLAIMS, b"x:1", codec.encode(msg))
    assert view.claims.holder("x:1", T0 + 1).holder == "ana"  # type: ignore[union-attr]
    view.apply_record(topics.CLAIMS, b"x:1", None)
    assert view.claims.holder("x:1", T0 + 1) is None


def test_a_hand_over_must_name_a_responder_and_an_answered_item_is_not_claimed() -> None:
    view = _view()
    form = {"queue": "urgent", "mention_id": "x:1", "to": "eve"}
    with pytest.raises(actions.FormError, match="not a responder") as err:
        actions.claim_record(view, form, "ana", T0, "hand_over", is_responder=lambda name: name == "bo")
    assert err.value.status == 400
    msg = actions.claim_record(view, {**form, "to": "bo"}, "ana", T0, "hand_over", lambda name: name == "bo")
    assert msg.handed_over_to == "bo" and msg.responder == "ana" and msg.queue == "urgent"
    view.queues["urgent"]["x:2"].state = "responded"
    with pytest.raises(actions.FormError, match="already responded"):
        actions.claim_record(view, {"queue": "urgent", "mention_id": "x:2"}, "ana", T0, "claim", lambda _: True)


ANA, BO, READER = "ana-token-0123456789ab", "bo-token-0123456789abcd", "reader-token-0123456789"


def _service() -> RecordingService:
    tokens = [ConsoleToken(name="ana", token=ANA), ConsoleToken(name="bo", token=BO),  # type: ignore[arg-type]
              ConsoleToken(name="rita", token=READER, role="read-only")]  # type: ignore[arg-type]
    svc = RecordingService(_view(), insecure_dev=False, console_tokens=tokens, console_claim_ttl_seconds=600)
    return svc


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]


async def _sign_in(client: TestClient, token: str) -> str:
    page = await client.get("/login")
    r = await client.post("/login", data={"csrf": _csrf(await page.text()), "token": token}, allow_redirects=False)
    assert r.status == 303
    return _csrf(await (await client.get("/queues/urgent")).text())


def _card(html: str, mention_id: str) -> str:
    return html.split(f'data-mention="{mention_id}"', 1)[1].split('<div class="item', 1)[0]


async def test_two_responders_see_each_others_claims_and_hand_over() -> None:
    svc = _service()
    app = build_app(svc.settings, svc)
    async with TestClient(TestServer(app)) as ana, TestClient(TestServer(app)) as bo:
        ana_csrf, bo_csrf = await _sign_in(ana, ANA), await _sign_in(bo, BO)
        item = {"queue": "urgent", "mention_id": "x:1"}
        r = await ana.post("/actions/claim", data={**item, "csrf": ana_csrf, "responder": "bo"},
                           allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/queues/urgent"
        topic, key, msg = svc.published[-1]
        assert (topic, key) == (topics.CLAIMS, "x:1") and isinstance(msg, pb.Claim)
        assert msg.responder == "ana"  # the signed-in name, whatever the form says
        assert msg.expires_at.seconds - msg.claimed_at.seconds == 600

        card = _card(await (await bo.get("/queues/urgent")).text(), "x:1")
        assert "ana is on it, 0 min" in card and 'action="/actions/claim' not in card  # no claim, release, hand over
        api = await (await bo.get("/api/queues/urgent")).json()
        assert api["items"][0]["claim"]["holder"] == "ana" and api["items"][1]["claim"] is None
        r = await bo.post("/actions/claim", data={**item, "csrf": bo_csrf})
        assert r.status == 409 and "ana is on it" in await r.text() and len(svc.published) == 1

        assert "you are on it" in _card(await (await ana.get("/queues/urgent")).text(), "x:1")
        r = await ana.post("/actions/claim/hand-over", data={**item, "csrf": ana_csrf, "to": "rita"})
        assert r.status == 400 and "not a responder" in await r.text()  # read-only people cannot take it
        r = await ana.post("/actions/claim/hand-over", data={**item, "csrf": ana_csrf, "to": "bo"},
                           allow_redirects=False)
        assert r.status == 303
        assert "you are on it, 0 min, from ana" in _card(await (await bo.get("/queues/urgent")).text(), "x:1")
        r = await bo.post("/actions/claim/release", data={**item, "csrf": bo_csrf}, allow_redirects=False)
        assert r.status == 303
        card = _card(await (await ana.get("/queues/urgent")).text(), "x:1")
        assert "on it" not in card and 'action="/actions/claim"' in card  # offered again


async def test_a_read_only_person_cannot_claim() -> None:
    svc = _service()
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        csrf = await _sign_in(client, READER)
        assert 'action="/actions/claim"' not in await (await client.get("/queues/urgent")).text()
        r = await client.post("/actions/claim", data={"queue": "urgent", "mention_id": "x:1", "csrf": csrf})
        assert r.status == 403 and not svc.published
