"""Who is using the console: off by default (anyone on 127.0.0.1 may act), or tokens and an SSO header.

With `TRIAGE_CONSOLE_TOKENS` set, a person signs in with a token once and the session cookie carries
them; a `read-only` token sees every page but no action. With `TRIAGE_CONSOLE_PROXY_USER_HEADER`
set, an authenticating proxy in front names the user in that header (only set it where the console
is reachable through the proxy alone). Tokens are compared in constant time and never shown or logged.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from services.console.config import ConsoleToken

RESPONDER = "responder"
READ_ONLY = "read-only"
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class Identity:
    name: str
    role: str

    @property
    def can_act(self) -> bool:
        return self.role == RESPONDER


ANONYMOUS = Identity("", RESPONDER)


class Access:
    def __init__(self, tokens: list[ConsoleToken], proxy_user_header: str = "") -> None:
        self._tokens = [(t.name, t.role, t.token.get_secret_value().encode()) for t in tokens]
        self.proxy_user_header = proxy_user_header
        self._sessions: OrderedDict[str, Identity] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return bool(self._tokens) or bool(self.proxy_user_header)

    def identify(self, session: str | None, headers: Mapping[str, str]) -> Identity | None:
        """The person behind a request, None when they must sign in first."""
        if not self.enabled:
            return ANONYMOUS
        if self.proxy_user_header:
            user = headers.get(self.proxy_user_header, "").strip()
            if user:
                return Identity(user[:64], RESPONDER)
        if session and session in self._sessions:
            return self._sessions[session]
        return None

    def login(self, session: str, token: str) -> Identity | None:
        given = token.encode()
        found: Identity | None = None
        for name, role, secret in self._tokens:
            # Compare with every token, so the time taken does not say which one nearly matched.
            if hmac.compare_digest(secret, given) and found is None:
                found = Identity(name, role)
        if found is not None:
            self._sessions[session] = found
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return found

    def logout(self, session: str | None) -> None:
        if session:
            self._sessions.pop(session, None)
