"""CSRF protection: a random session cookie and, in every form, an HMAC of it under the console's key.

A cross-site form cannot read the cookie's value, so it cannot compute the token; the cookie is also
SameSite=Strict. The key is random per process unless `TRIAGE_CONSOLE_CSRF_SECRET` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

COOKIE = "triage_console_session"


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
