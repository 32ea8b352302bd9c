"""Who is using the console, and whether they may act.

- Sign-in tokens (`TRIAGE_CONSOLE_TOKENS`): a person signs in once; the session cookie (a random id,
  signed with the console's key, see csrf.py) carries them. A session ends after
  `TRIAGE_CONSOLE_SESSION_IDLE_SECONDS` unused or `TRIAGE_CONSOLE_SESSION_MAX_SECONDS` after sign-in.
  Failed sign-ins are throttled per client (`LoginThrottle`). Tokens are compared in constant time and
  never shown or logged.
- An authenticating proxy (`TRIAGE_CONSOLE_PROXY_USER_HEADER`) names the user, believed only when the
  request's peer is in `TRIAGE_CONSOLE_TRUSTED_PROXIES`; the user's role comes from
  `TRIAGE_CONSOLE_PROXY_ROLES`, read-only unless listed.
- Neither: everyone is `ANONYMOUS`, read-only; only `TRIAGE_INSECURE_DEV=1` (make demo/up) makes the
  anonymous visitor a responder (`DEV_RESPONDER`). Bound beyond loopback, the console does not start
  without one of the two (config.py `missing_credentials`).
`same_origin_path` decides where a form may send the browser next (never another host).
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from services.common.exposure import in_networks
from services.console.config import ConsoleSettings

RESPONDER = "responder"
READ_ONLY = "read-only"
MAX_SESSIONS = 10_000
MAX_PROXY_USER_CHARS = 64


@dataclass(frozen=True)
class Identity:
    name: str
    role: str

    @property
    def can_act(self) -> bool:
        return self.role == RESPONDER


ANONYMOUS = Identity("", READ_ONLY)
DEV_RESPONDER = Identity("", RESPONDER)  # TRIAGE_INSECURE_DEV=1 only


@dataclass
class _Session:
    who: Identity
    started: float
    last_seen: float


class Access:
    def __init__(self, settings: ConsoleSettings, clock: Callable[[], float] = time.time) -> None:
        self._tokens = [(t.name, t.role, t.token.get_secret_value().encode()) for t in settings.console_tokens]
        self.proxy_user_header = settings.console_proxy_user_header
        self.trusted_proxies = list(settings.console_trusted_proxies)
        self.proxy_roles = dict(settings.console_proxy_roles)
        self.proxy_default_role = settings.console_proxy_default_role
        self.insecure_dev = settings.insecure_dev
        self.idle_seconds = settings.console_session_idle_seconds
        self.max_seconds = settings.console_session_max_seconds
        self._clock = clock
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return bool(self._tokens) or bool(self.proxy_user_header)

    def identify(self, session: str | None, headers: Mapping[str, str], peer: str | None) -> Identity | None:
        """The person behind a request, None when they must sign in first."""
        if not self.enabled:
            return DEV_RESPONDER if self.insecure_dev else ANONYMOUS
        if self.proxy_user_header and in_networks(peer, self.trusted_proxies):
            user = headers.get(self.proxy_user_header, "").strip()
            if user and len(user) <= MAX_PROXY_USER_CHARS and user.isprintable():
                return Identity(user, self.proxy_roles.get(user, self.proxy_default_role))
        if not session:
            return None
        found = self._sessions.get(session)
        if found is None:
            return None
        now = self._clock()
        if now - found.started > self.max_seconds or now - found.last_seen > self.idle_seconds:
            del self._sessions[session]
            return None
        found.last_seen = now
        self._sessions.move_to_end(session)
        return found.who

    def is_responder(self, name: str) -> bool:
        """Whether `name` may act when they use the console (a hand-over's target must): a responder token's
        name, a user the proxy names with the responder role, or anyone on an insecure dev console."""
        if not self.enabled:
            return self.insecure_dev
        if any(n == name and role == RESPONDER for n, role, _ in self._tokens):
            return True
        return bool(self.proxy_user_header) and self.proxy_roles.get(name, self.proxy_default_role) == RESPONDER

    def login(self, session: str, token: str) -> Identity | None:
        given = token.encode("utf-8", "surrogateescape")
        found: Identity | None = None
        for name, role, secret in self._tokens:
            # Compare with every token, so the time taken does not say which one nearly matched.
            if hmac.compare_digest(secret, given) and found is None:
                found = Identity(name, role)
        if found is not None:
            now = self._clock()
            self._sessions[session] = _Session(found, now, now)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return found

    def logout(self, session: str | None) -> None:
        if session:
            self._sessions.pop(session, None)


class LoginThrottle:
    """Failed sign-ins per client in the last minute; past the limit the client waits (bounded memory)."""

    WINDOW_SECONDS = 60.0

    def __init__(self, per_minute: int, max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, client: str) -> float:
        """0.0 when `client` may try to sign in now, else the seconds until it may."""
        times = self._failures.get(client)
        if not times:
            return 0.0
        now = self._clock()
        while times and now - times[0] >= self.WINDOW_SECONDS:
            times.popleft()
        if len(times) < self.per_minute:
            return 0.0
        return self.WINDOW_SECONDS - (now - times[0])

    def failed(self, client: str) -> None:
        times = self._failures.pop(client, None) or deque()
        times.append(self._clock())
        while len(times) > self.per_minute:
            times.popleft()
        self._failures[client] = times
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def same_origin_path(target: str) -> bool:
    """True when a browser sent to `target` stays on this site: an absolute path, nothing else.

    Browsers drop tab and newline anywhere in a URL and read `\\` as `/`, so `/\\t/evil.example` is
    `//evil.example`: any control or non-printable character, any backslash, and a path that starts with
    `//` (also once percent-decoded) is refused, and what is left must parse with no scheme and no host.
    """
    if not target or len(target) > 2048 or not target.startswith("/"):
        return False
    decoded = unquote(target)
    for text in (target, decoded):
        if "\\" in text or text.startswith("//") or not text.isprintable():
            return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc
