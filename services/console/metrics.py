"""Console metrics (see docs/metrics.md); labels are bounded: queue, action, brand, outcome."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

HTTP_REQUESTS = Counter("triage_console_http_requests_total", "Console HTTP requests by route and status code",
                        ["route", "code"])
ACTIONS = Counter("triage_console_actions_total", "Actions published from the console, by action and outcome",
                  ["action", "outcome"])
OPEN_ITEMS = Gauge("triage_console_open_items", "Queue items nobody has answered yet, as the console sees them",
                   ["queue"])
INCIDENTS = Gauge("triage_console_incidents", "Incidents on the console by state", ["state"])
MARKED_WRONG_RATIO = Gauge("triage_console_marked_wrong_ratio",
                           "Share of P1/P2 items responders marked wrong (priority or intent), per brand", ["brand"])
PAGES_MARKED_WRONG_RATIO = Gauge("triage_console_pages_marked_wrong_ratio",
                                 "Share of paged incidents responders marked as a wrong page, per brand", ["brand"])
PRESENCE_HEARTBEATS = Counter("triage_console_presence_heartbeats_total",
                              "Presence heartbeats (\"also viewing\") this replica sent for its viewers, by outcome",
                              ["outcome"])
PRESENCE_TARGETS = Gauge("triage_console_presence_targets",
                         "Incidents and queue items someone looked at recently, as the presence board holds them")
TRIAGE_WAITING = Gauge("triage_console_triage_waiting",
                       "Incidents held for triage that nobody has decided on yet, as the console sees them")
