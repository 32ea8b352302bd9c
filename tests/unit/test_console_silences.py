"""Silences from the incident page: the form, its checks, expiry and the list (no Kafka: a recording publisher)."""

from __future__ import annotations

import re
import time
from html import unescape

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_console_app import RecordingService, _view
from test_console_views import incident

from services.common import codec, topics
from services.common.codec import pb
from services.common.timeutil import epoch, ts_from_epoch
from services.console import actions
from services.console.app import build_app
from services.console.config import ConsoleToken
from services.console.views import ConsoleView

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def _csrf(html: str) -> str:
    m = CSRF.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def test_new_silence_from_form_and_its_errors() -> None:
    v = ConsoleView()
    v.apply_record(topics.INCIDENTS, b"inc-1", incident())
    now = 1_800_000_000.0
    form = {"incident_id": "inc-1", "matchers": 'brand="acme"\r\n incident="inc-1" \n', "duration": "1h30m",
            "comment": "status page is up", "created_by": "ana"}
    msg = actions.new_silence(v, form, "console", now)
    assert list(msg.matchers) == ['brand="acme"', 'incident="inc-1"'] and msg.incident_id == "inc-1"
    assert epoch(msg.ends_at) - epoch(msg.starts_at) == 5400 and msg.created_by == "ana" and len(msg.id) == 32
    assert actions.new_silence(v, {**form, "created_by": ""}, "console", now).created_by == "console"
    for bad, status, text in [
        ({"incident_id": "nope"}, 404, "no incident"),
        ({"matchers": ""}, 400, "at least one matcher"),
        ({"matchers": 'brand=~".*"'}, 400, "empty label value"),
        ({"matchers": "brand acme"}, 400, "bad matcher"),
        ({"duration": "forever"}, 400, "bad duration"),
        ({"duration": "10s"}, 400, "between 1m and 30d"),
        ({"duration": "31d"}, 400, "between 1m and 30d"),
        ({"comment": " "}, 400, "'comment' is missing"),
        ({"matchers": "\n".join(f'brand="b{i}"' for i in range(21))}, 400, "at most 20"),
    ]:
        with pytest.raises(actions.FormError) as err:
            actions.new_silence(v, {**form, **bad}, "console", now)
        assert err.value.status == status and text in err.value.message, bad


def test_expire_republishes_with_ends_at_now() -> None:
    v = ConsoleView()
    v.apply_record(topics.INCIDENTS, b"inc-1", incident())
    now = 1_800_000_000.0
    created = actions.new_silence(v, {"incident_id": "inc-1", "matchers": 'brand="acme"', "duration": "2h",
                                      "comment": "launch", "created_by": "ana"}, "console", now)
    v.apply_record(topics.SILENCES, created.id.encode(), codec.encode(created))
    exp = actions.expired_silence(v, {"silence_id": created.id, "created_by": "bo"}, "console", now + 60)
    assert exp.id == created.id and epoch(exp.ends_at) == now + 60 and exp.expired_by == "bo"
    assert exp.created_by == "ana" and list(exp.matchers) == ['brand="acme"'] and exp.comment == "launch"
    v.apply_record(topics.SILENCES, exp.id.encode(), codec.encode(exp))
    with pytest.raises(actions.FormError) as err:
        actions.expired_silence(v, {"silence_id": created.id}, "console", now + 61)
    assert err.value.status == 409
    with pytest.raises(actions.FormError) as err:
        actions.expired_silence(v, {"silence_id": "nope"}, "console", now)
    assert err.value.status == 404


def test_view_lists_the_silences_that_mute_an_incident() -> None:
    v = ConsoleView()
    v.apply_record(topics.INCIDENTS, b"inc-1", incident())
    inc = v.incidents["inc-1"]
    now = 1_800_000_000.0

    def put(sid: str, matchers: list[str], made_from: str = "", end: float = now + 600) -> None:
        s = pb.Silence(id=sid, matchers=matchers, incident_id=made_from, starts_at=ts_from_epoch(now - 60),
                       ends_at=ts_from_epoch(end))
        v.apply_record(topics.SILENCES, sid.encode(), codec.encode(s))

    put("mine", ['intent="complaint"'], made_from="inc-1")   # made from its page: listed whatever it matches
    put("brand", ['brand="acme"'])                           # names only brand/incident and holds: listed
    put("other-brand", ['brand="globex"'])
    put("other-label", ['brand="acme"', 'intent="praise"'])  # mutes only some mentions: not claimed here
    put("over", ['brand="acme"'], end=now - 1)
    assert [s.id for s in v.silences_for(inc, now)] == ["brand", "mine"]
    v.apply_record(topics.SILENCES, b"brand", None)          # tombstone
    assert [s.id for s in v.silences_for(inc, now)] == ["mine"]
    with pytest.raises(ValueError):
        v.apply_record(topics.SILENCES, b"bad", b"\xff\xff")


async def test_incident_page_form_list_expire_and_api() -> None:
    svc = RecordingService(_view())
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/incidents/inc-1")).text()
        # The matchers start as the incident's labels (entity-escaped in the page: Jinja2 writes &#34;).
        assert 'action="/actions/silence"' in html and 'brand="acme"\nincident="inc-1"' in unescape(html)
        assert 'id="no-silences"' in html
        csrf = _csrf(html)
        form = {"csrf": csrf, "incident_id": "inc-1", "matchers": 'brand="acme"\nincident="inc-1"', "duration": "2h",
                "comment": "status page is up", "created_by": "ana", "next": "/incidents/inc-1"}
        r = await client.post("/actions/silence", data=form, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/incidents/inc-1"
        topic, key, msg = svc.published[-1]
        assert topic == topics.SILENCES and key == msg.id  # type: ignore[attr-defined]
        html = await (await client.get("/incidents/inc-1")).text()
        assert f'class="silence" data-id="{key}"' in html and "status page is up" in html and "active" in html
        api = await (await client.get("/api/incidents/inc-1")).json()
        assert [s["id"] for s in api["silences"]] == [key] and api["silences"][0]["state"] == "active"
        listed = await (await client.get("/api/silences?state=active")).json()
        assert [s["matchers"] for s in listed["silences"]] == [['brand="acme"', 'incident="inc-1"']]
        assert (await client.get("/api/silences?state=bogus")).status == 400

        r = await client.post("/actions/silence/expire", data={"csrf": csrf, "silence_id": key, "created_by": "bo"},
                              allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/incidents/inc-1"
        assert svc.published[-1][0] == topics.SILENCES and svc.published[-1][2].expired_by == "bo"  # type: ignore[attr-defined]
        assert epoch(svc.published[-1][2].ends_at) <= time.time()  # type: ignore[attr-defined]
        assert 'id="no-silences"' in await (await client.get("/incidents/inc-1")).text()
        assert (await (await client.get("/api/silences?state=expired")).json())["silences"][0]["id"] == key

        n = len(svc.published)
        r = await client.post("/actions/silence", data={**form, "csrf": "0" * 40})
        assert r.status == 403 and "CSRF" in await r.text()
        r = await client.post("/actions/silence", data={**form, "matchers": 'brand=~".*"'})
        assert r.status == 400 and "empty label value" in await r.text()
        r = await client.post("/actions/silence", data={**form, "incident_id": "nope"})
        assert r.status == 404
        r = await client.post("/actions/silence/expire", data={"csrf": csrf, "silence_id": key})
        assert r.status == 409 and "already expired" in await r.text()
        assert len(svc.published) == n


async def test_read_only_sees_silences_but_cannot_create_and_author_is_the_signed_in_person() -> None:
    tokens = [ConsoleToken(name="li", token="responder-token-0123456789"),  # type: ignore[arg-type]
              ConsoleToken(name="viewer", token="viewer-token-0123456789", role="read-only")]  # type: ignore[arg-type]
    svc = RecordingService(_view(), console_tokens=tokens)
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        async def sign_in(secret: str) -> str:
            csrf = _csrf(await (await client.get("/login")).text())
            r = await client.post("/login", data={"csrf": csrf, "token": secret, "next": "/incidents/inc-1"})
            assert r.status == 200
            return await r.text()

        html = await sign_in("viewer-token-0123456789")
        assert "<h2>Silences</h2>" in html and 'action="/actions/silence"' not in html
        r = await client.post("/actions/silence", data={"csrf": _csrf(html), "incident_id": "inc-1",
                                                        "matchers": 'brand="acme"', "duration": "1h", "comment": "x"})
        assert r.status == 403 and not svc.published
        html = await sign_in("responder-token-0123456789")
        assert 'name="created_by"' not in html  # the author is the signed-in person
        r = await client.post("/actions/silence", data={"csrf": _csrf(html), "incident_id": "inc-1",
                                                        "matchers": 'brand="acme"', "duration": "1h", "comment": "x",
                                                        "created_by": "someone-else"}, allow_redirects=False)
        assert r.status == 303 and svc.published[-1][2].created_by == "li"  # type: ignore[attr-defined]
