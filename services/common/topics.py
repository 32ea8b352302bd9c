"""Kafka topic names and their layout: the one place the pipeline's topics are named."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from aiokafka.partitioner import murmur2

MENTIONS_RAW = "mentions.raw"
MENTIONS_SCORED = "mentions.scored"
INCIDENTS = "incidents"
RESPONSES = "responses"
PAGES = "pages"
# Responders' corrections of priority/intent (LabelFeedback), from the console.
FEEDBACK = "feedback"
# Silences created from the console (Silence, keyed by silence id; compacted: the latest version of each).
SILENCES = "silences"
# Responders' claims on queue items (Claim, keyed by the item's mention id; compacted: the latest of each), from
# the console; every console replica folds them, so two people never work the same item unknowingly.
CLAIMS = "claims"
# Console presence heartbeats (Presence, keyed by responder): who is looking at which incident or queue item now;
# every console replica folds them into "also viewing" and forgets a viewer within seconds. Short retention.
PRESENCE = "triage.console.presence"
# Triage decisions on incident groups held before paging (TriageDecision, keyed by the router's group key;
# compacted: the latest of each), from the console; co-partitioned with the page requests, so the router
# replica that owns the group reads it.
TRIAGE_DECISIONS = "triage.decisions"
MENTIONS_DLQ = "mentions.dlq"
# The router's page requests: a mention's contribution to an incident group, keyed by the group's key, so
# the one replica that owns a group (its partition) counts every mention of it and pages it once.
ROUTER_PAGE_REQUESTS = "triage.router.page-requests"
# Classify's scored mentions on their way to crisis detection, one record per brand the mention names, keyed
# by that brand: the replica owning a brand's partition sees every mention of it (docs/scaling.md).
CLASSIFY_CRISIS_INPUT = "triage.classify.crisis-input"
QUEUE_PREFIX = "triage.queue."
# Ingest connectors' cursors (latest per connector name; compacted).
INGEST_CHECKPOINTS = "ingest.checkpoints"
# Audit records of `triage forget` (ErasureRecord, keyed by erasure id; no personal data): kept for good.
ERASURES = "erasures"

_QUEUE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as in the Java client and aiokafka) gives `key`."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


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
    key: str = ""  # what records are keyed by (the partitioning key), documented in the manifests


# The router's topics that must be co-partitioned (same partition count, keys hashed by Kafka's default
# murmur2 partitioner): Faust assigns partition p of each to the same replica, so the owner of a mention's
# partition of `mentions.scored` also gets its `responses` (SLA clocks) and its state partition, and the
# owner of a group's partition of the page requests holds the group. docs/scaling.md has the diagram.
# The router's state changelog (`router_state_spec`) is laid out with them. The console's triage decisions
# are keyed by group key like the page requests, so the group's owner reads them.
ROUTER_COPARTITIONED: tuple[str, ...] = (MENTIONS_SCORED, RESPONSES, ROUTER_PAGE_REQUESTS, TRIAGE_DECISIONS)
# Classify's: scoring runs on the replicas owning `mentions.raw`, crisis detection on those owning a brand's
# partition of the crisis input; one count for both (the crisis stage's ownership is computed from it).
CLASSIFY_COPARTITIONED: tuple[str, ...] = (MENTIONS_RAW, CLASSIFY_CRISIS_INPUT)
# Default partition counts of the two scale-out units (the settings TRIAGE_CLASSIFY_PARTITIONS and
# TRIAGE_ROUTER_PARTITIONS; deploy/k8s/base/config/partitions.env in a cluster).
DEFAULT_PARTITIONS = 6


@dataclass(frozen=True)
class PartitionLayout:
    """The partition counts of the two scale-out units, from the deployment's settings
    (`ServiceSettings.partition_layout()`): a worker's replicas beyond its count get no partition, so these
    cap the HPAs' `maxReplicas`. Kafka can grow a topic, never shrink one: `triage topics grow` (docs/scaling.md).

    Example:

        layout = PartitionLayout(classify=12, router=6)
        layout.partitions_of("mentions.raw")      # 12
        layout.partitions_of("pages")             # None: a fixed layout, not a scale-out unit
    """

    classify: int = DEFAULT_PARTITIONS
    router: int = DEFAULT_PARTITIONS

    def __post_init__(self) -> None:
        if self.classify < 1 or self.router < 1:
            raise ValueError(f"partition counts must be >= 1, got classify={self.classify} router={self.router}")

    def partitions_of(self, topic: str) -> int | None:
        """The count `topic` gets from this layout, or None when its count is fixed in CORE_TOPICS."""
        if topic in CLASSIFY_COPARTITIONED:
            return self.classify
        if topic in ROUTER_COPARTITIONED:   # and the router's state topic: router_state_spec(partitions=...)
            return self.router
        return None

    def apply(self, specs: Iterable[TopicSpec]) -> list[TopicSpec]:
        """`specs` with the counts of this layout where it decides them."""
        out = []
        for spec in specs:
            n = self.partitions_of(spec.name)
            out.append(spec if n is None or n == spec.partitions else replace(spec, partitions=n))
        return out


DEFAULT_LAYOUT = PartitionLayout()


# Partition counts are the unit of scale-out for classify/router replicas; these are the defaults, a
# deployment's come from its settings (`PartitionLayout.apply`, `all_topic_specs(layout=...)`).
CORE_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(MENTIONS_RAW, DEFAULT_PARTITIONS, {"retention.ms": str(7 * 24 * 3600 * 1000)}, key="mention id"),
    TopicSpec(MENTIONS_SCORED, DEFAULT_PARTITIONS, {"retention.ms": str(7 * 24 * 3600 * 1000)}, key="mention id"),
    # Compacted: the latest state of each incident, keyed by incident id.
    TopicSpec(INCIDENTS, 6, {"cleanup.policy": "compact"}, key="incident id"),
    TopicSpec(RESPONSES, DEFAULT_PARTITIONS, {"retention.ms": str(30 * 24 * 3600 * 1000)}, key="mention id"),
    TopicSpec(ROUTER_PAGE_REQUESTS, DEFAULT_PARTITIONS, {"retention.ms": str(24 * 3600 * 1000)},
              key="incident group key"),
    TopicSpec(CLASSIFY_CRISIS_INPUT, DEFAULT_PARTITIONS, {"retention.ms": str(24 * 3600 * 1000)}, key="brand"),
    TopicSpec(PAGES, 1, {"retention.ms": str(90 * 24 * 3600 * 1000)}, key="incident id"),
    TopicSpec(FEEDBACK, 1, {"retention.ms": str(365 * 24 * 3600 * 1000)}, key="mention id"),
    TopicSpec(SILENCES, 1, {"cleanup.policy": "compact"}, key="silence id"),
    # Compacted, and a claim lives minutes: the latest claim of each item is all a console needs at start.
    TopicSpec(CLAIMS, 3, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1",
                          "segment.ms": str(3600 * 1000)}, key="mention id"),
    # Heartbeats matter for seconds: a few minutes of them is all a console replica reads back at start.
    TopicSpec(PRESENCE, 1, {"retention.ms": str(10 * 60 * 1000), "segment.ms": str(10 * 60 * 1000)},
              key="responder"),
    # Compacted and co-partitioned with the page requests (the group's owner consumes it); a decision is
    # read within seconds, kept while its group may still be held.
    TopicSpec(TRIAGE_DECISIONS, DEFAULT_PARTITIONS, {"cleanup.policy": "compact"}, key="incident group key"),
    TopicSpec(MENTIONS_DLQ, 1, {"retention.ms": str(30 * 24 * 3600 * 1000)}, key="mention / incident id"),
    TopicSpec(INGEST_CHECKPOINTS, 1, {"cleanup.policy": "compact"}, key="connector name"),
    TopicSpec(ERASURES, 1, {"retention.ms": "-1"}, key="erasure id"),
)

def router_state_spec(app_id: str = "triage-router", partitions: int = DEFAULT_PARTITIONS) -> TopicSpec:
    """The router's state changelog: co-partitioned with `mentions.scored` (SLA clocks, keyed by mention id)
    and the page requests (groups, keyed by group key); each record goes to the partition its key's owner has,
    so growing it means moving every key whose partition changed (`triage topics grow`)."""
    return TopicSpec(f"{app_id}-state-changelog", partitions, {"cleanup.policy": "compact"},
                     key="group:<group key> / sla:<mention id> (partition of the owning key)")


def classify_deletions_spec(app_id: str = "triage-classify") -> TopicSpec:
    """Classify's checkpoint of the deletions it remembers (services/common/deletion_log.py): every replica reads
    it whole at start, so its partition count is fixed (it does not follow `mentions.raw` when that grows);
    compacted, with tombstones when a deletion leaves the window, and deleted after the retention of
    `mentions.raw` at the latest (a deletion never outlives the posts it guards against)."""
    return TopicSpec(f"{app_id}-deletions", DEFAULT_PARTITIONS,
                     {"cleanup.policy": "compact,delete", "retention.ms": str(7 * 24 * 3600 * 1000)},
                     key="deleted:id:<mention id> (its partition) / deleted:author:<source>:@handle (every partition)")


def faust_leader_topic(app_id: str) -> str:
    """The topic Faust's leader assignor subscribes every worker of `app_id` to (it holds no records)."""
    return f"{app_id}-__assignor-__leader"


def faust_changelog_topic(app_id: str, table: str) -> str:
    """The changelog Faust writes a table of `app_id` to (and recovers it from)."""
    return f"{app_id}-{table}-changelog"


def faust_internal_specs(classify_app_id: str = "triage-classify", router_app_id: str = "triage-router",
                         crisis_state_partitions: int = 6) -> list[TopicSpec]:
    """The topics Faust creates for the workers (assignor leader topics, table changelogs), laid out here so
    that the cluster has them with its replication and min.insync.replicas before Faust would create them with
    the broker's defaults. Neither worker uses `group_by`, so there are no repartition topics. The defaults
    are the services' (ClassifySettings / RouterSettings app ids, classify's crisis-state table)."""
    return [
        TopicSpec(faust_leader_topic(classify_app_id), 1, key="none: Faust's partition assignment, no records"),
        TopicSpec(faust_changelog_topic(classify_app_id, "crisis-state"), crisis_state_partitions,
                  {"cleanup.policy": "compact"}, key="brand"),
        TopicSpec(faust_leader_topic(router_app_id), 1, key="none: Faust's partition assignment, no records"),
    ]


@dataclass(frozen=True)
class KafkaAccess:
    """What one service's Kafka user may do: the topics it consumes and produces and its consumer groups
    (exact names, or prefixes for the queue topics and per-replica groups). The prod KafkaUsers' ACLs are
    generated from it (deploy/k8s/generate.py); tests/unit/test_security_kafka_acls.py checks it against
    the topics each service's code opens. Nothing here may create, delete or alter a topic: the cluster's
    KafkaTopics lay every one out (`all_topic_specs`)."""

    user: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    read_prefixes: tuple[str, ...] = ()
    write_prefixes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    group_prefixes: tuple[str, ...] = ()


def service_kafka_access(classify_app_id: str = "triage-classify", router_app_id: str = "triage-router",
                         console_group_prefix: str = "triage-console") -> dict[str, KafkaAccess]:
    """Each service's least privilege, by service name (its KafkaUser is `triage-<service>`)."""
    router_state = router_state_spec(router_app_id).name
    crisis_changelog = faust_changelog_topic(classify_app_id, "crisis-state")
    classify_deletions = classify_deletions_spec(classify_app_id).name
    return {
        "ingest": KafkaAccess(
            "triage-ingest",
            reads=(INGEST_CHECKPOINTS,),  # connector cursors, read back at start (no group)
            writes=(MENTIONS_RAW, MENTIONS_DLQ, INGEST_CHECKPOINTS),
        ),
        "classify": KafkaAccess(
            "triage-classify",
            # incidents are followed whole (no group): resolved ones lose their samples after a while.
            reads=(MENTIONS_RAW, CLASSIFY_CRISIS_INPUT, crisis_changelog, faust_leader_topic(classify_app_id),
                   classify_deletions, INCIDENTS),
            writes=(MENTIONS_SCORED, CLASSIFY_CRISIS_INPUT, INCIDENTS, MENTIONS_DLQ, crisis_changelog,
                    classify_deletions),
            groups=(classify_app_id,),
        ),
        "router": KafkaAccess(
            "triage-router",
            # incidents and silences are followed whole (no group); the queue topics' recent headers are read
            # back at start (the ledger); mentions.dlq is read by `triage dlq replay` (group triage-dlq-replay).
            reads=(MENTIONS_SCORED, RESPONSES, ROUTER_PAGE_REQUESTS, TRIAGE_DECISIONS, INCIDENTS, SILENCES,
                   router_state,
                   MENTIONS_DLQ, faust_leader_topic(router_app_id)),
            writes=(ROUTER_PAGE_REQUESTS, PAGES, MENTIONS_DLQ, router_state),
            read_prefixes=(QUEUE_PREFIX,),
            write_prefixes=(QUEUE_PREFIX,),
            groups=(router_app_id, "triage-dlq-replay"),
        ),
        "console": KafkaAccess(
            "triage-console",
            reads=(INCIDENTS, PAGES, RESPONSES, FEEDBACK, SILENCES, CLAIMS, PRESENCE, TRIAGE_DECISIONS),
            writes=(RESPONSES, FEEDBACK, SILENCES, CLAIMS, PRESENCE, TRIAGE_DECISIONS),
            read_prefixes=(QUEUE_PREFIX,),
            group_prefixes=(console_group_prefix,),  # one group per replica: triage-console-<pod>
        ),
    }


# Queues the default routing file (services/router/routes.default.yaml) uses.
DEFAULT_QUEUES: tuple[str, ...] = ("urgent", "normal", "thank", "low")


def specs_named(*names: str, layout: PartitionLayout = DEFAULT_LAYOUT) -> list[TopicSpec]:
    """The specs of core topics by name (what a worker creates at start when missing), laid out by `layout`."""
    by_name = {spec.name: spec for spec in layout.apply(CORE_TOPICS)}
    return [by_name[n] for n in names]


def all_topic_specs(queues: tuple[str, ...] = DEFAULT_QUEUES,
                    layout: PartitionLayout = DEFAULT_LAYOUT) -> list[TopicSpec]:
    """Every topic of the pipeline, with the partition counts of `layout` (the deployment's settings)."""
    specs = [*layout.apply(CORE_TOPICS), router_state_spec(partitions=layout.router), classify_deletions_spec(),
             *faust_internal_specs()]
    specs += [TopicSpec(queue_topic(q), 3, {"retention.ms": str(14 * 24 * 3600 * 1000)}, key="mention id")
              for q in queues]
    return specs
