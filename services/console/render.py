"""HTML of the console's pages, rendered on the server from the Jinja2 templates in templates/: every page
reads fine with JavaScript off.

Autoescaping is on for every template (`select_autoescape`), so every value from a mention, an incident or
a form is escaped by the engine; the only markup passed through as is is the chart (chart.py, numbers and
escaped labels). The only script is the vendored static/console.js (page refresh, countdowns, copy button).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from services.common.pii import mask_text
from services.console.actions import INTENTS, PRIORITIES
from services.console.chart import mentions_chart
from services.console.claims import ActiveClaim, ClaimBook
from services.console.presence import PresenceBoard, incident_target, item_target, presence_line
from services.console.replies import ReplyBook, reply_language
from services.console.views import (
    FACETS,
    TRIAGE_ACTION,
    ConsoleView,
    IncidentGroup,
    IncidentView,
    Page,
    QueueFilter,
    QueueItem,
    SilenceReach,
    TriageEntry,
    incident_labels,
    paginate,
)

INCIDENT_PAGE_ITEMS = 50  # open items shown as cards on an incident's page (the group's actions cover all)
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

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
.ok{color:#2e7d32}.fail{color:#c62828}.presence{color:#5e35b1;margin-left:.4em}
"""


@dataclass(frozen=True)
class PageContext:
    csrf_token: str
    poll_seconds: float
    now: float
    queues: list[str]
    user: str = ""          # signed-in name; empty while access control is off
    can_act: bool = True    # False for read-only users: no action forms
    presence: PresenceBoard | None = None  # who else looks at what ("also viewing"); None: not shown


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d"


def utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "–"


def _urlpart(value: str) -> str:
    """One path segment (an incident id or a queue name), with `/` and everything else percent-encoded."""
    return quote(str(value), safe="")


def _web_url(value: object) -> bool:
    """Only http(s) links become hrefs: a mention's `javascript:` URL stays text."""
    return isinstance(value, str) and value.startswith(("https://", "http://"))


def shown_text(text: str, ctx: PageContext) -> str:
    """A post's text as this person may see it: the original for responders (they answer the author), masked
    (services/common/pii.py) for read-only users. The templates' `shown` filter."""
    return text if ctx.can_act else mask_text(text)


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(ago=ago, utc=utc, urlpart=_urlpart, shown=shown_text)
    env.tests.update(web_url=_web_url, incident_group=lambda v: isinstance(v, IncidentGroup))
    env.globals.update(priorities=PRIORITIES, intents=INTENTS, facets=FACETS, style=Markup(STYLE),
                       incident_target=incident_target, item_target=item_target)
    return env


ENV = _environment()


def _render(template: str, title: str, ctx: PageContext, replies: ReplyBook | None = None,
            claims: ClaimBook | None = None, **values: Any) -> str:
    return ENV.get_template(template).render(title=title, ctx=ctx, suggest=_suggester(replies),
                                             status_updates=_status_updates(replies),
                                             claim_of=_claim_finder(claims, ctx.now), claim_line=claim_line,
                                             also_viewing=_also_viewing(ctx), **values)


def _also_viewing(ctx: PageContext) -> Callable[[str], str]:
    """The "also viewing" line of a target for the person reading the page (never themselves)."""
    def also_viewing(target: str) -> str:
        if ctx.presence is None:
            return ""
        return presence_line(ctx.presence.viewers(target, ctx.now, excluding=ctx.user), ctx.now)
    return also_viewing


def _claim_finder(claims: ClaimBook | None, now: float) -> Callable[[QueueItem], ActiveClaim | None]:
    def claim_of(item: QueueItem) -> ActiveClaim | None:
        return claims.holder(item.mention_id, now) if claims is not None and item.state == "open" else None
    return claim_of


def claim_line(claim: ActiveClaim, now: float, user: str = "") -> str:
    """What a card says about its claim: "ana is on it, 3 min" (handed over: "…, from bo")."""
    who = "you are" if user and claim.holder == user else f"{claim.holder} is"
    line = f"{who} on it, {claim.minutes(now)} min"
    return line + (f", from {claim.handed_over_by}" if claim.handed_over_by else "")


def _status_updates(replies: ReplyBook | None) -> Callable[[IncidentGroup], list[tuple[str, int, str]]]:
    """Per language of a group's posts (most posts first): (language, posts, the status update to edit)."""
    def status_updates(group: IncidentGroup) -> list[tuple[str, int, str]]:
        langs = Counter(reply_language(i.language) for i in group.items)
        return [(lang, n, replies.status_update(lang, group.brand) if replies else "")
                for lang, n in sorted(langs.items(), key=lambda kv: (-kv[1], kv[0]))]
    return status_updates


def _suggester(replies: ReplyBook | None) -> Callable[[QueueItem], str]:
    def suggest(item: QueueItem) -> str:
        return replies.suggest(item.intent, item.language, item.author, item.brand) if replies else ""
    return suggest


def login_page(ctx: PageContext, next_url: str, failed: bool) -> str:
    return _render("login.html", "sign in", ctx, next_url=next_url, failed=failed)


def error_page(status: int, message: str, ctx: PageContext) -> str:
    return _render("error.html", f"error {status}", ctx, status=status, message=message)


def latest_pages(view: ConsoleView, incident_id: str) -> dict[str, tuple[str, bool, str]]:
    """Per receiver, the latest page attempt: (action, delivered, status); a triage hold's record ("triage
    held") only while the receiver has no page yet."""
    latest: dict[str, tuple[str, bool, str]] = {}
    for p in view.pages.get(incident_id, []):
        if p.action == TRIAGE_ACTION and latest.get(p.receiver, (TRIAGE_ACTION,))[0] != TRIAGE_ACTION:
            continue
        latest[p.receiver] = (p.action, p.delivered, p.status)
    return latest


def precision_lines(view: ConsoleView) -> list[str]:
    """The responders' corrections per brand: items and pages marked wrong."""
    wrong = view.marked_wrong()
    pages = view.pages_marked_wrong()
    lines = []
    for b, (w, n) in sorted(wrong.items()):
        if n:
            line = f"{b or '(no brand)'}: {w} of {n} P1/P2 items marked wrong"
            if pages.get(b, (0, 0))[1]:
                line += f", {pages[b][0]} of {pages[b][1]} pages marked wrong"
            lines.append(line)
    lines += [f"{b or '(no brand)'}: {w} of {n} pages marked wrong"
              for b, (w, n) in sorted(pages.items()) if n and not wrong.get(b, (0, 0))[1]]
    return lines


def incidents_page(view: ConsoleView, incidents: list[IncidentView], ctx: PageContext) -> str:
    return _render("incidents.html", "incidents", ctx, incidents=incidents, open_counts=view.open_counts(),
                   latest_pages=lambda incident_id: latest_pages(view, incident_id),
                   precision=precision_lines(view))


def queue_page(name: str, items: list[QueueItem], ctx: PageContext, replies: ReplyBook,
               flt: QueueFilter | None = None, counts: dict[str, dict[str, int]] | None = None,
               page: Page[QueueItem | IncidentGroup] | None = None, total_open: int | None = None,
               claims: ClaimBook | None = None) -> str:
    """A queue's `items` (those the filter found), shown as `page` of its entries (items and incident groups)."""
    flt = flt or QueueFilter()
    if counts is None:
        counts = {f: {} for f in FACETS} | {"breached": {"1": 0}}
    return _render("queue.html", f"queue {name}", ctx, replies, claims, name=name, items=items,
                   breached=sum(1 for i in items if i.breached(ctx.now)), flt=flt, counts=counts,
                   page=page or paginate(list(items), 1, max(1, len(items))),
                   total_open=len(items) if total_open is None else total_open,
                   whole_group=IncidentGroup(flt.incident, items))


@dataclass(frozen=True)
class Sample:
    label: str  # the mention id, or the URL itself when the mention is not known
    url: str
    text: str


def incident_samples(view: ConsoleView, inc: IncidentView) -> list[Sample]:
    """The incident's evidence samples with the text of those the console holds. Classify keeps URLs only
    for samples that have one, so the two lists pair up only when equally long."""
    aligned = len(inc.sample_urls) == len(inc.sample_mention_ids)
    used: set[str] = set()
    out = []
    for k, mid in enumerate(inc.sample_mention_ids):
        known = view.find_mention(mid)
        url = known.url if known and known.url else (inc.sample_urls[k] if aligned else "")
        used.add(url)
        out.append(Sample(mid, url, known.text if known else ""))
    out += [Sample(u, u, "") for u in inc.sample_urls if u not in used and _web_url(u)]
    return out


def incident_page(view: ConsoleView, inc: IncidentView, ctx: PageContext, replies: ReplyBook) -> str:
    open_items = [i for i in view.incident_items(inc.id) if i.state == "open"]
    return _render(
        "incident.html", f"incident {inc.id}", ctx, claims=view.claims, inc=inc, samples=incident_samples(view, inc),
        chart=Markup(mentions_chart(view.mentions_per_minute(inc.id))), pages=view.pages.get(inc.id, []),
        page_mark=view.page_feedback.get(inc.id), paged=view.paged(inc.id),
        silences=view.silences_for(inc, ctx.now),
        prefill="\n".join(f'{k}="{v}"' for k, v in incident_labels(inc).items() if v),
        open_items=open_items, group=IncidentGroup(inc.id, open_items), replies=replies,
        shown_items=INCIDENT_PAGE_ITEMS)


def silences_page(rows: list[SilenceReach], totals: dict[str, int], state: str, ctx: PageContext) -> str:
    here = "/silences" + (f"?state={state}" if state else "")
    return _render("silences.html", "silences", ctx, rows=rows, totals=totals, state=state, here=here,
                   states=("active", "pending", "expired"))


def triage_page(view: ConsoleView, pending: list[TriageEntry], recent: list[TriageEntry], ctx: PageContext) -> str:
    return _render("triage.html", "triage", ctx, pending=pending, recent=recent, incidents=view.incidents,
                   here="/triage")
