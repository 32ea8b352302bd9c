"""The responder console's view model, replies, actions and chart, without Kafka."""

from __future__ import annotations

import pytest

from services.common import codec, topics
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch
from services.console import actions
from services.console.chart import mentions_chart
from services.console.config import DEFAULT_REPLIES_FILE
from services.console.csrf import CsrfGuard
from services.console.replies import REQUIRED_LANGUAGES, ReplyBook
from services.console.views import ConsoleView

T0 = 1_780_000_000.0


def routed(ext: str, prio: int = pb.P2, queue: str = "urgent", created: float = T0, respond_by: float = 0.0,
           incident: str = "", sentiment: int = pb.NEGATIVE, intent: str = "complaint", lang: str = "en") -> bytes:
    m = pb.Mention(source=pb.SOURCE_X, external_id=ext, mention_id=f"x:{ext}", text=f"text {ext}",
                   url=f"https://x.com/u/status/{ext}", created_at=ts_from_epoch(created), brands=["acme"],
                   author=pb.Author(handle="ana", follower_count=1200))
    s = pb.ScoredMention(mention=m, language=lang, priority=prio, reasons=["outage report 0.94"],
                         sentiment=pb.SentimentScore(label=sentiment), incident_id=incident, model_version="v1")
    s.intents[intent] = 0.9
    s.intents["question"] = 0.1
    r = pb.RoutedMention(scored=s, queue=queue, routed_at=ts_from_epoch(created + 1))
    if respond_by:
        r.respond_by.CopyFrom(ts_from_epoch(respond_by))
    return codec.encode(r)


def incident(state: int = pb.OPEN, updated: float = T0 + 60, count: int = 40, resolved: float = 0.0) -> bytes:
    inc = pb.Incident(id="inc-1", brand="acme", kind=pb.OUTAGE_CLUSTER, state=state, severity=0.8,
                      opened_at=ts_from_epoch(T0), updated_at=ts_from_epoch(updated), mention_count=count,
                      reasons=["32 outage reports in 5 min"])
    inc.evidence.top_terms.extend(["down", "login"])
    inc.evidence.languages["en"] = 30
    inc.evidence.sample_mention_ids.append("x:1")
    inc.evidence.sample_urls.append("https://x.com/u/status/1")
    if resolved:
        inc.resolved_at.CopyFrom(ts_from_epoch(resolved))
    return codec.encode(inc)


def q(name: str) -> str:
    return topics.queue_topic(name)


def test_queue_orders_by_priority_then_nearest_deadline() -> None:
    v = ConsoleView()
    v.apply_record(q("urgent"), b"x:a", routed("a", pb.P2, respond_by=T0 + 3600))
    v.apply_record(q("urgent"), b"x:b", routed("b", pb.P1, respond_by=T0 + 7200))
    v.apply_record(q("urgent"), b"x:c", routed("c", pb.P2, respond_by=T0 + 600))
    v.apply_record(q("urgent"), b"x:d", routed("d", pb.P2))
    assert [i.mention_id for i in v.queue_items("urgent")] == ["x:b", "x:c", "x:a", "x:d"]
    item = v.find_item("urgent", "x:c")
    assert item is not None and item.breached(T0 + 601) and not item.breached(T0 + 599)
    assert item.intent == "complaint" and item.reach == 1200 and item.language == "en"


def test_a_response_closes_the_item_even_when_read_before_it_and_twice() -> None:
    v = ConsoleView()
    ev = codec.encode(pb.ResponseEvent(mention_id="x:a", kind=pb.RESPONDED, queue="urgent", responder="li",
                                       at=ts_from_epoch(T0 + 5)))
    v.apply_record(topics.RESPONSES, b"x:a", ev)
    v.apply_record(q("urgent"), b"x:a", routed("a"))
    v.apply_record(q("urgent"), b"x:b", routed("b"))
    v.apply_record(topics.RESPONSES, b"x:a", ev)
    assert [i.mention_id for i in v.queue_items("urgent")] == ["x:b"]
    done = v.find_item("urgent", "x:a")
    assert done is not None and done.state == "responded" and done.responder == "li"
    # An engagement update of an answered mention does not reopen it.
    v.apply_record(q("urgent"), b"x:a", routed("a"))
    assert v.open_counts() == {"urgent": 1}


def test_incident_keeps_the_newest_version_and_a_tombstone_removes_it() -> None:
    v = ConsoleView()
    v.apply_record(topics.INCIDENTS, b"inc-1", incident(pb.UPDATED, T0 + 120, 80))
    v.apply_record(topics.INCIDENTS, b"inc-1", incident(pb.OPEN, T0 + 60, 40))  # older, read late
    inc = v.incidents["inc-1"]
    assert inc.state == "UPDATED" and inc.mention_count == 80
    assert inc.history == [(T0 + 60, 40), (T0 + 120, 80)]
    v.apply_record(topics.INCIDENTS, b"inc-1", incident(pb.RESOLVED, T0 + 900, 90, resolved=T0 + 900))
    assert not v.incidents["inc-1"].is_open
    assert [i.id for i in v.incident_list(T0 + 1000, 3600)] == ["inc-1"]
    assert v.incident_list(T0 + 900 + 7200, 3600) == []
    v.apply_record(topics.INCIDENTS, b"inc-1", None)
    assert v.incidents == {}


def test_pages_are_deduplicated_and_in_time_order() -> None:
    v = ConsoleView()
    for at, action in ((T0 + 30, "update"), (T0, "trigger"), (T0 + 30, "update")):
        v.apply_record(topics.PAGES, b"inc-1", codec.encode(pb.PageRecord(
            incident_id="inc-1", receiver="pagerduty", action=action, delivered=True, at=ts_from_epoch(at))))
    assert [p.action for p in v.pages["inc-1"]] == ["trigger", "update"]


def test_mentions_per_minute_by_sentiment_fills_quiet_minutes() -> None:
    v = ConsoleView()
    v.apply_record(q("urgent"), b"x:1", routed("1", incident="inc-1", created=T0))
    v.apply_record(q("urgent"), b"x:2", routed("2", incident="inc-1", created=T0 + 10, sentiment=pb.NEUTRAL))
    v.apply_record(q("normal"), b"x:3", routed("3", incident="inc-1", created=T0 + 185, queue="normal"))
    v.apply_record(q("urgent"), b"x:4", routed("4", created=T0))  # not part of the incident
    series = v.mentions_per_minute("inc-1")
    start = T0 // 60 * 60
    assert [m for m, _ in series] == [start, start + 60, start + 120, start + 180]
    assert series[0][1] == {"negative": 1, "neutral": 1, "positive": 0}
    assert sum(sum(c.values()) for _, c in series) == 3
    svg = mentions_chart(series)
    assert svg.startswith("<svg") and svg.count('class="bar negative"') == 2
    assert "No mentions" in mentions_chart([])


def test_marked_wrong_share_counts_p1_p2_items_with_feedback() -> None:
    v = ConsoleView()
    v.apply_record(q("urgent"), b"x:a", routed("a", pb.P1))
    v.apply_record(q("urgent"), b"x:b", routed("b", pb.P2))
    v.apply_record(q("normal"), b"x:c", routed("c", pb.P3, queue="normal"))
    v.apply_record(topics.FEEDBACK, b"x:a", codec.encode(pb.LabelFeedback(mention_id="x:a", corrected_priority=pb.P3)))
    assert v.marked_wrong() == {"acme": (1, 2)}


def test_a_bad_record_raises_and_leaves_the_view_as_it_was() -> None:
    v = ConsoleView()
    with pytest.raises(Exception, match="RoutedMention"):
        v.apply_record(q("urgent"), b"k", b"\xff\xff\xff")
    assert v.queues == {}


@pytest.mark.parametrize("lang", REQUIRED_LANGUAGES)
def test_every_required_language_has_a_reply_for_every_intent(lang: str) -> None:
    book = ReplyBook.load(DEFAULT_REPLIES_FILE)
    for intent in ("outage_report", "complaint", "question", "praise", "safety_or_legal_threat", "default"):
        text = book.replies[intent][lang]
        assert "{author}" in text and "{team}" in text, (intent, lang)
    reply = book.suggest("outage_report", lang, "@ana", "fjordtel")
    assert "@ana" in reply and "the fjordtel team" in reply and "{" not in reply


def test_reply_falls_back_to_default_intent_and_english_and_uses_brand_voice() -> None:
    book = ReplyBook.load(DEFAULT_REPLIES_FILE)
    assert book.suggest("spam", "de", "bo", "x").startswith("Hallo @bo")
    assert book.suggest("praise", "sw", "bo", "x").startswith("Thank you")
    assert book.suggest("praise", "pt-BR", "bo", "acmebank").endswith("Acme Bank care")


def test_actions_validate_the_form() -> None:
    v = ConsoleView()
    v.apply_record(q("urgent"), b"x:a", routed("a", pb.P2))
    ev = actions.response_event(v, {"queue": "urgent", "mention_id": "x:a", "kind": "resolved_no_reply"}, "console")
    assert ev.kind == pb.RESOLVED_NO_REPLY and ev.queue == "urgent" and ev.responder == "console"
    with pytest.raises(actions.FormError) as err:
        actions.response_event(v, {"queue": "urgent", "mention_id": "x:zz", "kind": "responded"}, "c")
    assert err.value.status == 404
    with pytest.raises(actions.FormError) as err:
        actions.response_event(v, {"queue": "urgent", "mention_id": "x:a", "kind": "ignored"}, "c")
    assert err.value.status == 400
    with pytest.raises(actions.FormError):
        actions.label_feedback(v, {"queue": "urgent", "mention_id": "x:a", "corrected_priority": "P2"}, "c")
    fb = actions.label_feedback(v, {"queue": "urgent", "mention_id": "x:a", "corrected_priority": "P3",
                                    "corrected_intent": "question"}, "c")
    assert fb.original_priority == pb.P2 and fb.corrected_priority == pb.P3
    assert fb.original_intent == "complaint" and fb.corrected_intent == "question" and fb.text == "text a"
    assert actions.safe_next({"next": "//evil.example"}, "/queues/urgent") == "/queues/urgent"
    assert actions.safe_next({"next": "/incidents/inc-1"}, "/") == "/incidents/inc-1"


def test_csrf_token_is_bound_to_the_session() -> None:
    guard = CsrfGuard(b"k")
    token = guard.token("session-1")
    assert guard.check("session-1", token)
    assert not guard.check("session-2", token) and not guard.check(None, token) and not guard.check("s", "")
