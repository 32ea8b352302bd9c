"""Shared fixtures: a real Apache Kafka broker (KRaft, one node) on free 127.0.0.1 ports.

One broker serves the whole session (``kafka_broker``/``kafka_bootstrap``); tests that stop, kill or
restart a broker take a private one from ``kafka_broker_factory`` so they cannot disturb the others.
Every test under tests/integration is marked ``integration``, under tests/e2e ``e2e``; unit tests
never request the broker, so `pytest tests/unit` starts no JVM.

`make test` runs the suite on several pytest-xdist workers (``--dist loadgroup``), each with a session
broker of its own. Each test module is one xdist group, so a module's fixtures (a loaded model, a
started service) are built once, on one worker. The pipelines that run several service processes at
once (``HEAVY``) share one group: they run one after another, never two side by side on a 2-core box,
where their timing-sensitive waits would compete for the same cores.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.devtools.kafka_broker import KafkaBroker, KafkaBrokerError, ensure_jars

# The suite runs as a developer's machine does under `make demo`/`make up`: /v1/mentions and the console
# are open without credentials. The services' secure default (401, read-only, refusal to start) is what
# tests/*/test_security_*.py check, passing insecure_dev=False (or TRIAGE_INSECURE_DEV=0) explicitly.
os.environ.setdefault("TRIAGE_INSECURE_DEV", "1")

_HERE = Path(__file__).resolve().parent
# Generous: a cold JVM on a busy 2-core CI box; it usually starts in ~2 s.
_START_TIMEOUT_S = 90.0


# Whole pipelines as separate processes (ingest, several classify and router replicas, a broker of their own).
HEAVY = frozenset({"test_chaos.py", "test_scale_out.py", "test_pipeline.py", "test_replay_event_time_pipeline.py",
                   "test_crisis_pipeline.py", "test_partition_growth_broker.py",
                   "test_classify_partition_growth_broker.py"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items, not just this directory's. tryfirst: pytest-xdist's worker reads
    # the xdist_group marks in the same hook.
    loadgroup = bool(getattr(config.option, "loadgroup", False))
    for item in items:
        parents = item.path.resolve().parents
        if _HERE / "integration" in parents:
            item.add_marker(pytest.mark.integration)
        elif _HERE / "e2e" in parents:
            item.add_marker(pytest.mark.e2e)
        if not item.get_closest_marker("xdist_group"):
            group = "heavy-pipelines" if item.path.name in HEAVY else item.path.name
            item.add_marker(pytest.mark.xdist_group(group))
        if loadgroup:
            _suffix_group(item)


def _suffix_group(item: pytest.Item) -> None:
    """Give the node id the "@<group>" suffix by which `--dist loadgroup` schedules a group on one worker.

    pytest-xdist 3.8 writes it to `item._nodeid`, which pytest 9.2 no longer reads (node ids are the structured
    `item._id`): every test silently became a group of its own, a module's fixtures were built on each worker
    (the Prometheus pipeline three times) and the heavy pipelines ran side by side. On a pytest whose nodes keep
    a structured id the suffix is set here, keeping the id's parts and changing only its string form (the one
    the workers send the scheduler); on an older pytest xdist's own write works and this does nothing."""
    ident = getattr(item, "_id", None)
    if ident is None or not dataclasses.is_dataclass(ident):
        return
    names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                    for m in item.iter_markers("xdist_group")})
    suffix = "@" + "_".join(names)
    nodeid = str(ident)
    if nodeid.endswith(suffix):
        return
    suffixed = dataclasses.replace(ident)
    object.__setattr__(suffixed, "_str_cache", nodeid + suffix)
    item._id = suffixed


def _start(broker: KafkaBroker) -> KafkaBroker:
    try:
        broker.start(timeout=_START_TIMEOUT_S)
    except KafkaBrokerError as err:
        # Fail loudly: an integration run without its broker must not look green.
        pytest.fail(f"Kafka broker did not start: {err}", pytrace=False)
    return broker


@pytest.fixture(scope="session")
def kafka_libs() -> Path:
    """The broker's jars (fetched by Maven into .cache/kafka/libs on first use)."""
    try:
        return ensure_jars()
    except KafkaBrokerError as err:
        pytest.fail(f"Kafka jars unavailable: {err}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_broker(kafka_libs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """The session's broker; do not stop or restart it (use ``kafka_broker_factory`` for that)."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), libs_dir=kafka_libs)
    _start(broker)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    """``127.0.0.1:PORT`` of the session's broker."""
    return kafka_broker.bootstrap_servers


@pytest.fixture
def kafka_broker_factory(kafka_libs: Path, tmp_path: Path) -> Iterator[Callable[..., KafkaBroker]]:
    """Start private, started brokers for fault tests (restart, kill); all are stopped after the test.

    Keyword arguments go to ``KafkaBroker`` (e.g. ``extra_config``).
    """
    brokers: list[KafkaBroker] = []

    def make(**kwargs: Any) -> KafkaBroker:
        broker = KafkaBroker(tmp_path / f"kafka-{len(brokers)}", libs_dir=kafka_libs, **kwargs)
        brokers.append(broker)
        return _start(broker)

    try:
        yield make
    finally:
        for broker in brokers:
            broker.stop()
