"""Classify worker metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, Info

from services.common.metrics import LATENCY_BUCKETS

BATCH_SIZE = Histogram(
    "triage_classify_batch_size", "Mentions per inference micro-batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
INFERENCE_SECONDS = Histogram(
    "triage_classify_inference_seconds",
    "Model time per micro-batch (encoder + heads + priority; language ID runs in the prepare stage)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SCORED = Counter("triage_classify_scored_total", "Mentions scored, by priority", ["priority"])
PIPELINE_LATENCY = Histogram(
    "triage_classify_latency_seconds", "From ingest's received_at to the scored mention produced",
    buckets=LATENCY_BUCKETS,
)
MODEL_INFO = Info("triage_classify_model", "Model version in use (hash of encoder weights + heads)")
DELETED_UNSCORED = Counter("triage_classify_deleted_unscored_total",
                           "Mentions dropped before scoring because they (or their author) were deleted")
INCIDENT_SAMPLES_DROPPED = Counter(
    "triage_classify_incident_samples_dropped_total",
    "Resolved incidents re-published without their sample ids and URLs (their lifetime ran out)")
