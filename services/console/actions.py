"""What a console form turns into: a ResponseEvent for `responses` or a LabelFeedback for `feedback`.

Parsing is strict and pure: a missing or unknown field raises FormError with the HTTP status and a
sentence for the error page, and nothing is published.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.common.codec import pb
from services.common.timeutil import now_ts
from services.console.views import ConsoleView, QueueItem

RESPONSE_KINDS = {"responded": pb.RESPONDED, "resolved_no_reply": pb.RESOLVED_NO_REPLY}
PRIORITIES = ("P1", "P2", "P3", "P4")
INTENTS = ("complaint", "question", "outage_report", "safety_or_legal_threat", "praise", "spam")
MAX_FIELD = 500


class FormError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _field(form: Mapping[str, str], name: str, required: bool = True) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        raise FormError(400, f"field {name!r} must be text")
    value = value.strip()
    if required and not value:
        raise FormError(400, f"field {name!r} is missing")
    if len(value) > MAX_FIELD:
        raise FormError(400, f"field {name!r} is longer than {MAX_FIELD} characters")
    return value


def find_item(view: ConsoleView, form: Mapping[str, str]) -> QueueItem:
    queue, mention_id = _field(form, "queue"), _field(form, "mention_id")
    if queue not in view.queues:
        raise FormError(404, f"there is no queue {queue!r}")
    item = view.find_item(queue, mention_id)
    if item is None:
        raise FormError(404, f"queue {queue!r} has no item {mention_id!r}")
    return item


def response_event(view: ConsoleView, form: Mapping[str, str], default_responder: str) -> pb.ResponseEvent:
    item = find_item(view, form)
    kind = _field(form, "kind")
    if kind not in RESPONSE_KINDS:
        raise FormError(400, f"kind must be one of {sorted(RESPONSE_KINDS)}, not {kind!r}")
    return pb.ResponseEvent(mention_id=item.mention_id, kind=RESPONSE_KINDS[kind], queue=item.queue,
                            responder=_field(form, "responder", required=False) or default_responder, at=now_ts())


def label_feedback(view: ConsoleView, form: Mapping[str, str], default_responder: str) -> pb.LabelFeedback:
    item = find_item(view, form)
    priority = _field(form, "corrected_priority", required=False)
    intent = _field(form, "corrected_intent", required=False)
    if priority and priority not in PRIORITIES:
        raise FormError(400, f"corrected_priority must be one of {list(PRIORITIES)} or empty, not {priority!r}")
    if intent and intent not in INTENTS:
        raise FormError(400, f"corrected_intent must be one of {list(INTENTS)} or empty, not {intent!r}")
    if priority == item.priority:
        priority = ""
    if intent == item.intent:
        intent = ""
    if not priority and not intent:
        raise FormError(400, "choose a priority or an intent that differs from the classifier's")
    return pb.LabelFeedback(
        mention_id=item.mention_id, queue=item.queue, incident_id=item.incident_id, brand=item.brand,
        language=item.language, text=item.text, original_priority=pb.Priority.Value(item.priority),
        corrected_priority=pb.Priority.Value(priority) if priority else pb.PRIORITY_UNSPECIFIED,
        original_intent=item.intent, corrected_intent=intent, model_version=item.model_version,
        responder=_field(form, "responder", required=False) or default_responder,
        comment=_field(form, "comment", required=False), at=now_ts())


def safe_next(form: Mapping[str, str], fallback: str) -> str:
    """Where to go after an action: a path on this site only (never `//host` or a full URL)."""
    target = form.get("next", "")
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return fallback
