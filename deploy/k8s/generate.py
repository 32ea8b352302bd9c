"""Writes the manifests under deploy/k8s/base that mirror a source of truth elsewhere in the repo.

    python deploy/k8s/generate.py           # rewrite them
    python deploy/k8s/generate.py --check   # exit 1 if any is stale (tests/unit/test_deploy.py does this too)

- kafka/topics.yaml         Strimzi KafkaTopic per `services.common.topics.all_topic_specs()`, with the
                            partition counts of config/partitions.env (the deployment's settings)
- classify/hpa.yaml, router/hpa.yaml   `maxReplicas` = the stage's partition count (config/partitions.env):
                            a replica beyond it gets no partition
- monitoring/prometheusrule.yaml   PrometheusRule wrapping deploy/prometheus/rules.yml
- config/routes.yaml        copy of services/router/routes.default.yaml (kustomize cannot read outside its root)
- config/brands.yaml        copy of services/ingest/brands.default.yaml
- overlays/prod/kafka-users.yaml   a Strimzi KafkaUser per service with the ACLs of
                            `services.common.topics.service_kafka_access()` (least privilege)

Hand-editing these files is pointless: change the source and run this script.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BASE = Path(__file__).resolve().parent / "base"
sys.path.insert(0, str(REPO))

from services.common.topics import (  # noqa: E402
    KafkaAccess,
    PartitionLayout,
    TopicSpec,
    all_topic_specs,
    service_kafka_access,
)

KAFKA_CLUSTER = "triage-kafka"
# Production replication: three brokers, and with producers on acks=all a write is acknowledged
# once two replicas have it, so one broker can be down without losing or refusing writes.
# The dev overlay patches both to 1 for a single-broker cluster.
REPLICAS = 3
# Broker-side settings that depend on the cluster, not on the topic's role; everything else
# in a KafkaTopic's config must equal the TopicSpec's configs (tests/unit/test_deploy.py).
DEPLOYMENT_CONFIGS = {"min.insync.replicas": "2"}

# The deployment's partition counts (TRIAGE_CLASSIFY_PARTITIONS, TRIAGE_ROUTER_PARTITIONS): kustomize puts the
# file into the triage-env ConfigMap every service reads, and this script lays the KafkaTopics and the HPAs'
# maxReplicas out from it. Grow them with `triage topics grow` first (docs/scaling.md, "Growing partitions").
PARTITIONS_ENV = BASE / "config/partitions.env"
PARTITION_SETTINGS = ("TRIAGE_CLASSIFY_PARTITIONS", "TRIAGE_ROUTER_PARTITIONS")
# HPA file -> the stage whose partition count caps it.
HPAS = {BASE / "classify/hpa.yaml": "classify", BASE / "router/hpa.yaml": "router"}


def partition_layout(path: Path = PARTITIONS_ENV) -> PartitionLayout:
    """The counts in `path` (KEY=VALUE lines, # comments), both settings required, nothing else allowed."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in PARTITION_SETTINGS:
            raise SystemExit(f"{path}:{number}: expected one of {', '.join(PARTITION_SETTINGS)}=N, got {line!r}")
        values[key] = value
    missing = [k for k in PARTITION_SETTINGS if k not in values]
    if missing:
        raise SystemExit(f"{path}: missing {', '.join(missing)}")
    return PartitionLayout(classify=int(values["TRIAGE_CLASSIFY_PARTITIONS"]),
                           router=int(values["TRIAGE_ROUTER_PARTITIONS"]))


# Why each topic is laid out the way topics.py lays it out (partitions bound the replicas of the
# worker that consumes it: the HPAs' maxReplicas never exceed them); `why` adds the scale-out units'.
WHY = {
    "incidents": "compacted: the latest state of every incident stays readable forever, keyed by incident id; "
                 "followed whole by every router replica and the console (not a scale-out unit); 6 partitions.",
    "responses": "replies reported by the inbox apps, keyed by mention id: co-partitioned with mentions.scored so "
                 "the replica that owns a mention's SLA clock gets its reply; 30 d covers the longest SLA plus "
                 "late reports.",
    "pages": "audit trail of every page; 1 partition keeps it in order; 90 d for post-incident reviews.",
    "feedback": "responders' priority/intent corrections from the console (LabelFeedback); 1 partition (people "
                "write them); 365 d so they stay usable as a labelled dev set.",
    "silences": "silences created from the console (Silence, keyed by silence id): compacted, the latest "
                "version of each (expired ones too, as Alertmanager keeps them); 1 partition (people write them).",
    "triage.decisions": "responders' page now / dismiss decisions on incident groups held for triage (TriageDecision, "
                        "keyed by the group key): compacted; co-partitioned with the page requests "
                        "(TRIAGE_ROUTER_PARTITIONS) so the group's router replica reads it.",
    "claims": "responders' claims on queue items from the console (Claim, keyed by mention id): compacted, the "
              "latest of each (a claim lives minutes, so compaction runs often); 3 partitions; every console "
              "replica reads them all.",
    "triage.console.presence": "console presence heartbeats (Presence, keyed by responder): who is looking at "
                               "which incident or queue item; every console replica reads it; 1 partition; "
                               "10 min retention (a viewer is forgotten within seconds anyway).",
    "mentions.dlq": "dead letters with their reason; 1 partition (low volume, read by people and replay); "
                    "30 d to notice and replay them.",
    "ingest.checkpoints": "connector cursors, latest per connector name: compacted; 1 partition (a few keys).",
    "erasures": "audit records of `triage forget` (what was erased where, when, by whom; no personal data); "
                "1 partition; kept for good (retention -1): they are the proof that an erasure was done.",
    "triage-classify-__assignor-__leader": "Faust's assignor topic of classify (no records): laid out here so that "
                                           "the cluster, not Faust, sets its replication.",
    "triage-router-__assignor-__leader": "Faust's assignor topic of the router (no records): laid out here so that "
                                         "the cluster, not Faust, sets its replication.",
    "triage-classify-crisis-state-changelog": "classify's crisis-detection table (Faust GlobalTable changelog), "
                                              "compacted; partitions = TRIAGE_CRISIS_STATE_PARTITIONS.",
}
QUEUE_WHY = "inbox queue read by the inbox apps; 3 partitions; 14 d so a queue nobody drained over a holiday survives."


def why(layout: PartitionLayout) -> dict[str, str]:
    c, r = layout.classify, layout.router
    return {**WHY,
            "mentions.raw": f"{c} partitions (TRIAGE_CLASSIFY_PARTITIONS) = at most {c} classify replicas; 7 d "
                            "retention is the replay window after a model change or an outage.",
            "mentions.scored": f"{r} partitions (TRIAGE_ROUTER_PARTITIONS) = at most {r} router replicas; "
                               "co-partitioned with responses, the page requests and the router's state "
                               "(docs/scaling.md); 7 d, same replay window as mentions.raw.",
            "triage.router.page-requests": "a mention's contribution to an incident group, keyed by the group key: "
                                           "the one router replica owning that partition counts and pages the "
                                           f"group; {r} partitions (co-partitioned); 1 d (consumed within seconds).",
            "triage.classify.crisis-input": "classify's scored mentions on their way to crisis detection, one record "
                                            "per brand named: the replica owning a brand's partition sees all of "
                                            f"its mentions; {c} partitions like mentions.raw; 1 d.",
            "triage-router-state-changelog": "the router's groups (page delivery state included) and SLA clocks, "
                                             f"compacted; co-partitioned ({r}): a replica assigned partition p reads "
                                             "partition p of it; `triage topics grow` re-keys it.",
            }

class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL) as `|` blocks, the way people write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)

HEADER = "# GENERATED by deploy/k8s/generate.py from {source}; do not edit, run the script.\n"


def kafka_topic(spec: TopicSpec) -> dict[str, object]:
    # Resource names may not contain '_' (queue names may): spec.topicName keeps the real name.
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {
            "name": spec.name.replace(".", "-").replace("_", "-"),
            "labels": {"strimzi.io/cluster": KAFKA_CLUSTER},
        },
        "spec": {
            "topicName": spec.name,
            "partitions": spec.partitions,
            "replicas": REPLICAS,
            "config": {**spec.configs, **DEPLOYMENT_CONFIGS},
        },
    }


def topics_yaml(layout: PartitionLayout) -> str:
    docs = []
    reasons = why(layout)
    for spec in all_topic_specs(layout=layout):
        why_ = reasons.get(spec.name, QUEUE_WHY)
        key = f" Key: {spec.key}." if spec.key else ""
        docs.append(f"# {spec.name}: {why_}{key}\n" + yaml.safe_dump(kafka_topic(spec), sort_keys=False))
    return (HEADER.format(source="services/common/topics.py (all_topic_specs) and config/partitions.env")
            + "---\n".join(docs))


_MAX_REPLICAS = re.compile(r"^(  # = partitions of .*\n)?(  # a replica beyond .*\n)?  maxReplicas: \d+$", re.MULTILINE)


def hpa_yaml(path: Path, stage: str, layout: PartitionLayout) -> str:
    """`path` with its maxReplicas (and the comment above it) set to the stage's partition count."""
    n = layout.classify if stage == "classify" else layout.router
    topic = "mentions.raw" if stage == "classify" else "mentions.scored"
    setting = f"TRIAGE_{stage.upper()}_PARTITIONS"
    text, found = _MAX_REPLICAS.subn(
        f"  # = partitions of {topic}: {setting} in config/partitions.env (generate.py writes this);\n"
        f"  # a replica beyond them would get no partition (tests/unit/test_deploy.py).\n  maxReplicas: {n}",
        path.read_text(), count=1)
    if not found:
        raise SystemExit(f"{path}: no `maxReplicas:` line to set")
    return text


def prometheusrule_yaml() -> str:
    rules = yaml.safe_load((REPO / "deploy/prometheus/rules.yml").read_text())
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "social-triage"},
        "spec": {"groups": rules["groups"]},
    }
    text = yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=120)
    return HEADER.format(source="deploy/prometheus/rules.yml") + text


def copied(source: str) -> str:
    return HEADER.format(source=source) + (REPO / source).read_text()


def _acl(resource_type: str, name: str, pattern: str, operations: list[str]) -> dict[str, object]:
    return {"resource": {"type": resource_type, "name": name, "patternType": pattern},
            "operations": operations, "host": "*"}


def kafka_acls(access: KafkaAccess) -> list[dict[str, object]]:
    """Strimzi `simple` ACLs: Read/Write (with Describe) on exactly the topics the service uses, Read on its
    consumer groups; nothing on the cluster, no Create, Delete or Alter."""
    acls = []
    for name in sorted(set(access.reads) | set(access.writes)):
        ops = [op for op, has in (("Read", name in access.reads), ("Write", name in access.writes)) if has]
        acls.append(_acl("topic", name, "literal", [*ops, "Describe"]))
    for prefix in sorted(set(access.read_prefixes) | set(access.write_prefixes)):
        ops = [op for op, has in (("Read", prefix in access.read_prefixes),
                                  ("Write", prefix in access.write_prefixes)) if has]
        acls.append(_acl("topic", prefix, "prefix", [*ops, "Describe"]))
    acls += [_acl("group", g, "literal", ["Read", "Describe"]) for g in access.groups]
    acls += [_acl("group", g, "prefix", ["Read", "Describe"]) for g in access.group_prefixes]
    return acls


def kafka_user(access: KafkaAccess) -> dict[str, object]:
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaUser",
        "metadata": {"name": access.user, "labels": {"strimzi.io/cluster": KAFKA_CLUSTER}},
        "spec": {"authentication": {"type": "scram-sha-512"},
                 "authorization": {"type": "simple", "acls": kafka_acls(access)}},
    }


def kafka_users_yaml() -> str:
    intro = ("# One SCRAM-SHA-512 KafkaUser per service: Strimzi's User Operator creates a Secret of the same name\n"
             "# whose key `password` the workloads read (kafka-auth-<service>-patch.yaml); rotating it is deleting\n"
             "# that Secret. The ACLs give each service exactly the topics and groups its code opens\n"
             "# (tests/unit/test_security_kafka_acls.py); the Kafka CR needs `authorization: {type: simple}`.\n")
    docs = [yaml.safe_dump(kafka_user(a), sort_keys=False) for a in service_kafka_access().values()]
    return HEADER.format(source="services/common/topics.py (service_kafka_access)") + intro + "---\n".join(docs)


def outputs() -> dict[Path, str]:
    layout = partition_layout()
    return {
        BASE / "kafka/topics.yaml": topics_yaml(layout),
        **{path: hpa_yaml(path, stage, layout) for path, stage in HPAS.items()},
        BASE / "monitoring/prometheusrule.yaml": prometheusrule_yaml(),
        BASE / "config/routes.yaml": copied("services/router/routes.default.yaml"),
        BASE / "config/brands.yaml": copied("services/ingest/brands.default.yaml"),
        BASE.parent / "overlays/prod/kafka-users.yaml": kafka_users_yaml(),
    }


def stale() -> list[Path]:
    return [path for path, text in outputs().items() if not path.exists() or path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        for path in bad:
            print(f"stale: {path.relative_to(REPO)} (run python deploy/k8s/generate.py)", file=sys.stderr)
        return 1 if bad else 0
    for path, text in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
