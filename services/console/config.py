"""Console settings (env prefix `TRIAGE_`, e.g. `TRIAGE_CONSOLE_PORT=8090`).

Who may use the console (`access.py`): sign-in tokens (`TRIAGE_CONSOLE_TOKENS`), or an authenticating
proxy that names the user in `TRIAGE_CONSOLE_PROXY_USER_HEADER`, trusted only from
`TRIAGE_CONSOLE_TRUSTED_PROXIES`. Bound to anything but loopback, the console refuses to start with
neither (`missing_credentials`). Without either on loopback it is read-only, unless
`TRIAGE_INSECURE_DEV=1` (set by `make demo` and `make up` only) lets anyone act.

Slack's clicks on a triage notice's buttons (`/slack/interactions`, slack_actions.py) are authenticated by
Slack's request signature alone, with `TRIAGE_CONSOLE_SLACK_SIGNING_SECRET`; without it they are refused.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

from services.common.settings import ServiceSettings

Role = Literal["responder", "read-only"]
DEFAULT_REPLIES_FILE = Path(__file__).resolve().parent / "replies.default.yaml"


class ConsoleToken(BaseModel):
    """One sign-in token: `name` is recorded as the responder; `read-only` may look but not act."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    token: SecretStr = Field(min_length=16)
    role: Role = "responder"


class ConsoleSettings(ServiceSettings):
    console_host: str = Field("127.0.0.1", description="address the console binds")
    console_port: int = Field(8090, description="port of the console (and its /metrics)")
    console_url: str = Field("", description="public base URL of the console (links in pages); default "
                                             "http://<console_host>:<console_port>")
    console_group_id: str = Field("triage-console", description="consumer group; give each console replica its "
                                                                "own (every replica reads every partition)")
    console_replies_file: Path = Field(DEFAULT_REPLIES_FILE, description="suggested replies per intent and language")
    console_responder: str = Field("console", description="responder recorded when the form leaves it empty")
    console_poll_seconds: float = Field(5.0, ge=1.0, description="how often open pages refresh themselves")
    console_recent_hours: float = Field(24.0, description="resolved incidents stay on / this long")
    console_max_items: int = Field(500, ge=1, description="most items one queue page or API answer may "
                                   "hold (`per_page` is capped to it); the API's default page size")
    console_group_min_items: int = Field(10, ge=2, description="an incident with at least this many open items "
                                         "in a queue page is shown as one group (count, languages, newest posts, "
                                         "actions on all); fewer are shown as separate cards")
    console_claim_ttl_seconds: float = Field(15 * 60.0, gt=0, description="a claim on a queue item (\"ana is on "
                                             "it\") lapses this long after it was made or handed over when the "
                                             "item is still unanswered; the item is then offered again")
    console_presence_expiry_seconds: float = Field(30.0, ge=2.0, le=3600.0, description="\"also viewing\": a "
                                                   "person whose page stopped sending heartbeats (closed, hidden "
                                                   "tab) drops off this long after the last one; keep it well "
                                                   "above TRIAGE_CONSOLE_POLL_SECONDS")
    console_page_size: int = Field(50, ge=1, description="items (or incident groups) per queue page")
    console_csrf_secret: SecretStr = Field(SecretStr(""), description="key of the CSRF tokens; random per "
                                           "process when empty (forms then expire on restart)")

    console_tokens: list[ConsoleToken] = Field(default_factory=list, description='JSON list of {"name", "token", '
                                               '"role": "responder"|"read-only"}; empty = no sign-in by token')
    console_proxy_user_header: str = Field("", description="header an authenticating proxy sets to the user's "
                                                           "name (e.g. X-Forwarded-User); empty = not trusted")
    console_trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=list, description='JSON list of CIDRs (e.g. ["10.0.3.0/24"]) whose requests may name the '
        "user in the proxy header (and the client in X-Forwarded-For); from any other peer both are ignored")
    console_proxy_roles: dict[str, Role] = Field(default_factory=dict, description='JSON {"user": "responder"} '
                                                 "roles of the users the proxy names; anyone else gets "
                                                 "TRIAGE_CONSOLE_PROXY_DEFAULT_ROLE")
    console_proxy_default_role: Role = Field("read-only", description="role of a proxy-named user not in "
                                                                      "TRIAGE_CONSOLE_PROXY_ROLES")
    console_session_idle_seconds: float = Field(2 * 3600.0, gt=0, description="a session unused this long ends")
    console_session_max_seconds: float = Field(12 * 3600.0, gt=0, description="a session ends this long after "
                                                                            "sign-in, however active")
    console_login_attempts_per_minute: int = Field(5, ge=1, description="failed sign-ins one client may make per "
                                                   "minute; more are answered 429")
    console_slack_signing_secret: SecretStr = Field(SecretStr(""), description="the Slack app's signing secret "
                                                    "(Basic Information > App Credentials): verifies the triage "
                                                    "notice's \"Page now\" / \"Dismiss\" clicks Slack posts to "
                                                    "/slack/interactions; empty = Slack actions off (answered 401)")
    console_slack_response_url_prefix: str = Field("https://hooks.slack.com/", description="the console answers a "
                                                   "Slack click (the notice updated with who decided) only at a "
                                                   "response_url starting with this")
    insecure_dev: bool = Field(False, description="developer's machine only (make demo/up set it): with no tokens "
                               "and no proxy anyone may act, and no credential is required at start")

    @model_validator(mode="after")
    def _proxy_needs_trusted_peers(self) -> ConsoleSettings:
        if self.console_proxy_user_header and not self.console_trusted_proxies:
            raise ValueError("TRIAGE_CONSOLE_PROXY_USER_HEADER needs TRIAGE_CONSOLE_TRUSTED_PROXIES (the CIDRs of the "
                             "authenticating proxy): from anyone else the header would be a forged sign-in")
        return self

    def missing_credentials(self) -> list[str]:
        """What the console needs before other hosts may reach it: tokens or a trusted proxy."""
        if self.console_tokens or self.console_proxy_user_header:
            return []
        return ["TRIAGE_CONSOLE_TOKENS (or TRIAGE_CONSOLE_PROXY_USER_HEADER with TRIAGE_CONSOLE_TRUSTED_PROXIES)"]

    def https(self) -> bool:
        """Served to browsers over HTTPS (the public URL says so): cookies are then `Secure` and `__Host-`."""
        return self.console_url.lower().startswith("https://")

    def base_url(self) -> str:
        return (self.console_url or f"http://{self.console_host}:{self.console_port}").rstrip("/")
