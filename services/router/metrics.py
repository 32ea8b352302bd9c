"""Router metrics (imported as `router_metrics` in router code).

`reason` labels of failures take the values of services/common/errors.py's `DeliveryReason`
(client_error, auth_error, rate_limited, server_error, timeout, network) and are empty where
nothing failed: bounded cardinality.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS

ROUTED = Counter("triage_router_routed_total", "Mentions delivered, per receiver and priority",
                 ["receiver", "priority"])
DELIVERY_ATTEMPTS = Counter("triage_router_delivery_attempts_total",
                            "Delivery attempts per receiver, outcome (ok, retryable, rejected) and failure reason",
                            ["receiver", "outcome", "reason"])
DELIVERY_RETRIES = Counter("triage_router_delivery_retries_total", "Deliveries retried, per receiver", ["receiver"])
DEAD_LETTERED = Counter("triage_router_dead_lettered_total", "Deliveries given up and sent to the DLQ",
                        ["receiver"])
DELIVERY_SECONDS = Histogram("triage_router_delivery_seconds", "Time to deliver to a receiver (incl. retries)",
                             ["receiver"], buckets=LATENCY_BUCKETS)
END_TO_END = Histogram("triage_end_to_end_latency_seconds",
                       "From the mention's created_at (origin=created) or ingest's received_at (origin=received) "
                       "to routed", ["origin"], buckets=LATENCY_BUCKETS)
RATE_LIMITED = Counter("triage_router_rate_limited_total", "Deliveries that waited for the receiver's rate limit",
                       ["receiver"])
PAGES = Counter("triage_router_pages_total",
                "Incident notifications per receiver, action and outcome (sent: accepted; failed: dead-lettered), "
                "with the reason of the last failed attempt", ["receiver", "action", "outcome", "reason"])
PAGES_SUPPRESSED = Counter("triage_router_pages_suppressed_total",
                           "Mentions kept from paging receivers, by reason (silence, inhibition)",
                           ["receiver", "reason"])
OPEN_INCIDENTS = Gauge("triage_router_open_incidents", "Incident groups open (paged or waiting for group_wait)")
SLA_BREACHES = Counter("triage_router_sla_breaches_total", "Items escalated after their first-response deadline",
                       ["queue", "priority"])
FIRST_RESPONSE = Histogram("triage_router_first_response_seconds", "Routed -> first response, per priority",
                           ["priority"], buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 86400, 3 * 86400))
SLA_ITEMS = Counter("triage_router_sla_items_total", "Items whose first-response clock started", ["priority"])
RESPONSES = Counter("triage_router_responses_total",
                    "First responses per priority and outcome (in_time / late); response rate = this / sla_items",
                    ["priority", "outcome"])
OPEN_ITEMS = Gauge("triage_router_open_items", "Items waiting for a first response", ["queue", "priority"])
PAGES_RETRYING = Gauge("triage_router_pages_retrying", "Pages waiting for another delivery attempt after a failure",
                       ["receiver", "action"])
PAGE_DELAY = Histogram("triage_router_page_delay_seconds",
                       "From the moment a page was due to the receiver accepting it (retries included)",
                       ["action"], buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 900, 3600))
DUPLICATES_SKIPPED = Counter("triage_router_duplicates_skipped_total",
                             "Scored mentions already routed to a queue topic (a replay after a crash), not routed "
                             "again", ["receiver"])
NOT_OWNED = Counter("triage_router_not_owned_total",
                    "Messages of a partition this replica lost in a rebalance a moment ago, left to its new owner")
ALERT_HEARTBEATS = Counter("triage_router_alert_heartbeats_total",
                           "Alertmanager alerts of open incidents re-posted before their endsAt, per receiver, "
                           "outcome (sent / failed) and the failure's reason", ["receiver", "outcome", "reason"])
DELETION_NOTICES = Counter("triage_router_deletion_notices_total",
                           "MentionDeleted notices published to queue topics", ["topic"])
DELETED_NOT_ROUTED = Counter("triage_router_deleted_not_routed_total",
                             "Scored mentions not routed because they (or their author) were deleted")
TRIAGE = Counter("triage_router_triage_total",
                 "Incident groups of triage routes by what became of the hold (held, paged_now, dismissed, timed_out, "
                 "resolved), per receiver", ["receiver", "outcome"])
TRIAGE_HELD = Gauge("triage_router_triage_held", "Incident groups held for a person's triage decision now",
                    ["receiver"])
TRIAGE_DECISIONS_IGNORED = Counter("triage_router_triage_decisions_ignored_total",
                                   "Triage decisions that changed nothing, by why (unknown_group, not_held, "
                                   "already_decided, already_paged, already_resolved, invalid)", ["reason"])
TRIAGE_NOTICES = Counter("triage_router_triage_notices_total",
                         "Chat notices of held incident groups, per receiver, outcome (sent / failed) and the "
                         "failure's reason", ["receiver", "outcome", "reason"])
