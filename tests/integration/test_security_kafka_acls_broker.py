"""The generated KafkaUser ACLs on a real broker with an authorizer: the ingest credential may write
mentions but not read `incidents` (or any other service's topic), the console's may read it but not write it.

The broker is the dev harness with a SCRAM listener and KRaft's StandardAuthorizer (what Strimzi's
`authorization: {type: simple}` runs); the ACLs are exactly those of deploy/k8s/overlays/prod/kafka-users.yaml.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics, make_producer
from services.common.settings import ServiceSettings
from services.common.topics import all_topic_specs

REPO = Path(__file__).resolve().parents[2]
USERS = {"triage-ingest": "ingest-password-0123456789", "triage-console": "console-password-0123456789"}
AUTHORIZER = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    # The harness's own PLAINTEXT and controller listeners (the test's admin) are the only super user.
    "super.users": "User:ANONYMOUS",
    "allow.everyone.if.no.acl.found": "false",
}


def _acl_lines(user: str) -> list[str]:
    docs = yaml.safe_load_all((REPO / "deploy/k8s/overlays/prod/kafka-users.yaml").read_text())
    spec = next(d for d in docs if d["metadata"]["name"] == user)["spec"]
    pattern = {"literal": "literal", "prefix": "prefixed"}  # Strimzi's words -> Kafka's PatternType
    return [f"User:{user} {acl['resource']['type']} {pattern[acl['resource']['patternType']]} "
            f"{acl['resource']['name']} {op}" for acl in spec["authorization"]["acls"] for op in acl["operations"]]


@pytest.fixture
def acl_broker(kafka_broker_factory: Any) -> Any:
    java = shutil.which("java")
    assert java, "the broker runs on Java"
    broker = kafka_broker_factory(sasl_users=USERS, extra_config=AUTHORIZER)
    lines = [line for user in USERS for line in _acl_lines(user)]
    out = subprocess.run([java, "-cp", str(broker.libs_dir / "*"), str(Path(__file__).parent / "tools/CreateAcls.java"),
                          broker.bootstrap_servers], input="\n".join(lines), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and f"created {len(lines)}" in out.stdout, out.stderr[-2000:]
    asyncio.run(ensure_topics(broker.bootstrap_servers, all_topic_specs()))
    return broker


def _options(broker: Any, user: str) -> dict[str, Any]:
    return ServiceSettings(kafka_bootstrap=broker.sasl_bootstrap_servers, kafka_security_protocol="SASL_PLAINTEXT",
                           kafka_sasl_username=user, kafka_sasl_password=USERS[user]).kafka_client_options()


async def _read(broker: Any, user: str, topic: str, group: str | None) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.sasl_bootstrap_servers, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False, **_options(broker, user))
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=8000)
        return [r.value for records in batch.values() for r in records]
    finally:
        await consumer.stop()


async def _write(broker: Any, user: str, topic: str, value: bytes) -> None:
    producer = make_producer(broker.sasl_bootstrap_servers, f"{user}-test", request_timeout_ms=10_000,
                             **_options(broker, user))
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, value, key=b"k"), 20)
    finally:
        await producer.stop()


async def test_the_ingest_credential_writes_mentions_and_cannot_read_or_write_incidents(acl_broker: Any) -> None:
    mention = codec.encode(pb.Mention(mention_id="forum:acl-1", text="hello"))
    await _write(acl_broker, "triage-ingest", topics.MENTIONS_RAW, mention)
    incident = codec.encode(pb.Incident(id="inc-acl", brand="acmebank"))
    await _write(acl_broker, "triage-console", topics.RESPONSES, b"allowed")  # the console's own topic
    # Seeded by the admin (the super user), so there is something to steal.
    producer = make_producer(acl_broker.bootstrap_servers, "admin")
    await producer.start()
    await producer.send_and_wait(topics.INCIDENTS, incident, key=b"inc-acl")
    await producer.stop()

    with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
        await _read(acl_broker, "triage-ingest", topics.INCIDENTS, None)
    with pytest.raises(TopicAuthorizationFailedError):
        await _write(acl_broker, "triage-ingest", topics.INCIDENTS, b"forged incident")
    with pytest.raises(TopicAuthorizationFailedError):
        await _write(acl_broker, "triage-ingest", topics.SILENCES, b"forged silence")
    # The console may read incidents in its own group, and may not write them.
    assert await _read(acl_broker, "triage-console", topics.INCIDENTS, "triage-console-pod-0") == [incident]
    with pytest.raises(TopicAuthorizationFailedError):
        await _write(acl_broker, "triage-console", topics.INCIDENTS, b"forged incident")
