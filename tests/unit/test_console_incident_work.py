"""An incident's items worked as one: mark all responded / resolved, reply to all with the status update in
each post's language, exclude a post that is not about the incident (no Kafka: a recording publisher)."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_console_app import RecordingService
from test_console_queue_work import _outage_view
from test_console_views import incident, q, routed

from services.common import codec, topics
from services.common.codec import pb
from services.console import actions
from services.console.app import build_app
from services.console.config import DEFAULT_REPLIES_FILE
from services.console.replies import REQUIRED_LANGUAGES, ReplyBook


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]


def test_bulk_response_is_one_event_per_open_item_and_none_twice() -> None:
    v = _outage_view()
    v.apply_record(q("normal"), b"x:n1", routed("n1", pb.P3, queue="normal", incident="inc-9"))
    events = actions.bulk_response(v, {"incident_id": "inc-9", "kind": "responded"}, "li")
    assert sorted(e.mention_id for e in events) == sorted([f"x:o{k}" for k in range(12)] + ["x:n1"])
    assert {e.responder for e in events} == {"li"} and {e.kind for e in events} == {pb.RESPONDED}
    assert [e.queue for e in events if e.mention_id == "x:n1"] == ["normal"]
    only_urgent = actions.bulk_response(v, {"incident_id": "inc-9", "kind": "responded", "queue": "urgent"}, "li")
    assert len(only_urgent) == 12
    for ev in events[:5]:
        v.apply_response(ev)
    again = actions.bulk_response(v, {"incident_id": "inc-9", "kind": "resolved_no_reply"}, "li")
    assert len(again) == 8 and not {e.mention_id for e in again} & {e.mention_id for e in events[:5]}
    with pytest.raises(actions.FormError) as err:
        actions.bulk_response(v, {"incident_id": "inc-nope", "kind": "responded"}, "li")
    assert err.value.status == 404
    with pytest.raises(actions.FormError):
        actions.bulk_response(v, {"incident_id": "inc-9", "kind": "ignored"}, "li")


def test_reply_to_all_fills_each_posts_language_author_and_link() -> None:
    v = _outage_view(3)  # o0 en, o1 es, o2 de
    book = ReplyBook.load(DEFAULT_REPLIES_FILE)
    form = {"incident_id": "inc-9", "status_page": "https://status.acme.test/i/9",
            "reply_en": book.status_update("en", "acme"), "reply_es": book.status_update("es", "acme")}
    events = {e.mention_id: e for e in actions.bulk_reply(v, form, "li")}
    assert events["x:o0"].reply.startswith("Hi @ana,") and "https://status.acme.test/i/9" in events["x:o0"].reply
    assert events["x:o1"].reply.startswith("Hola @ana,") and "{" not in events["x:o1"].reply
    assert events["x:o2"].reply.startswith("Hi @ana,")  # no German text in the form: English
    assert all(e.kind == pb.RESPONDED for e in events.values())
    with pytest.raises(actions.FormError, match="give its link"):
        actions.bulk_reply(v, {**form, "status_page": ""}, "li")
    with pytest.raises(actions.FormError, match="https://"):
        actions.bulk_reply(v, {**form, "status_page": "javascript:alert(1)"}, "li")


@pytest.mark.parametrize("lang", REQUIRED_LANGUAGES)
def test_status_update_template_in_every_language(lang: str) -> None:
    text = ReplyBook.load(DEFAULT_REPLIES_FILE).status_update(lang, "acmebank")
    assert "{author}" in text and "{status_page}" in text and text.endswith("Acme Bank care")


def test_excluded_item_leaves_the_incident_and_is_not_counted_wrong() -> None:
    v = _outage_view(3)
    fb = actions.exclusion(v, {"queue": "urgent", "mention_id": "x:o1", "comment": "about billing"}, "li")
    assert fb.not_in_incident == "inc-9" and fb.corrected_priority == pb.PRIORITY_UNSPECIFIED
    v.apply_record(topics.FEEDBACK, b"x:o1", codec.encode(fb))
    assert [i.mention_id for i in v.incident_items("inc-9")] == ["x:o0", "x:o2"]
    assert v.marked_wrong() == {"acme": (0, 4)}  # 3 P1 outage posts and the P2 complaint, none marked
    # A rebuild reads the routed item again after the feedback: it stays out.
    v.apply_record(q("urgent"), b"x:o1", routed("o1", pb.P1, incident="inc-9", intent="outage_report", lang="es"))
    assert [i.mention_id for i in v.incident_items("inc-9")] == ["x:o0", "x:o2"]
    with pytest.raises(actions.FormError) as err:
        actions.exclusion(v, {"queue": "urgent", "mention_id": "x:o1"}, "li")
    assert err.value.status == 409


async def test_incident_group_actions_from_the_pages() -> None:
    svc = RecordingService(_outage_view())
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/queues/urgent?incident=inc-9")).text()
        assert "mark all 12 responded" in html and 'name="reply_es"' in html and "{status_page}" in html
        assert html.count('class="exclude"') == 12
        csrf = _csrf(html)
        form = {"csrf": csrf, "incident_id": "inc-9", "queue": "urgent", "kind": "responded",
                "next": "/queues/urgent?incident=inc-9"}
        r = await client.post("/actions/incident/response", data=form, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/queues/urgent?incident=inc-9"
        assert len(svc.published) == 12 and {t for t, _, _ in svc.published} == {topics.RESPONSES}
        assert sorted(k for _, k, _ in svc.published) == sorted(f"x:o{k}" for k in range(12))
        # A second click (or a second tab) records nothing again.
        r = await client.post("/actions/incident/response", data=form, allow_redirects=False)
        assert r.status == 303 and len(svc.published) == 12
        html = await (await client.get("/queues/urgent")).text()
        assert 'class="group"' not in html and "2 open" in html


async def test_incident_page_groups_its_items_and_excludes_one() -> None:
    v = _outage_view(0)
    v.apply_record(topics.INCIDENTS, b"inc-1", incident())
    for k, lang in enumerate(["en", "es", "es"]):
        v.apply_record(q("urgent"), f"x:i{k}".encode(), routed(f"i{k}", pb.P1, incident="inc-1", lang=lang))
    svc = RecordingService(v)
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/incidents/inc-1")).text()
        assert 'class="group" data-incident="inc-1"' in html and "3 open items" in html
        assert "languages: es 2, en 1" in html and "es (2 posts)" in html
        r = await client.post("/actions/exclude", data={"csrf": _csrf(html), "queue": "urgent", "mention_id": "x:i2",
                                                        "next": "/incidents/inc-1"}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/incidents/inc-1"
        topic, key, fb = svc.published[-1]
        assert topic == topics.FEEDBACK and key == "x:i2" and fb.not_in_incident == "inc-1"  # type: ignore[attr-defined]
        html = await (await client.get("/incidents/inc-1")).text()
        assert "2 open items" in html and 'data-mention="x:i2"' not in html
