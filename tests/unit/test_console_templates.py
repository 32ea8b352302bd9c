"""The console's Jinja2 templates: hostile text from a post or an incident comes out as text, never markup."""

from __future__ import annotations

from services.common import codec, topics
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch
from services.console import render
from services.console.config import DEFAULT_REPLIES_FILE
from services.console.replies import ReplyBook
from services.console.views import ConsoleView

T0 = 1_780_000_000.0
EVIL = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def _ctx(can_act: bool = True) -> render.PageContext:
    return render.PageContext(csrf_token="ab" * 20, poll_seconds=5, now=T0 + 30, queues=["urgent"],
                              user="li" if not can_act else "", can_act=can_act)


def _view() -> ConsoleView:
    v = ConsoleView()
    inc = pb.Incident(id='inc"<1>', brand=EVIL, kind=pb.OUTAGE_CLUSTER, state=pb.OPEN, severity=0.8,
                      opened_at=ts_from_epoch(T0), updated_at=ts_from_epoch(T0), mention_count=1, reasons=[EVIL])
    inc.evidence.top_terms.append(EVIL)
    v.apply_record(topics.INCIDENTS, b"inc", codec.encode(inc))
    m = pb.Mention(source=pb.SOURCE_X, external_id="1", mention_id="x:1", text=EVIL, url="javascript:alert(3)",
                   created_at=ts_from_epoch(T0), brands=["acme"], author=pb.Author(handle=EVIL))
    s = pb.ScoredMention(mention=m, language="en", priority=pb.P1, reasons=[EVIL], incident_id='inc"<1>')
    s.intents["complaint"] = 0.9
    v.apply_record(topics.queue_topic("urgent"), b"x:1", codec.encode(pb.RoutedMention(scored=s, queue="urgent")))
    return v


def test_mention_and_incident_text_is_escaped_on_every_page() -> None:
    v = _view()
    replies = ReplyBook.load(DEFAULT_REPLIES_FILE)
    inc = v.incidents['inc"<1>']
    pages = [render.incidents_page(v, [inc], _ctx()), render.incident_page(v, inc, _ctx(), replies),
             render.queue_page("urgent", v.queue_items("urgent"), _ctx(), replies),
             render.error_page(404, EVIL, _ctx()), render.login_page(_ctx(), EVIL, failed=True)]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
        assert html.count("<script") == 1  # only the console's own script tag
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[2]
    assert 'href="javascript:' not in pages[2] and "original</a>" not in pages[2]  # a non-http URL is no link
    assert 'href="/incidents/inc%22%3C1%3E"' in pages[2]  # the incident link is one encoded path segment


def test_read_only_pages_have_no_action_forms() -> None:
    v = _view()
    replies = ReplyBook.load(DEFAULT_REPLIES_FILE)
    html = render.queue_page("urgent", v.queue_items("urgent"), _ctx(can_act=False), replies)
    assert "read-only: no actions" in html and "li (read-only)" in html and 'action="/actions/' not in html
