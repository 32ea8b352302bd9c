"""The session cookie and CSRF protection.

The cookie holds a random session id signed with the console's key (`seal`/`unseal`): a value the
console did not issue is ignored and replaced, so no one can plant a session id of their choosing.
Served over HTTPS it is named `__Host-…` and marked `Secure` (a browser then refuses it from a sibling
subdomain or plain HTTP); it is always HttpOnly and SameSite=Strict. Every form carries an HMAC of the
session id under the same key (a different message, so the form token is not the cookie's signature);
a cross-site form cannot read the cookie, so it cannot compute the token. The key is random per process
unless `TRIAGE_CONSOLE_CSRF_SECRET` is set (set it: sessions and forms then survive a restart and work
across replicas).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

COOKIE = "triage_console_session"
SECURE_COOKIE = "__Host-" + COOKIE


def cookie_name(https: bool) -> str:
    return SECURE_COOKIE if https else COOKIE


class CsrfGuard:
    def __init__(self, key: bytes | str = b"") -> None:
        raw = key.encode() if isinstance(key, str) else key
        self._key = raw or secrets.token_bytes(32)

    @staticmethod
    def new_session() -> str:
        return secrets.token_urlsafe(24)

    def token(self, session: str) -> str:
        return hmac.new(self._key, session.encode(), hashlib.sha256).hexdigest()[:40]

    def check(self, session: str | None, token: str | None) -> bool:
        if not session or not token:
            return False
        return hmac.compare_digest(self.token(session), token)

    def _cookie_mac(self, session: str) -> str:
        return hmac.new(self._key, b"cookie:" + session.encode(), hashlib.sha256).hexdigest()[:32]

    def seal(self, session: str) -> str:
        """The cookie value of a session id: the id and its signature."""
        return f"{session}.{self._cookie_mac(session)}"

    def unseal(self, value: str | None) -> str | None:
        """The session id of a cookie this console issued, else None."""
        if not value or len(value) > 128 or not value.isascii():
            return None
        session, _, mac = value.rpartition(".")
        if not session or not hmac.compare_digest(self._cookie_mac(session), mac):
            return None
        return session
