"""The console's pages and API over a prepared view (no Kafka): content, 4xx pages, CSRF."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from test_console_views import T0, incident, q, routed

from services.common import topics
from services.common.codec import pb
from services.console.app import ConsoleService, build_app
from services.console.config import ConsoleSettings
from services.console.views import ConsoleView


class RecordingService(ConsoleService):
    def __init__(self, view: ConsoleView, **settings: Any) -> None:
        super().__init__(ConsoleSettings(kafka_bootstrap="127.0.0.1:1", **settings), view, consume=False)
        self.published: list[tuple[str, str, object]] = []

    async def publish(self, topic: str, key: str, msg: object) -> None:  # type: ignore[override]
        self.published.append((topic, key, msg))

    async def publish_many(self, topic: str, records: list[tuple[str, Any]]) -> list[BaseException | None]:
        self.published.extend((topic, key, msg) for key, msg in records)
        return [None] * len(records)


def _view() -> ConsoleView:
    v = ConsoleView()
    v.apply_record(topics.INCIDENTS, b"inc-1", incident())
    v.apply_record(q("urgent"), b"x:1", routed("1", pb.P1, incident="inc-1", respond_by=T0 + 60, lang="es"))
    v.apply_record(q("urgent"), b"x:2", routed("2", pb.P2, intent="question"))
    return v


async def test_pages_api_and_actions() -> None:
    svc = RecordingService(_view())
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        r = await client.get("/")
        html = await r.text()
        assert r.status == 200 and "inc-1" in html and "outage cluster" in html
        r = await client.get("/incidents/inc-1")
        html = await r.text()
        assert "<svg" in html and "https://x.com/u/status/1" in html and "32 outage reports" in html
        r = await client.get("/queues/urgent")
        html = await r.text()
        assert "overdue by" in html and "breached" in html and "Hola @ana" in html
        assert html.index("x:1") < html.index("x:2")
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]

        api = await (await client.get("/api/queues/urgent")).json()
        assert [i["mention_id"] for i in api["items"]] == ["x:1", "x:2"] and api["items"][0]["breached"]
        assert (await (await client.get("/api/incidents")).json())["incidents"][0]["id"] == "inc-1"

        form = {"csrf": token, "queue": "urgent", "mention_id": "x:1", "kind": "responded", "next": "/queues/urgent"}
        r = await client.post("/actions/response", data=form, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/queues/urgent"
        topic, key, ev = svc.published[-1]
        assert topic == topics.RESPONSES and key == "x:1" and ev.kind == pb.RESPONDED  # type: ignore[attr-defined]
        assert [i["mention_id"] for i in (await (await client.get("/api/queues/urgent")).json())["items"]] == ["x:2"]

        r = await client.post("/actions/feedback", data={"csrf": token, "queue": "urgent", "mention_id": "x:2",
                                                         "corrected_priority": "P4"}, allow_redirects=False)
        assert r.status == 303 and svc.published[-1][0] == topics.FEEDBACK

        # Bad input: clear 4xx pages, nothing published.
        n = len(svc.published)
        r = await client.post("/actions/response", data={**form, "csrf": "0" * 40})
        assert r.status == 403 and "CSRF" in await r.text()
        r = await client.post("/actions/response", data={**form, "mention_id": "x:nope"})
        assert r.status == 404 and "no item" in await r.text()
        r = await client.post("/actions/response", data={**form, "mention_id": "x:2", "kind": "bogus"})
        assert r.status == 400
        r = await client.post("/actions/response", data=b"{}", headers={"Content-Type": "application/json"})
        assert r.status == 415
        assert len(svc.published) == n
        assert (await client.get("/incidents/nope")).status == 404
        assert (await client.get("/queues/nope")).status == 404
        assert (await client.get("/api/queues/nope")).status == 404
        assert (await client.get("/queues/normal")).status == 200  # a default queue with nothing yet
        r = await client.get("/static/console.js")
        assert r.status == 200 and "setInterval" in await r.text()


async def test_tokens_sign_in_and_read_only_cannot_act() -> None:
    from services.console.config import ConsoleToken

    tokens = [ConsoleToken(name="li", token="responder-token-0123456789"),  # type: ignore[arg-type]
              ConsoleToken(name="viewer", token="viewer-token-0123456789", role="read-only")]  # type: ignore[arg-type]
    svc = RecordingService(_view(), console_tokens=tokens)
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        r = await client.get("/queues/urgent", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/login?next=")
        assert (await client.get("/api/incidents")).status == 401
        assert (await client.get("/healthz")).status == 200
        page = await (await client.get("/login?next=/queues/urgent")).text()
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
        r = await client.post("/login", data={"csrf": token, "token": "wrong", "next": "/queues/urgent"})
        assert r.status == 401 and "not accepted" in await r.text()

        async def sign_in(secret: str) -> str:
            page = await (await client.get("/login")).text()
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
            r = await client.post("/login", data={"csrf": csrf, "token": secret, "next": "/queues/urgent"},
                                  allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/queues/urgent"
            html = await (await client.get("/queues/urgent")).text()
            assert secret not in html
            return html

        html = await sign_in("viewer-token-0123456789")
        assert "viewer (read-only)" in html and 'class="responded"' not in html
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]
        r = await client.post("/actions/response", data={"csrf": csrf, "queue": "urgent", "mention_id": "x:1",
                                                         "kind": "responded"})
        assert r.status == 403 and not svc.published

        html = await sign_in("responder-token-0123456789")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]
        r = await client.post("/actions/response", data={"csrf": csrf, "queue": "urgent", "mention_id": "x:1",
                                                         "kind": "responded", "responder": "someone-else"},
                              allow_redirects=False)
        assert r.status == 303
        assert svc.published[-1][2].responder == "li"  # type: ignore[attr-defined]
