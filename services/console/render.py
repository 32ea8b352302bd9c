"""HTML of the console's pages, rendered on the server: every page reads fine with JavaScript off.

Every value from a mention, an incident or a form is escaped here; the only script is the vendored
static/console.js (page refresh, countdowns, copy button).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from services.common.alerting.silences import Silence
from services.console.actions import INTENTS, PRIORITIES
from services.console.chart import mentions_chart
from services.console.replies import ReplyBook
from services.console.views import ConsoleView, IncidentView, QueueItem, incident_labels

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1f2933;background:#f5f7fa}
header{background:#1f2933;color:#fff;padding:.6em 1em}header a{color:#fff;margin-right:1em}
main{padding:1em;max-width:1100px}table{border-collapse:collapse;width:100%;background:#fff}
td,th{border-bottom:1px solid #e4e7eb;padding:.35em .5em;text-align:left;vertical-align:top}
.muted{color:#7b8794}.breached{color:#c62828;font-weight:bold}.sev{font-weight:bold}
.item{background:#fff;border:1px solid #e4e7eb;border-radius:4px;padding:.6em;margin:.6em 0}
.item.done{opacity:.6}.tag{display:inline-block;background:#e4e7eb;border-radius:3px;padding:0 .4em;margin-right:.3em}
.P1{background:#c62828;color:#fff}.P2{background:#ef6c00;color:#fff}textarea{width:100%;min-height:3.5em}
.swatch{display:inline-block;width:.8em;height:.8em;margin:0 .2em 0 .6em}form.inline{display:inline}
.ok{color:#2e7d32}.fail{color:#c62828}
"""


@dataclass(frozen=True)
class PageContext:
    csrf_token: str
    poll_seconds: float
    now: float
    queues: list[str]
    user: str = ""          # signed-in name; empty while access control is off
    can_act: bool = True    # False for read-only users: no action forms


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d"


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "–"


def countdown(item: QueueItem, now: float) -> str:
    if item.state != "open":
        return f'<span class="muted">{escape(item.state.replace("_", " "))}</span>'
    if not item.respond_by:
        return '<span class="muted">no deadline</span>'
    left = item.respond_by - now
    text = f"due in {_ago(left)}" if left >= 0 else f"overdue by {_ago(-left)}"
    cls = "countdown breached" if left < 0 else "countdown"
    return f'<span class="{cls}" data-deadline="{item.respond_by:.0f}">{text}</span>'


def layout(title: str, body: str, ctx: PageContext) -> str:
    nav = "".join(f'<a href="/queues/{quote(q)}">{escape(q)}</a>' for q in ctx.queues)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · triage console'
            f'</title><meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style>'
            f'</head><body data-poll="{ctx.poll_seconds:g}"><header><a href="/"><b>triage console</b></a>'
            f'<a href="/">incidents</a>{nav}{_who(ctx)}</header><main id="live">{body}</main>'
            f'<script src="/static/console.js"></script></body></html>')


def _who(ctx: PageContext) -> str:
    if not ctx.user:
        return ""
    role = "" if ctx.can_act else " (read-only)"
    return (f'<span style="float:right">{escape(ctx.user)}{role} <form class="inline" method="post" '
            f'action="/logout"><input type="hidden" name="csrf" value="{ctx.csrf_token}"><button>sign out</button>'
            '</form></span>')


def login_page(ctx: PageContext, next_url: str, failed: bool) -> str:
    note = '<p class="breached" id="error">That token was not accepted.</p>' if failed else ""
    body = (f'<h1>Sign in</h1>{note}<form method="post" action="/login">'
            f'<input type="hidden" name="csrf" value="{ctx.csrf_token}">'
            f'<input type="hidden" name="next" value="{escape(next_url)}">'
            '<label>token <input type="password" name="token" autocomplete="current-password" required></label> '
            '<button>sign in</button></form>')
    return layout("sign in", body, ctx)


def error_page(status: int, message: str, ctx: PageContext) -> str:
    body = (f"<h1>{status}</h1><p id=\"error\">{escape(message)}</p>"
            '<p><a href="/">back to the incidents</a></p>')
    return layout(f"error {status}", body, ctx)


def _pages_summary(view: ConsoleView, incident_id: str) -> str:
    pages = view.pages.get(incident_id, [])
    if not pages:
        return '<span class="muted">none</span>'
    latest: dict[str, tuple[str, bool, str]] = {}
    for p in pages:
        latest[p.receiver] = (p.action, p.delivered, p.status)
    return ", ".join(f'{escape(r)} {escape(a)} <span class="{"ok" if d else "fail"}">{escape(st)}</span>'
                     for r, (a, d, st) in latest.items())


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{escape(k)} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "–"


def incidents_page(view: ConsoleView, incidents: list[IncidentView], ctx: PageContext) -> str:
    rows = []
    for inc in incidents:
        rows.append(
            f'<tr class="incident" data-id="{escape(inc.id)}"><td><a href="/incidents/{quote(inc.id, safe="")}">'
            f'{escape(inc.id)}</a></td><td>{escape(inc.kind.lower().replace("_", " "))}</td>'
            f'<td>{escape(inc.brand)}</td><td>{escape(inc.state.lower())}</td><td class="sev">{inc.severity:.2f}</td>'
            f'<td>{_ago(inc.age(ctx.now))}</td><td>{inc.mention_count}</td><td>{_counts(inc.languages)}</td>'
            f'<td>{_pages_summary(view, inc.id)}</td></tr>')
    table = ("<table><thead><tr><th>incident</th><th>kind</th><th>brand</th><th>state</th><th>severity</th>"
             "<th>age</th><th>mentions</th><th>languages</th><th>pages</th></tr></thead><tbody>"
             + "".join(rows) + "</tbody></table>") if rows else '<p class="muted">No open or recent incidents.</p>'
    queues = "".join(f'<li><a href="/queues/{quote(q)}">{escape(q)}</a>: {n} open</li>'
                     for q, n in sorted(view.open_counts().items()))
    wrong = view.marked_wrong()
    pages = view.pages_marked_wrong()
    precision = "".join(
        f"<li class=\"precision\">{escape(b or '(no brand)')}: {w} of {n} P1/P2 items marked wrong"
        + (f", {pages[b][0]} of {pages[b][1]} pages marked wrong" if pages.get(b, (0, 0))[1] else "") + "</li>"
        for b, (w, n) in sorted(wrong.items()) if n)
    precision += "".join(f"<li class=\"precision\">{escape(b or '(no brand)')}: {w} of {n} pages marked wrong</li>"
                         for b, (w, n) in sorted(pages.items()) if n and not wrong.get(b, (0, 0))[1])
    return layout("incidents", f"<h1>Incidents</h1>{table}<h2>Queues</h2><ul>{queues or '<li>none yet</li>'}</ul>"
                  f"<h2>Responders' corrections</h2><ul>{precision or '<li>none yet</li>'}</ul>", ctx)


def _item_forms(item: QueueItem, ctx: PageContext, next_url: str) -> str:
    hidden = (f'<input type="hidden" name="csrf" value="{ctx.csrf_token}">'
              f'<input type="hidden" name="queue" value="{escape(item.queue)}">'
              f'<input type="hidden" name="mention_id" value="{escape(item.mention_id)}">'
              f'<input type="hidden" name="next" value="{escape(next_url)}">')
    if not ctx.can_act:
        return '<p class="muted">read-only: no actions</p>'
    if item.state != "open":
        done = f'<p class="muted">{escape(item.state.replace("_", " "))} by {escape(item.responder)}</p>'
    else:
        done = (f'<form class="inline" method="post" action="/actions/response">{hidden}'
                '<button name="kind" value="responded" class="responded">responded</button> '
                '<button name="kind" value="resolved_no_reply" class="resolved">resolved without reply</button>'
                '</form>')
    prio = "".join(f'<option value="{p}">{p}</option>' for p in PRIORITIES)
    intents = "".join(f'<option value="{i}">{i.replace("_", " ")}</option>' for i in INTENTS)
    feedback = (f'<details><summary>wrong priority / intent</summary><form method="post" action="/actions/feedback">'
                f'{hidden}<label>priority <select name="corrected_priority"><option value="">(right)</option>{prio}'
                f'</select></label> <label>intent <select name="corrected_intent"><option value="">(right)</option>'
                f'{intents}</select></label> <input name="comment" placeholder="comment (optional)" maxlength="500">'
                ' <button class="feedback">send correction</button></form></details>')
    return done + feedback


def item_card(item: QueueItem, ctx: PageContext, replies: ReplyBook, next_url: str) -> str:
    link = f' <a href="{escape(item.url)}" rel="noopener noreferrer">original</a>' if item.url.startswith(
        ("https://", "http://")) else ""
    reasons = "".join(f"<li>{escape(r)}</li>" for r in item.reasons) or "<li class=muted>none given</li>"
    incident = (f' <a class="tag" href="/incidents/{quote(item.incident_id, safe="")}">incident '
                f'{escape(item.incident_id)}</a>') if item.incident_id else ""
    reply = replies.suggest(item.intent, item.language, item.author, item.brand)
    suggestion = ("" if item.state != "open" else
                  f'<label>suggested reply ({escape(item.language or "en")})<textarea class="reply" dir="auto">'
                  f'{escape(reply)}</textarea></label><button type="button" class="copy">copy</button>')
    return (f'<div class="item {"done" if item.state != "open" else ""}" data-mention="{escape(item.mention_id)}">'
            f'<span class="tag {escape(item.priority)}">{escape(item.priority)}</span>'
            f'<span class="tag">{escape(item.intent.replace("_", " ") or "no intent")}</span>'
            f'<span class="tag">{escape(item.language or "?")}</span>'
            f'<span class="tag">reach {item.reach:,}</span>{incident} {countdown(item, ctx.now)}'
            f'<p dir="auto"><b>@{escape(item.author)}</b>: {escape(item.text)}{link}</p>'
            f'<ul class="reasons">{reasons}</ul>{suggestion}{_item_forms(item, ctx, next_url)}</div>')


def queue_page(name: str, items: list[QueueItem], ctx: PageContext, replies: ReplyBook) -> str:
    breached = sum(1 for i in items if i.breached(ctx.now))
    cards = "".join(item_card(i, ctx, replies, f"/queues/{quote(name)}") for i in items)
    body = (f"<h1>Queue {escape(name)}</h1><p>{len(items)} open, "
            f'<span class="{"breached" if breached else ""}">{breached} past their deadline</span></p>'
            + (cards or '<p class="muted">Nothing waiting.</p>'))
    return layout(f"queue {name}", body, ctx)


def _silence_row(s: Silence, ctx: PageContext, next_url: str) -> str:
    matchers = "".join(f'<span class="tag">{escape(str(m))}</span>' for m in s.matchers)
    when = (f"from {_utc(s.starts_at)} " if s.starts_at > ctx.now else "") + f"until {_utc(s.ends_at)}"
    expire = ("" if not ctx.can_act else
              f'<form class="inline" method="post" action="/actions/silence/expire">'
              f'<input type="hidden" name="csrf" value="{ctx.csrf_token}">'
              f'<input type="hidden" name="silence_id" value="{escape(s.id)}">'
              f'<input type="hidden" name="next" value="{escape(next_url)}"><button class="expire">expire</button>'
              "</form>")
    return (f'<tr class="silence" data-id="{escape(s.id)}"><td>{matchers}</td><td>{escape(s.state(ctx.now))} {when}'
            f'</td><td>{escape(s.created_by)}</td><td dir="auto">{escape(s.comment)}</td><td>{expire}</td></tr>')


def page_feedback_section(view: ConsoleView, inc: IncidentView, ctx: PageContext) -> str:
    """Mark the incident's page as wrong (it should not have paged), once it has paged."""
    mark = view.page_feedback.get(inc.id)
    if mark:
        to = f", belonged at {escape(mark['corrected_priority'])}" if mark["corrected_priority"] else ""
        return (f'<p class="wrong-page">Marked a wrong page by {escape(mark["responder"])}{to}'
                f'{": " + escape(mark["comment"]) if mark["comment"] else ""}</p>')
    if not ctx.can_act or not view.paged(inc.id):
        return ""
    prio = "".join(f'<option value="{p}">{p}</option>' for p in PRIORITIES[1:])
    return (f'<details><summary>wrong page</summary><form method="post" action="/actions/page-feedback">'
            f'<input type="hidden" name="csrf" value="{ctx.csrf_token}">'
            f'<input type="hidden" name="incident_id" value="{escape(inc.id)}">'
            f'<input type="hidden" name="next" value="/incidents/{quote(inc.id, safe="")}">'
            f'<label>belonged at <select name="corrected_priority"><option value="">(no page at all)</option>{prio}'
            '</select></label> <input name="comment" placeholder="comment (optional)" maxlength="500"> '
            '<button class="page-feedback">this page was wrong</button></form></details>')


def silences_section(view: ConsoleView, inc: IncidentView, ctx: PageContext) -> str:
    """Active and pending silences that mute this incident's pages, and (for responders) a form for a new one
    whose matchers start as the incident's labels."""
    next_url = f"/incidents/{quote(inc.id, safe='')}"
    rows = "".join(_silence_row(s, ctx, next_url) for s in view.silences_for(inc, ctx.now))
    table = ('<table class="silences"><thead><tr><th>matchers</th><th>state</th><th>by</th><th>comment</th>'
             f'<th></th></tr></thead><tbody>{rows}</tbody></table>' if rows
             else '<p class="muted" id="no-silences">No silence mutes this incident\'s pages.</p>')
    if not ctx.can_act:
        return f"<h2>Silences</h2>{table}"
    prefill = "\n".join(f'{k}="{v}"' for k, v in incident_labels(inc).items() if v)
    author = ("" if ctx.user else '<label>author <input name="created_by" maxlength="64" required '
              'placeholder="your name"></label> ')
    form = (f'<details><summary>new silence</summary><form method="post" action="/actions/silence" class="silence">'
            f'<input type="hidden" name="csrf" value="{ctx.csrf_token}">'
            f'<input type="hidden" name="incident_id" value="{escape(inc.id)}">'
            f'<input type="hidden" name="next" value="{escape(next_url)}">'
            f'<label>matchers, one per line (labels: priority, intent, intents, sentiment, language, brand, '
            f'source, incident, author_verified, reach)<textarea name="matchers" required>{escape(prefill)}'
            '</textarea></label><label>for <input name="duration" value="2h" size="6" required '
            'pattern="[0-9.]+[smhdw]([0-9.]+[smhdw])*"></label> '
            f'{author}<label>comment <input name="comment" maxlength="500" required size="40" '
            'placeholder="why (e.g. status page is up)"></label> <button class="silence">silence pages</button>'
            '<p class="muted">Mutes PagerDuty, Opsgenie, Slack and Alertmanager pages for matching mentions; '
            'queue items keep coming.</p></form></details>')
    return f"<h2>Silences</h2>{table}{form}"


def incident_page(view: ConsoleView, inc: IncidentView, ctx: PageContext, replies: ReplyBook) -> str:
    items = view.incident_items(inc.id)
    samples = []
    # Classify keeps URLs only for samples that have one, so the two lists pair up only when equally long.
    aligned = len(inc.sample_urls) == len(inc.sample_mention_ids)
    used: set[str] = set()
    for k, mid in enumerate(inc.sample_mention_ids):
        known = view.find_mention(mid)
        url = known.url if known and known.url else (inc.sample_urls[k] if aligned else "")
        used.add(url)
        text = escape(known.text) if known else ""
        link = (f'<a href="{escape(url)}" rel="noopener noreferrer">{escape(mid)}</a>'
                if url.startswith(("https://", "http://")) else escape(mid))
        samples.append(f'<li class="sample">{link} <span dir="auto">{text}</span></li>')
    samples += [f'<li class="sample"><a href="{escape(u)}" rel="noopener noreferrer">{escape(u)}</a></li>'
                for u in inc.sample_urls if u not in used and u.startswith(("https://", "http://"))]
    pages = "".join(
        f'<tr><td>{_utc(p.at)}</td><td>{escape(p.receiver)}</td><td>{escape(p.action)}</td>'
        f'<td class="{"ok" if p.delivered else "fail"}">{escape(p.status)}</td>'
        f'<td>{escape(p.detail)}</td></tr>' for p in view.pages.get(inc.id, []))
    reasons = "".join(f"<li>{escape(r)}</li>" for r in inc.reasons) or "<li class=muted>none given</li>"
    open_items = [i for i in items if i.state == "open"]
    cards = "".join(item_card(i, ctx, replies, f"/incidents/{quote(inc.id, safe='')}") for i in open_items[:50])
    body = (
        f'<h1>Incident {escape(inc.id)}</h1><p><span class="tag">{escape(inc.kind.lower().replace("_", " "))}</span>'
        f'<span class="tag">{escape(inc.brand)}</span><span class="tag">{escape(inc.state.lower())}</span> '
        f'severity <b>{inc.severity:.2f}</b>, {inc.mention_count} mentions, opened {_utc(inc.opened_at)} '
        f'({_ago(inc.age(ctx.now))} {"ago" if inc.is_open else "long"}), updated {_utc(inc.updated_at)}'
        + (f", resolved {_utc(inc.resolved_at)}" if inc.resolved_at else "") + "</p>"
        f"<h2>Mentions per minute</h2>{mentions_chart(view.mentions_per_minute(inc.id))}"
        f'<h2>Reasons</h2><ul class="reasons">{reasons}</ul>'
        f"<h2>Evidence</h2><p>top terms: {escape(', '.join(inc.top_terms)) or '–'}</p>"
        f"<p>languages: {_counts(inc.languages)}</p><p>sources: {_counts(inc.sources)}</p>"
        f'<h3>Samples</h3><ul class="samples">{"".join(samples) or "<li class=muted>none</li>"}</ul>'
        f'<h2>Pages</h2><table class="pages"><thead><tr><th>at</th><th>receiver</th><th>action</th><th>state</th>'
        f'<th>detail</th></tr></thead><tbody>{pages or "<tr><td colspan=5 class=muted>no pages</td></tr>"}'
        f"</tbody></table>{page_feedback_section(view, inc, ctx)}{silences_section(view, inc, ctx)}"
        f"<h2>Open items of this incident ({len(open_items)})</h2>{cards}")
    return layout(f"incident {inc.id}", body, ctx)
