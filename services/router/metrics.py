"""Router metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.common.metrics import LATENCY_BUCKETS

ROUTED = Counter("triage_router_routed_total", "Mentions delivered, per receiver and priority",
                 ["receiver", "priority"])
DELIVERY_ATTEMPTS = Counter("triage_router_delivery_attempts_total", "Delivery attempts per receiver and outcome",
                            ["receiver", "outcome"])
DELIVERY_RETRIES = Counter("triage_router_delivery_retries_total", "Deliveries retried, per receiver", ["receiver"])
DEAD_LETTERED = Counter("triage_router_dead_lettered_total", "Deliveries given up and sent to the DLQ",
                        ["receiver"])
DELIVERY_SECONDS = Histogram("triage_router_delivery_seconds", "Time to deliver to a receiver (incl. retries)",
                             ["receiver"], buckets=LATENCY_BUCKETS)
END_TO_END = Histogram("triage_end_to_end_latency_seconds",
                       "From the mention's created_at (origin=created) or ingest's received_at (origin=received) "
                       "to routed", ["origin"], buckets=LATENCY_BUCKETS)
