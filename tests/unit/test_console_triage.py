"""The console's Triage page: incidents held by `triage: true` routes (the router's "triage" records on `pages`),
page now / dismiss as TriageDecisions keyed by the group, and dismissals counted as wrong pages (no Kafka: a
recording publisher)."""

from __future__ import annotations

import re
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_console_app import RecordingService, _view

from services.common import codec, topics
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch
from services.console import actions
from services.console.app import build_app
from services.console.config import ConsoleToken
from services.console.render import latest_pages
from services.console.views import ConsoleView

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
KEY = "pd|incident:inc-1"


def triage_record(state: str, at: float, key: str = KEY, incident_id: str = "inc-1", brand: str = "acme",
                  hold_until: float | None = None) -> bytes:
    rec = pb.PageRecord(incident_id=incident_id, receiver="pd", action="triage", state=state, group_key=key,
                        detail=f"held for triage: 12 mentions ({state})", labels={"brand": brand})
    rec.at.CopyFrom(ts_from_epoch(at))
    rec.hold_until.CopyFrom(ts_from_epoch(hold_until if hold_until is not None else at + 600))
    return codec.encode(rec)


def trigger_record(at: float, incident_id: str = "inc-1") -> bytes:
    rec = pb.PageRecord(incident_id=incident_id, receiver="pd", action="trigger", delivered=True, state="delivered")
    rec.at.CopyFrom(ts_from_epoch(at))
    return codec.encode(rec)


def test_held_groups_are_listed_until_the_router_says_what_became_of_them() -> None:
    now = time.time()
    v = ConsoleView()
    v.apply_record(topics.PAGES, b"inc-1", triage_record("held", now - 60))
    v.apply_record(topics.PAGES, b"inc-1", triage_record("held", now - 60))  # read twice: one entry
    v.apply_record(topics.PAGES, b"grp-2", triage_record("held", now - 30, key="pd|root/0|brand=globex",
                                                          incident_id="grp-2", brand="globex"))
    pending, recent = v.triage_list(now)
    assert [e.group_key for e in pending] == [KEY, "pd|root/0|brand=globex"]  # the soonest to page itself first
    assert pending[0].hold_until == pytest.approx(now + 540) and recent == []
    v.apply_record(topics.PAGES, b"inc-1", triage_record("timed_out", now + 540))
    pending, recent = v.triage_list(now + 541)
    assert [e.incident_id for e in pending] == ["grp-2"]
    assert [(e.incident_id, e.status) for e in recent] == [("inc-1", "paged by itself (not handled in time)")]
    v.apply_record(topics.PAGES, b"inc-1", triage_record("held", now - 60))  # a late copy does not undo it
    assert v.triage[KEY].state == "timed_out"


def test_a_decision_takes_the_group_off_the_list_at_once_and_the_router_confirms_it() -> None:
    now = time.time()
    v = ConsoleView()
    v.apply_record(topics.PAGES, b"inc-1", triage_record("held", now - 60))
    msg = actions.triage_decision(v, {"group_key": KEY, "decision": "page_now", "comment": "real outage"}, "ana")
    assert (msg.group_key, msg.incident_id, msg.receiver, msg.decision, msg.responder, msg.comment) == (
        KEY, "inc-1", "pd", "page_now", "ana", "real outage")
    v.apply_triage_decision(msg)
    pending, recent = v.triage_list(now)
    assert pending == [] and recent[0].status == "page now by ana, waiting for the router"
    with pytest.raises(actions.FormError) as err:  # a second click, or someone else's, is refused
        actions.triage_decision(v, {"group_key": KEY, "decision": "dismiss"}, "bo")
    assert err.value.status == 409 and "no longer waiting" in err.value.message
    v.apply_record(topics.PAGES, b"inc-1", triage_record("paged_now", now + 1))
    assert v.triage[KEY].status == "paged: page now by ana"
    for bad, status in [({"group_key": "nope", "decision": "page_now"}, 404),
                        ({"group_key": KEY, "decision": "later"}, 400), ({"decision": "page_now"}, 400)]:
        with pytest.raises(actions.FormError) as err:
            actions.triage_decision(v, bad, "ana")
        assert err.value.status == status, bad


def test_a_decision_read_before_its_hold_record_still_applies() -> None:
    """Another console replica's decision on `triage.decisions` may be read before the hold on `pages`."""
    now = time.time()
    v = ConsoleView()
    d = pb.TriageDecision(group_key=KEY, incident_id="inc-1", receiver="pd", decision="dismissed", responder="bo")
    d.at.CopyFrom(ts_from_epoch(now))
    v.apply_record(topics.TRIAGE_DECISIONS, KEY.encode(), codec.encode(d))
    v.apply_record(topics.PAGES, b"inc-1", triage_record("held", now - 60))
    assert v.triage_list(now)[0] == [] and v.triage[KEY].dismissed


def test_a_dismissal_counts_as_a_wrong_page_in_the_live_precision() -> None:
    now = time.time()
    v = _view()  # inc-1 of brand acme, never paged
    assert v.pages_marked_wrong() == {}
    v.apply_record(topics.PAGES, b"inc-2", trigger_record(now - 100, "inc-2"))  # not an incident the console has
    v.apply_record(topics.PAGES, b"inc-1", triage_record("held", now - 60))
    assert v.pages_marked_wrong() == {}  # held: not a page yet
    v.apply_record(topics.PAGES, b"inc-1", triage_record("dismissed", now))
    assert v.pages_marked_wrong() == {"acme": (1, 1)}
    # A label group (no classifier incident) counts under its brand label.
    v.apply_record(topics.PAGES, b"grp-2", triage_record("held", now, key="pd|root/0|brand=globex",
                                                          incident_id="grp-2", brand="globex"))
    v.apply_record(topics.PAGES, b"grp-2", triage_record("timed_out", now + 600, key="pd|root/0|brand=globex",
                                                          incident_id="grp-2", brand="globex"))
    assert v.pages_marked_wrong() == {"acme": (1, 1)}  # timed out: paged, nobody said it was wrong


def test_a_dismissal_is_page_was_wrong_feedback_counted_once() -> None:
    now = time.time()
    v = _view()
    v.apply_record(topics.PAGES, b"inc-1", triage_record("held", now - 60))
    decision = pb.TriageDecision(group_key=KEY, incident_id="inc-1", receiver="pd", decision="dismissed",
                                 responder="slack:ana", comment="one angry customer", at=ts_from_epoch(now))
    fb = actions.dismissal_feedback(v, decision)
    assert fb is not None and (fb.mention_id, fb.incident_id, fb.brand, fb.responder) == ("", "inc-1", "acme",
                                                                                         "slack:ana")
    assert fb.comment == "dismissed in triage: one angry customer"
    page_now = pb.TriageDecision(group_key=KEY, incident_id="inc-1", decision="page_now", responder="ana")
    assert actions.dismissal_feedback(v, page_now) is None
    for _ in range(2):  # a repeated dismissal (a retry, the consumed copy) is one mark
        v.apply_record(topics.FEEDBACK, b"inc-1", codec.encode(fb))
    v.apply_triage_decision(decision)
    assert v.pages_marked_wrong() == {"acme": (1, 1)}
    v.apply_record(topics.PAGES, b"inc-1", triage_record("dismissed", now + 1))  # the router confirms: still once
    assert v.pages_marked_wrong() == {"acme": (1, 1)}
    assert v.page_feedback["inc-1"]["responder"] == "slack:ana"


async def test_triage_page_forms_publish_a_decision_keyed_by_the_group_and_the_api_lists_it() -> None:
    now = time.time()
    view = _view()
    view.apply_record(topics.PAGES, b"inc-1", triage_record("held", now - 60))
    svc = RecordingService(view)
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/triage")).text()
        assert 'href="/triage"' in html and 'data-group="pd|incident:inc-1"' in html
        assert 'value="page_now"' in html and 'value="dismiss"' in html and 'href="/incidents/inc-1"' in html
        assert "<script>" not in html.split('<script src="/static/console.js">')[0]  # no inline script
        api = await (await client.get("/api/triage")).json()
        assert [e["group_key"] for e in api["pending"]] == [KEY] and 500 < api["pending"][0]["seconds_left"] <= 540
        csrf = CSRF.search(html)
        assert csrf
        r = await client.post("/actions/triage", data={"decision": "dismiss", "group_key": KEY}, allow_redirects=False)
        assert r.status == 403 and svc.published == []  # no CSRF token: nothing published
        r = await client.post("/actions/triage", data={"csrf": csrf.group(1), "group_key": KEY, "decision": "dismiss",
                                                       "comment": "one angry customer", "next": "/triage"},
                              allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/triage"
        topic, key, msg = svc.published[-1]
        assert (topic, key) == (topics.TRIAGE_DECISIONS, KEY) and isinstance(msg, pb.TriageDecision)
        assert msg.decision == "dismissed" and msg.comment == "one angry customer"
        # The dismissal is also "page was wrong" feedback, sent first, keyed by the incident.
        topic, key, fb = svc.published[0]
        assert (topic, key, len(svc.published)) == (topics.FEEDBACK, "inc-1", 2) and isinstance(fb, pb.LabelFeedback)
        assert (fb.mention_id, fb.incident_id, fb.brand) == ("", "inc-1", "acme")
        html = await (await client.get("/triage")).text()
        assert 'id="no-triage"' in html and "dismissed by" in html
        r = await client.post("/actions/triage", data={"csrf": csrf.group(1), "group_key": KEY, "decision": "page_now"})
        assert r.status == 409 and len(svc.published) == 2


async def test_a_read_only_person_sees_the_triage_list_without_forms() -> None:
    tokens = [ConsoleToken(name="viewer", token="viewer-token-0123456789", role="read-only")]  # type: ignore[arg-type]
    view = _view()
    view.apply_record(topics.PAGES, b"inc-1", triage_record("held", time.time()))
    svc = RecordingService(view, console_tokens=tokens)
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        csrf = CSRF.search(await (await client.get("/login")).text())
        assert csrf
        r = await client.post("/login", data={"csrf": csrf.group(1), "token": "viewer-token-0123456789",
                                              "next": "/triage"})
        html = await r.text()
        assert r.status == 200 and 'data-group="pd|incident:inc-1"' in html and 'action="/actions/triage"' not in html
        csrf = CSRF.search(html)
        assert csrf
        r = await client.post("/actions/triage", data={"csrf": csrf.group(1), "group_key": KEY, "decision": "dismiss"})
        assert r.status == 403 and svc.published == []


async def test_the_incident_pages_show_a_hold_greyed_and_the_page_over_it() -> None:
    now = time.time()
    v = _view()
    v.apply_record(topics.PAGES, b"inc-1", triage_record("held", now - 60))
    assert latest_pages(v, "inc-1") == {"pd": ("triage", False, "held")}
    v.apply_record(topics.PAGES, b"inc-1", trigger_record(now))
    v.apply_record(topics.PAGES, b"inc-1", triage_record("paged_now", now + 0.2))
    assert latest_pages(v, "inc-1") == {"pd": ("trigger", True, "delivered")}  # the page, not its triage record
    svc = RecordingService(v)
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/incidents/inc-1")).text()
    assert '<td>triage</td><td class="muted">paged-now</td>' in html and '<td class="muted">held</td>' in html
