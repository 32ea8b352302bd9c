"""Attacks on the console, each run against the aiohttp app and asserted to fail: anonymous actions,
a forged SSO header, open redirects after sign-in, sign-in guessing, framing, planted session cookies."""

from __future__ import annotations

import re
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError
from test_console_app import RecordingService, _view

from services.console.access import Access, same_origin_path
from services.console.app import build_app
from services.console.config import ConsoleSettings, ConsoleToken

RESPONDER_TOKEN = "responder-token-0123456789"


def _service(**settings: Any) -> RecordingService:
    return RecordingService(_view(), **{"insecure_dev": False, **settings})


def _tokens() -> list[ConsoleToken]:
    return [ConsoleToken(name="li", token=RESPONDER_TOKEN)]  # type: ignore[arg-type]


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]


def _csrf_of_session(client: TestClient, svc: RecordingService) -> str:
    """The CSRF token of the client's session, as a page with a form would carry it."""
    cookie = {c.key: c.value for c in client.session.cookie_jar}["triage_console_session"]
    return svc.csrf.token(svc.csrf.unseal(cookie) or "")


ACTION = {"queue": "urgent", "mention_id": "x:1", "kind": "responded"}


async def test_without_credentials_the_anonymous_visitor_is_read_only():
    svc = _service()
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/queues/urgent")).text()
        assert 'class="responded"' not in html and "read-only" in html  # no action buttons
        csrf = _csrf_of_session(client, svc)
        r = await client.post("/actions/response", data={**ACTION, "csrf": csrf})
        assert r.status == 403 and not svc.published
        silence = await client.post("/actions/silence", data={"csrf": csrf, "incident_id": "inc-1",
                                                               "minutes": "43200"})
        assert silence.status == 403 and not svc.published


async def test_dev_mode_alone_lets_the_anonymous_visitor_act():
    svc = _service(insecure_dev=True)
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/queues/urgent")).text()
        r = await client.post("/actions/response", data={**ACTION, "csrf": _csrf(html)}, allow_redirects=False)
        assert r.status == 303 and len(svc.published) == 1


def test_proxy_header_without_trusted_proxies_is_refused_at_start():
    with pytest.raises(ValidationError, match="TRIAGE_CONSOLE_TRUSTED_PROXIES"):
        ConsoleSettings(console_proxy_user_header="X-Forwarded-User")


async def test_spoofed_proxy_header_from_an_untrusted_peer_is_ignored():
    svc = _service(console_proxy_user_header="X-Forwarded-User", console_trusted_proxies=["10.0.0.0/8"],
                   console_proxy_roles={"boss": "responder"})
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:  # the peer is 127.0.0.1
        spoof = {"X-Forwarded-User": "boss", "X-Forwarded-For": "10.0.0.7"}
        assert (await client.get("/api/incidents", headers=spoof)).status == 401
        r = await client.get("/queues/urgent", headers=spoof, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/login")
        r = await client.post("/actions/response", data={**ACTION, "csrf": "0" * 40}, headers=spoof)
        assert r.status == 401 and not svc.published


async def test_proxy_users_are_read_only_unless_the_role_mapping_says_otherwise():
    svc = _service(console_proxy_user_header="X-Forwarded-User", console_trusted_proxies=["127.0.0.1/32"],
                   console_proxy_roles={"ana": "responder"})
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/queues/urgent", headers={"X-Forwarded-User": "bob"})).text()
        assert "read-only" in html
        csrf = _csrf_of_session(client, svc)
        r = await client.post("/actions/response", data={**ACTION, "csrf": csrf},
                              headers={"X-Forwarded-User": "bob"})
        assert r.status == 403 and not svc.published
        r = await client.post("/actions/response", data={**ACTION, "csrf": csrf},
                              headers={"X-Forwarded-User": "ana"}, allow_redirects=False)
        assert r.status == 303 and svc.published[-1][2].responder == "ana"  # type: ignore[attr-defined]


def test_sessions_end_when_idle_and_after_the_absolute_limit():
    now = [1000.0]
    settings = ConsoleSettings(console_tokens=_tokens(), console_session_idle_seconds=60,
                               console_session_max_seconds=300, insecure_dev=False)
    access = Access(settings, clock=lambda: now[0])
    assert access.login("s1", RESPONDER_TOKEN) is not None
    now[0] += 59
    assert access.identify("s1", {}, "127.0.0.1") is not None
    now[0] += 61  # idle for 61 s
    assert access.identify("s1", {}, "127.0.0.1") is None
    access.login("s2", RESPONDER_TOKEN)
    for _ in range(7):  # active every 50 s, yet 350 s after sign-in
        now[0] += 50
        who = access.identify("s2", {}, "127.0.0.1")
    assert who is None


OPEN_REDIRECTS = ["/\t/evil.example", "/\n/evil.example", "/\\evil.example", "\\/evil.example", "//evil.example",
                  "/%09/evil.example", "/%0a/evil.example", "/%5Cevil.example", "/%2F/evil.example",
                  "https://evil.example/", "javascript:alert(1)", "/\r\nSet-Cookie: a=b", " /x", "/\u2028/x", ""]


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
def test_same_origin_path_refuses_what_a_browser_reads_as_another_host(target):
    assert not same_origin_path(target)


@pytest.mark.parametrize("target", ["/", "/queues/urgent", "/incidents/inc%201?x=1#top", "/queues/café"])
def test_same_origin_path_keeps_our_own_paths(target):
    assert same_origin_path(target)


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
async def test_sign_in_never_redirects_to_another_host_nor_fails(target):
    svc = _service(console_tokens=_tokens())
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        page = await client.get("/login", params={"next": target})
        assert page.status == 200 and 'name="next" value="/"' in await page.text()
        r = await client.post("/login", data={"csrf": _csrf(await page.text()), "token": RESPONDER_TOKEN,
                                              "next": target}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/"


async def test_sign_in_is_throttled_per_client_and_forwarded_for_does_not_escape_it():
    svc = _service(console_tokens=_tokens(), console_login_attempts_per_minute=3)
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        csrf = _csrf(await (await client.get("/login")).text())
        codes = []
        for i in range(5):  # a new X-Forwarded-For each time: not a trusted proxy, so ignored
            r = await client.post("/login", data={"csrf": csrf, "token": f"guess-{i}"},
                                  headers={"X-Forwarded-For": f"203.0.113.{i}"})
            codes.append(r.status)
        assert codes == [401, 401, 401, 429, 429]
        r = await client.post("/login", data={"csrf": csrf, "token": RESPONDER_TOKEN})
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1  # even the right token waits


async def test_cookie_is_signed_secure_host_prefixed_and_the_console_cannot_be_framed():
    svc = _service(console_tokens=_tokens(), console_url="https://triage.example.com")
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        page = await client.get("/login")
        csp = page.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and page.headers["X-Frame-Options"] == "DENY"
        cookie = page.headers["Set-Cookie"]
        assert cookie.startswith("__Host-triage_console_session=")
        for attr in ("Secure", "HttpOnly", "Path=/", "SameSite=Strict"):
            assert attr in cookie
        assert "Domain" not in cookie


async def test_a_planted_session_cookie_is_replaced_not_used():
    svc = _service(console_tokens=_tokens())
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        planted = "attacker-chosen-session-id"
        client.session.cookie_jar.update_cookies({"triage_console_session": planted})
        page = await client.get("/login")
        assert planted not in page.headers.get("Set-Cookie", "") and "triage_console_session=" in \
            page.headers["Set-Cookie"]
        # The planted id's CSRF token (computable by whoever can read a page served with it) is worthless.
        r = await client.post("/login", data={"csrf": svc.csrf.token(planted), "token": RESPONDER_TOKEN},
                              cookies={"triage_console_session": planted})
        assert r.status == 403


async def test_every_action_is_logged_with_who_did_it(monkeypatch):
    import services.console.app as console_app

    svc = _service(console_tokens=_tokens())
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        csrf = _csrf(await (await client.get("/login")).text())
        await client.post("/login", data={"csrf": csrf, "token": RESPONDER_TOKEN})
        html = await (await client.get("/queues/urgent")).text()
        # An earlier test's configure_logging("WARNING") filters info calls in the logger's wrapper class,
        # before any processor (and caches it): capture with structlog's defaults and a fresh console logger.
        saved = structlog.get_config()
        structlog.reset_defaults()
        try:
            with structlog.testing.capture_logs() as logs:
                monkeypatch.setattr(console_app, "log", structlog.get_logger("console"))
                r = await client.post("/actions/response", data={**ACTION, "csrf": _csrf(html)},
                                      allow_redirects=False)
        finally:
            structlog.configure(**saved)
        assert r.status == 303
        audit = [e for e in logs if e["event"] == "console_action"]
        assert audit == [{"event": "console_action", "log_level": "info", "path": "/actions/response", "user": "li",
                          "role": "responder", "client": "127.0.0.1", "status": 303}]
        assert svc.published[-1][2].responder == "li"  # type: ignore[attr-defined]
