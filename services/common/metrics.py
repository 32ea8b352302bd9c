"""Metrics every service shares, and the /metrics HTTP endpoint.

Names follow `triage_<subsystem>_<name>_<unit>`; labels are bounded (service,
topic, stage, outcome, reason class), never mention ids or handles.
"""

from __future__ import annotations

from prometheus_client import Counter, Info, start_http_server

MESSAGES_IN = Counter(
    "triage_messages_in_total", "Messages consumed or received, per service and topic", ["service", "topic"]
)
MESSAGES_OUT = Counter("triage_messages_out_total", "Messages produced, per service and topic", ["service", "topic"])
MESSAGES_FAILED = Counter(
    "triage_messages_failed_total",
    "Messages a stage could not process (each also goes to the DLQ or is rejected with a 4xx)",
    ["service", "stage", "reason"],
)
DEAD_LETTERS = Counter("triage_dead_letters_total", "Messages written to mentions.dlq, per stage", ["service", "stage"])
# Buckets span a fast path (tens of ms) to a backed-up pipeline (minutes).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
BUILD_INFO = Info("triage_build", "Version of the running service")


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose the default registry on http://host:port/metrics (a daemon thread)."""
    start_http_server(port, addr=host)
