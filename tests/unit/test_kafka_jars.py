"""The Kafka broker's jars are checked against the committed sha256 list (tools/kafka/jars.sha256).

ensure_jars() uses a cached jar only if it matches the list, fetches again when one was altered, and refuses a
fetch whose jars differ from the list (a tampered mirror, a poisoned ~/.m2, an unreviewed pom change). Maven
itself runs with --strict-checksums. The fetches here run the real `mvn` (from ~/.m2 once it is warm).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.devtools.kafka_broker import (
    JAR_CHECKSUMS,
    KafkaBrokerError,
    ensure_jars,
    jar_checksum_problems,
    read_jar_checksums,
)

JAR = "kafka-clients-4.4.0.jar"


@pytest.fixture(scope="module")
def libs() -> Path:
    return ensure_jars()


def test_committed_list_names_the_broker_jars() -> None:
    expected = read_jar_checksums()
    assert {"kafka_2.13-4.4.0.jar", JAR, "log4j-slf4j-impl-2.25.5.jar"} <= set(expected)
    assert all(len(digest) == 64 for digest in expected.values())


def test_problems_name_missing_unexpected_and_altered_jars(tmp_path: Path, libs: Path) -> None:
    expected = read_jar_checksums()
    for name in (JAR, "jopt-simple-5.0.4.jar"):
        shutil.copy(libs / name, tmp_path / name)
    (tmp_path / "evil-1.0.jar").write_bytes(b"PK\x03\x04")
    with open(tmp_path / JAR, "ab") as f:
        f.write(b"\0")
    problems = jar_checksum_problems(tmp_path, expected)
    assert "evil-1.0.jar: not in the checksum list" in problems
    assert any(p.startswith(f"{JAR}: sha256 ") for p in problems)
    assert "kafka_2.13-4.4.0.jar: missing" in problems
    assert not any(p.startswith("jopt-simple") for p in problems)


def test_malformed_checksum_list_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "jars.sha256"
    bad.write_text("# comment\nabc  kafka.jar\n")
    with pytest.raises(KafkaBrokerError, match=":2: not"):
        read_jar_checksums(bad)


@pytest.mark.slow
def test_an_altered_cached_jar_is_fetched_again(tmp_path: Path, libs: Path) -> None:
    cache = tmp_path / "kafka"
    shutil.copytree(libs, cache / "libs")
    with open(cache / "libs" / JAR, "ab") as f:
        f.write(b"\0")
    assert ensure_jars(cache) == cache / "libs"
    assert jar_checksum_problems(cache / "libs", read_jar_checksums()) == []


@pytest.mark.slow
def test_a_fetch_that_differs_from_the_list_is_refused(tmp_path: Path, libs: Path) -> None:
    cache = tmp_path / "kafka"
    wrong = tmp_path / "jars.sha256"
    wrong.write_text(JAR_CHECKSUMS.read_text().replace(read_jar_checksums()[JAR], "0" * 64))
    with pytest.raises(KafkaBrokerError, match=f"{JAR}: sha256 [0-9a-f]{{64}}, expected 0{{64}}"):
        ensure_jars(cache, checksums=wrong)
    assert not (cache / "libs").exists() and not (cache / "libs.partial").exists()
