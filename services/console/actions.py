"""What a console form turns into: a ResponseEvent for `responses`, a LabelFeedback for `feedback`, a
Silence for `silences` (created from an incident page, or the same silence expired), or a Claim for
`claims` (claim, hand over, release; claims.py decides whose turn it is), or a TriageDecision for
`triage.decisions` (page now / dismiss an incident held for triage; a dismissal is also a "page was wrong"
LabelFeedback, `dismissal_feedback`). An incident's bulk
actions turn one form into one ResponseEvent per open item of the incident (none for an item already
answered, so sending the form twice records nothing twice).

Parsing is strict and pure: a missing or unknown field raises FormError with the HTTP status and a
sentence for the error page, and nothing is published.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping

from services.common.alerting.durations import parse_duration
from services.common.alerting.silence_feed import parse_matchers
from services.common.codec import pb
from services.common.errors import TriageError
from services.common.timeutil import now_ts, ts_from_epoch
from services.console.access import same_origin_path
from services.console.claims import ClaimConflict
from services.console.replies import fill_reply, reply_language
from services.console.views import ConsoleView, IncidentView, QueueItem

RESPONSE_KINDS = {"responded": pb.RESPONDED, "resolved_no_reply": pb.RESOLVED_NO_REPLY}
PRIORITIES = ("P1", "P2", "P3", "P4")
INTENTS = ("complaint", "question", "outage_report", "safety_or_legal_threat", "praise", "spam")
MAX_FIELD = 500
MAX_SILENCE_SECONDS = 30 * 86400.0
MAX_MATCHERS = 20
CLAIM_ACTIONS = ("claim", "hand_over", "release")
TRIAGE_DECISIONS = {"page_now": "page_now", "dismiss": "dismissed"}  # the form's button -> the decision
RESPONDER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")  # the names sign-in tokens may have (config.py)


class FormError(TriageError):
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


def incident_open_items(view: ConsoleView, form: Mapping[str, str]) -> list[QueueItem]:
    """The open items of the form's incident (`incident_id`), only those of `queue` when the form names one."""
    incident_id = _field(form, "incident_id")
    queue = _field(form, "queue", required=False)
    items = view.incident_items(incident_id)
    if incident_id not in view.incidents and not items:
        raise FormError(404, f"there is no incident {incident_id!r}")
    return [i for i in items if i.state == "open" and (not queue or i.queue == queue)]


def bulk_response(view: ConsoleView, form: Mapping[str, str], default_responder: str) -> list[pb.ResponseEvent]:
    """"Mark all responded" / "resolve all without reply": one ResponseEvent per open item of the incident."""
    kind = _field(form, "kind")
    if kind not in RESPONSE_KINDS:
        raise FormError(400, f"kind must be one of {sorted(RESPONSE_KINDS)}, not {kind!r}")
    responder = _field(form, "responder", required=False) or default_responder
    at = now_ts()
    return [pb.ResponseEvent(mention_id=i.mention_id, kind=RESPONSE_KINDS[kind], queue=i.queue, responder=responder,
                             at=at) for i in incident_open_items(view, form)]


def bulk_reply(view: ConsoleView, form: Mapping[str, str], default_responder: str) -> list[pb.ResponseEvent]:
    """"Reply to all" with the status update: each open item gets the text of its language (`reply_<lang>`,
    else `reply_en`) with its author and the status page link (`status_page`) filled in, recorded as the
    ResponseEvent's `reply`."""
    status_page = _field(form, "status_page", required=False)
    if status_page and not status_page.startswith(("https://", "http://")):
        raise FormError(400, "the status page link must start with https:// or http://")
    responder = _field(form, "responder", required=False) or default_responder
    at = now_ts()
    out = []
    for item in incident_open_items(view, form):
        lang = reply_language(item.language)
        template = _field(form, f"reply_{lang}", required=False) or _field(form, "reply_en", required=False)
        if not template:
            raise FormError(400, f"no status update for language {lang!r} (nor English)")
        if "{status_page}" in template and not status_page:
            raise FormError(400, "the status update links the status page: give its link")
        out.append(pb.ResponseEvent(mention_id=item.mention_id, kind=pb.RESPONDED, queue=item.queue,
                                    responder=responder, at=at, reply=fill_reply(template, item.author, status_page)))
    return out


def exclusion(view: ConsoleView, form: Mapping[str, str], default_responder: str) -> pb.LabelFeedback:
    """"Not about this incident": a LabelFeedback naming the incident in `not_in_incident` (no correction of
    priority or intent); the console then drops the item from the incident's group."""
    item = find_item(view, form)
    if not item.incident_id:
        raise FormError(409, f"item {item.mention_id!r} belongs to no incident")
    return pb.LabelFeedback(
        mention_id=item.mention_id, queue=item.queue, incident_id=item.incident_id, brand=item.brand,
        language=item.language, text=item.text, original_priority=pb.Priority.Value(item.priority),
        original_intent=item.intent, model_version=item.model_version, not_in_incident=item.incident_id,
        responder=_field(form, "responder", required=False) or default_responder,
        comment=_field(form, "comment", required=False), at=now_ts())


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


def page_feedback(view: ConsoleView, form: Mapping[str, str], default_responder: str) -> pb.LabelFeedback:
    """"This page was wrong" about a paged incident (a LabelFeedback with no mention id, keyed by the
    incident): the page should not have gone out, optionally at which priority it belonged."""
    incident_id = _field(form, "incident_id")
    inc = view.incidents.get(incident_id)
    if inc is None:
        raise FormError(404, f"there is no incident {incident_id!r}")
    if not view.paged(incident_id):
        raise FormError(409, f"incident {incident_id!r} has sent no page to mark wrong")
    priority = _field(form, "corrected_priority", required=False)
    if priority and priority not in PRIORITIES:
        raise FormError(400, f"corrected_priority must be one of {list(PRIORITIES)} or empty, not {priority!r}")
    return pb.LabelFeedback(
        incident_id=inc.id, brand=inc.brand, original_priority=pb.P1,
        corrected_priority=pb.Priority.Value(priority) if priority else pb.PRIORITY_UNSPECIFIED,
        responder=_field(form, "responder", required=False) or default_responder,
        comment=_field(form, "comment", required=False), at=now_ts())


def _matcher_lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_MATCHERS:
        raise FormError(400, f"at most {MAX_MATCHERS} matchers")
    return lines


def new_silence(view: ConsoleView, form: Mapping[str, str], default_author: str, now: float) -> pb.Silence:
    """A silence from an incident page: matchers (one per line, routing-file syntax), a duration from now,
    a comment and its author (both required, as in Alertmanager)."""
    incident_id = _field(form, "incident_id")
    inc: IncidentView | None = view.incidents.get(incident_id)
    if inc is None:
        raise FormError(404, f"there is no incident {incident_id!r}")
    raw = form.get("matchers", "")
    if not isinstance(raw, str) or len(raw) > 4 * MAX_FIELD:
        raise FormError(400, "field 'matchers' must be text of at most 2000 characters")
    lines = _matcher_lines(raw)
    try:
        matchers = parse_matchers(lines)
    except ValueError as exc:
        raise FormError(400, str(exc)) from None
    try:
        seconds = parse_duration(_field(form, "duration"))
    except ValueError as exc:
        raise FormError(400, str(exc)) from None
    if not 60 <= seconds <= MAX_SILENCE_SECONDS:
        raise FormError(400, "duration must be between 1m and 30d")
    author = _field(form, "created_by", required=False) or default_author
    msg = pb.Silence(id=uuid.uuid4().hex, matchers=[str(m) for m in matchers], created_by=author,
                     comment=_field(form, "comment"), incident_id=inc.id)
    msg.starts_at.CopyFrom(ts_from_epoch(now))
    msg.ends_at.CopyFrom(ts_from_epoch(now + seconds))
    msg.created_at.CopyFrom(ts_from_epoch(now))
    return msg


def expired_silence(view: ConsoleView, form: Mapping[str, str], default_author: str, now: float) -> pb.Silence:
    """The silence named by the form, republished with ends_at = now (Alertmanager's expire)."""
    silence_id = _field(form, "silence_id")
    current = view.silences.silences.get(silence_id)
    if current is None:
        raise FormError(404, f"there is no silence {silence_id!r}")
    if current.state(now) == "expired":
        raise FormError(409, f"silence {silence_id!r} has already expired")
    msg = pb.Silence(id=current.id, matchers=[str(m) for m in current.matchers], created_by=current.created_by,
                     comment=current.comment, incident_id=current.incident_id,
                     expired_by=_field(form, "created_by", required=False) or default_author)
    msg.starts_at.CopyFrom(ts_from_epoch(current.starts_at))
    msg.ends_at.CopyFrom(ts_from_epoch(now))
    msg.created_at.CopyFrom(ts_from_epoch(current.created_at))
    return msg


def claim_record(view: ConsoleView, form: Mapping[str, str], responder: str, now: float, action: str,
                 is_responder: Callable[[str], bool]) -> pb.Claim:
    """"Claim", "hand over to" (`to`: a responder's name) or "release" an open item (`queue`, `mention_id`);
    409 when it is someone else's (claims.py), 400 when `to` names nobody who may act."""
    if action not in CLAIM_ACTIONS:
        raise FormError(400, f"a claim action is one of {list(CLAIM_ACTIONS)}, not {action!r}")
    item = find_item(view, form)
    if item.state != "open":
        raise FormError(409, f"item {item.mention_id!r} is already {item.state.replace('_', ' ')}")
    book = view.claims
    try:
        if action == "claim":
            return book.claim(item.mention_id, item.queue, responder, now)
        if action == "release":
            return book.release(item.mention_id, item.queue, responder, now)
        to = _field(form, "to")
        if not RESPONDER_NAME.match(to) or not is_responder(to):
            raise FormError(400, f"{to!r} is not a responder of this console: hand it over to someone who may act")
        return book.hand_over(item.mention_id, item.queue, responder, to, now)
    except ClaimConflict as exc:
        raise FormError(409, str(exc)) from None


def safe_next(form: Mapping[str, str], fallback: str) -> str:
    """Where to go after an action: a path on this site only (`access.same_origin_path`), else `fallback`."""
    target = form.get("next", "")
    return target if isinstance(target, str) and same_origin_path(target) else fallback


def triage_decision(view: ConsoleView, form: Mapping[str, str], default_responder: str) -> pb.TriageDecision:
    """"Page now" or "dismiss" on an incident group held for triage (the Triage page), keyed by the router's
    group key so it reaches the router replica that owns the group. Refused (409) once the group is no longer
    waiting: decided by someone, paged by itself, or its incident ended."""
    group_key = _field(form, "group_key")
    button = _field(form, "decision")
    if button not in TRIAGE_DECISIONS:
        raise FormError(400, f"decision must be one of {sorted(TRIAGE_DECISIONS)}, not {button!r}")
    entry = view.triage.get(group_key)
    if entry is None:
        raise FormError(404, "there is no incident held for triage under that key")
    if not entry.pending:
        raise FormError(409, f"incident {entry.incident_id} is no longer waiting for triage: {entry.status}")
    return pb.TriageDecision(group_key=group_key, incident_id=entry.incident_id, receiver=entry.receiver,
                             decision=TRIAGE_DECISIONS[button],
                             responder=_field(form, "responder", required=False) or default_responder,
                             comment=_field(form, "comment", required=False), at=now_ts())


def dismissal_feedback(view: ConsoleView, decision: pb.TriageDecision) -> pb.LabelFeedback | None:
    """A dismissal in triage is also "this page was wrong" feedback: the same LabelFeedback as
    `page_feedback` (no mention id, published keyed by the incident), so the feedback export and every
    consumer of `feedback` see it. The view keeps one mark per incident (`ConsoleView.page_feedback`), so a
    repeated dismissal, or a dismissal also counted as a dismissed triage entry, counts once. None for a
    "page now"."""
    if decision.decision != TRIAGE_DECISIONS["dismiss"] or not decision.incident_id:
        return None
    inc = view.incidents.get(decision.incident_id)
    entry = view.triage.get(decision.group_key)
    brand = inc.brand if inc is not None else (entry.labels.get("brand", "") if entry is not None else "")
    comment = "dismissed in triage" + (f": {decision.comment}" if decision.comment else "")
    fb = pb.LabelFeedback(incident_id=decision.incident_id, brand=brand, original_priority=pb.P1,
                          responder=decision.responder, comment=comment[:MAX_FIELD])
    fb.at.CopyFrom(decision.at)
    return fb
