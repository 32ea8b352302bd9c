"""Kafka least privilege: each service's KafkaUser may read and write exactly the topics and groups its
code opens (`services.common.topics.service_kafka_access`), and the prod overlay renders those ACLs.

What the code opens is read from its source (AST): every topic constant a service's modules name, and
how they use it (`producer.send(topics.X, …)` and a `(topics.X, value, key)` record write X;
`app.topic(topics.X)`, a `TopicFollower` or a `TopicPartition` of it read X). Faust adds its assignor
topic per app and a changelog per table.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from test_deploy import _build, _of

from services.common import topics
from services.common.topics import all_topic_specs, faust_internal_specs, service_kafka_access
from services.console.config import ConsoleSettings
from services.router.config import RouterSettings

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "deploy" / "k8s" / "generate.py"
# Modules of a service package that the service itself never runs: commands a person runs with their own
# credential (`triage feedback export`, `triage train`, `triage eval`).
TOOL_ONLY = "services/classify/training/"
TOPIC_CONSTANTS = {k: v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str)}
WRITE_CALLS = {"send", "send_and_wait", "publish", "_publish_or_503"}


def _modules(service: str) -> list[Path]:
    return [p for p in sorted((REPO / "services" / service).rglob("*.py"))
            if not str(p.relative_to(REPO)).startswith(TOOL_ONLY)]


def _topic_of(node: ast.AST) -> str | None:
    """The topic (or topic prefix) an expression names, when it names one by a topics.py constant."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "topics":
        return TOPIC_CONSTANTS.get(node.attr)
    if isinstance(node, ast.Name):
        return TOPIC_CONSTANTS.get(node.id)
    if isinstance(node, ast.Call):
        fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if fn == "queue_topic":
            return topics.QUEUE_PREFIX
        if fn == "state_topic":
            return topics.router_state_spec(RouterSettings().router_app_id).name
        if fn == "classify_deletions_spec":
            return topics.classify_deletions_spec().name
    return None


def _opened(service: str) -> dict[str, set[str]]:
    """named: every topic the service's code names; writes/reads: those it demonstrably produces/consumes."""
    named: set[str] = set()
    writes: set[str] = set()
    reads: set[str] = set()
    tables: set[str] = set()
    faust = False
    for path in _modules(service):
        tree = ast.parse(path.read_text())
        consts = {t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                  for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
        for node in ast.walk(tree):
            topic = _topic_of(node)
            if topic:
                named.add(topic)
            if isinstance(node, ast.Tuple) and len(node.elts) == 3 and _topic_of(node.elts[0]):
                writes.add(_topic_of(node.elts[0]) or "")  # a (topic, value, key) record to produce
            if not isinstance(node, ast.Call):
                continue
            fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            args = [_topic_of(a) for a in node.args]
            if fn in WRITE_CALLS:
                writes.update(a for a in args if a)
            elif fn in ("topic", "TopicPartition") and args and args[0]:
                reads.add(args[0])
            elif fn == "TopicFollower" and len(args) > 1 and args[1]:
                reads.add(args[1])
            elif fn == "_follow" and args and args[0]:  # the router's wrapper around a TopicFollower
                reads.add(args[0])
            elif fn == "faust_app":
                faust = True
            elif fn in ("Table", "GlobalTable") and node.args:
                name = node.args[0]
                tables.add(consts.get(name.id, "") if isinstance(name, ast.Name) else getattr(name, "value", ""))
    if service == "console":  # it subscribes by a pattern of every topic it names (queue topics included)
        reads |= named
    return {"named": named, "writes": writes, "reads": reads, "tables": tables - {""},
            "faust": {"yes"} if faust else set()}


def _app_id(service: str) -> str:
    return {"classify": "triage-classify", "router": RouterSettings().router_app_id}.get(service, "")


@pytest.mark.parametrize("service", ["ingest", "classify", "router", "console"])
def test_acls_cover_exactly_what_the_code_opens(service: str) -> None:
    access = service_kafka_access()[service]
    opened = _opened(service)
    granted = set(access.reads) | set(access.writes) | set(access.read_prefixes) | set(access.write_prefixes)
    internal = set()
    if opened["faust"]:
        internal.add(topics.faust_leader_topic(_app_id(service)))
        internal |= {topics.faust_changelog_topic(_app_id(service), t) for t in opened["tables"]}
    assert opened["named"] | internal <= granted, f"{service} opens topics its user may not: " \
        f"{sorted(opened['named'] | internal - granted)}"
    assert granted <= opened["named"] | internal, f"{service}'s user may use topics its code never names: " \
        f"{sorted(granted - opened['named'] - internal)}"
    assert opened["writes"] <= set(access.writes) | set(access.write_prefixes), \
        f"{service} produces to {sorted(opened['writes'] - set(access.writes))} without Write"
    assert opened["reads"] <= set(access.reads) | set(access.read_prefixes), \
        f"{service} consumes {sorted(opened['reads'] - set(access.reads))} without Read"
    assert internal <= set(access.reads), f"{service}: Faust's internal topics need Read"


def test_the_code_analysis_sees_a_service_write_and_read() -> None:
    # Guards the analysis itself: a check that found nothing would pass for any ACL.
    router = _opened("router")
    assert {topics.PAGES, topics.ROUTER_PAGE_REQUESTS, topics.MENTIONS_DLQ} <= router["writes"]
    assert {topics.MENTIONS_SCORED, topics.INCIDENTS, topics.SILENCES} <= router["reads"]
    assert _opened("classify")["tables"] == {"crisis-state"} and _opened("classify")["faust"]
    assert _opened("ingest")["writes"] >= {topics.MENTIONS_RAW}


def test_the_default_app_ids_and_groups_are_the_services() -> None:
    from services.classify.config import ClassifySettings

    classify = ClassifySettings()
    assert (classify.classify_app_id, RouterSettings().router_app_id) == ("triage-classify", "triage-router")
    access = service_kafka_access()
    assert classify.classify_app_id in access["classify"].groups
    assert RouterSettings().router_app_id in access["router"].groups
    assert ConsoleSettings().console_group_id.startswith(access["console"].group_prefixes[0])
    assert faust_internal_specs()[1].partitions == classify.crisis_state_partitions


def _users() -> dict[str, dict[str, Any]]:
    return {u["metadata"]["name"]: u for u in _of(_build("prod"), "KafkaUser")}


def test_prod_kafka_users_carry_the_generated_least_privilege_acls() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("k8s_generate", GENERATOR)
    gen = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(gen)  # type: ignore[union-attr]
    users = _users()
    assert set(users) == {a.user for a in service_kafka_access().values()}
    for access in service_kafka_access().values():
        auth = users[access.user]["spec"]["authorization"]
        assert auth == {"type": "simple", "acls": gen.kafka_acls(access)}
        for acl in auth["acls"]:
            assert acl["resource"]["type"] in ("topic", "group"), "no cluster-wide ACL"
            assert acl["resource"]["name"] not in ("*", ""), "no wildcard"
            assert not set(acl["operations"]) & {"All", "Create", "Delete", "Alter", "AlterConfigs"}


def _may(user: dict[str, Any], op: str, topic: str) -> bool:
    for acl in user["spec"]["authorization"]["acls"]:
        r = acl["resource"]
        if r["type"] == "topic" and op in acl["operations"] and (
                r["name"] == topic if r["patternType"] == "literal" else topic.startswith(r["name"])):
            return True
    return False


def test_the_internet_facing_ingest_credential_reaches_only_its_own_topics() -> None:
    ingest = _users()["triage-ingest"]
    for topic in (topics.INCIDENTS, topics.MENTIONS_SCORED, topics.RESPONSES, topics.SILENCES, "triage.queue.urgent"):
        assert not _may(ingest, "Read", topic) and not _may(ingest, "Write", topic), topic
    assert not _may(ingest, "Read", topics.MENTIONS_RAW)  # it writes mentions, never reads them back
    console = _users()["triage-console"]
    assert not _may(console, "Write", topics.INCIDENTS) and not _may(console, "Write", topics.PAGES)


def test_faust_internal_topics_are_laid_out_with_min_insync_replicas() -> None:
    manifests = {t["spec"]["topicName"]: t for t in _of(_build("prod"), "KafkaTopic")}
    names = {s.name for s in all_topic_specs()}
    for spec in faust_internal_specs():
        assert spec.name in names
        assert int(manifests[spec.name]["spec"]["config"]["min.insync.replicas"]) >= 2
