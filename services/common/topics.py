"""Kafka topic names and their layout: the one place the pipeline's topics are named."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MENTIONS_RAW = "mentions.raw"
MENTIONS_SCORED = "mentions.scored"
INCIDENTS = "incidents"
RESPONSES = "responses"
PAGES = "pages"
# Responders' corrections of priority/intent (LabelFeedback), from the console.
FEEDBACK = "feedback"
MENTIONS_DLQ = "mentions.dlq"
QUEUE_PREFIX = "triage.queue."
# Ingest connectors' cursors (latest per connector name; compacted).
INGEST_CHECKPOINTS = "ingest.checkpoints"

_QUEUE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def queue_topic(name: str) -> str:
    """Topic of an inbox queue, e.g. `urgent` -> `triage.queue.urgent`."""
    if not _QUEUE_NAME.match(name):
        raise ValueError(f"invalid queue name {name!r}: use 1-63 lowercase letters, digits, '-' or '_'")
    return QUEUE_PREFIX + name


@dataclass(frozen=True)
class TopicSpec:
    """How a topic is laid out; mirrored by the KafkaTopic manifests in deploy/k8s."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


# Partition counts are the unit of scale-out for classify/router replicas.
CORE_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(MENTIONS_RAW, 6, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
    TopicSpec(MENTIONS_SCORED, 6, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
    # Compacted: the latest state of each incident, keyed by incident id.
    TopicSpec(INCIDENTS, 3, {"cleanup.policy": "compact"}),
    TopicSpec(RESPONSES, 3, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
    TopicSpec(PAGES, 1, {"retention.ms": str(90 * 24 * 3600 * 1000)}),
    TopicSpec(FEEDBACK, 1, {"retention.ms": str(365 * 24 * 3600 * 1000)}),
    TopicSpec(MENTIONS_DLQ, 1, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
    TopicSpec(INGEST_CHECKPOINTS, 1, {"cleanup.policy": "compact"}),
)

# Queues the default routing file (services/router/routes.default.yaml) uses.
DEFAULT_QUEUES: tuple[str, ...] = ("urgent", "normal", "thank", "low")


def all_topic_specs(queues: tuple[str, ...] = DEFAULT_QUEUES) -> list[TopicSpec]:
    specs = list(CORE_TOPICS)
    specs += [TopicSpec(queue_topic(q), 3, {"retention.ms": str(14 * 24 * 3600 * 1000)}) for q in queues]
    return specs
