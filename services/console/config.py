"""Console settings (env prefix `TRIAGE_`, e.g. `TRIAGE_CONSOLE_PORT=8090`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from services.common.settings import ServiceSettings

DEFAULT_REPLIES_FILE = Path(__file__).resolve().parent / "replies.default.yaml"


class ConsoleToken(BaseModel):
    """One sign-in token: `name` is recorded as the responder; `read-only` may look but not act."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    token: SecretStr = Field(min_length=16)
    role: Literal["responder", "read-only"] = "responder"


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
    console_max_items: int = Field(500, ge=1, description="items shown per queue page")
    console_csrf_secret: SecretStr = Field(SecretStr(""), description="key of the CSRF tokens; random per "
                                           "process when empty (forms then expire on restart)")

    console_tokens: list[ConsoleToken] = Field(default_factory=list, description='JSON list of {"name", "token", '
                                               '"role": "responder"|"read-only"}; empty = no sign-in')
    console_proxy_user_header: str = Field("", description="header an authenticating proxy sets to the user's "
                                                           "name (e.g. X-Forwarded-User); empty = not trusted")

    def base_url(self) -> str:
        return (self.console_url or f"http://{self.console_host}:{self.console_port}").rstrip("/")
