"""Suggested replies: a YAML file of templates per intent and language, with a configurable brand voice."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from services.common.errors import TriageError

STATUS_UPDATE = "status_update"  # the intent-less template of an incident's "reply to all"
REQUIRED_LANGUAGES = ("en", "es", "el", "ru", "fa", "hi", "ar", "fr", "de", "pt", "it")


class RepliesError(TriageError, ValueError):
    """The replies file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class ReplyBook:
    replies: dict[str, dict[str, str]]  # intent -> language -> template
    team: str
    brand_teams: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> ReplyBook:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise RepliesError(f"{path}: {exc}") from exc
        replies = doc.get("replies")
        if not isinstance(replies, dict) or "default" not in replies:
            raise RepliesError(f"{path}: needs a `replies` mapping with a `default` intent")
        for intent, by_lang in replies.items():
            if not isinstance(by_lang, dict) or not all(isinstance(v, str) for v in by_lang.values()):
                raise RepliesError(f"{path}: replies.{intent} must map language codes to strings")
        missing = [lang for lang in REQUIRED_LANGUAGES if lang not in replies["default"]]
        if missing:
            raise RepliesError(f"{path}: replies.default lacks languages {missing}")
        brands = doc.get("brands") or {}
        teams = {str(b): str((v or {}).get("team", "")) for b, v in brands.items() if (v or {}).get("team")}
        return cls(replies={str(k): dict(v) for k, v in replies.items()}, team=str(doc.get("team", "{brand}")),
                   brand_teams=teams)

    def template(self, intent: str, language: str, brand: str) -> str:
        """The reply for an intent in a language (falling back to `default`, then to English) in the brand's
        voice, with {author} (and {status_page}) still to fill."""
        lang = reply_language(language)
        by_lang = self.replies.get(intent) or self.replies["default"]
        template = by_lang.get(lang) or self.replies["default"].get(lang) or by_lang.get("en") \
            or self.replies["default"]["en"]
        brand_name = brand or "our"
        team = self.brand_teams.get(brand, self.team).replace("{brand}", brand_name)
        return template.replace("{team}", team).replace("{brand}", brand_name)

    def suggest(self, intent: str, language: str, author: str, brand: str) -> str:
        """The reply for an intent in a language, falling back to `default`, then to English."""
        return fill_reply(self.template(intent, language, brand), author)

    def status_update(self, language: str, brand: str) -> str:
        """An incident's status update in a language: {author} and {status_page} still to fill."""
        return self.template(STATUS_UPDATE, language, brand)


def reply_language(language: str) -> str:
    """The templates' language code of a post's language ("pt-BR" -> "pt"; none -> "en")."""
    return (language or "en").split("-")[0].lower()


def fill_reply(template: str, author: str, status_page: str = "") -> str:
    text = template.replace("{author}", author.lstrip("@") or "there")
    return text.replace("{status_page}", status_page) if status_page else text
