"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) run from Maven Central jars.

Used by the integration-test fixtures, by ``make kafka-up``/``make kafka-down`` and by the demo: no Docker,
no mocks, the same broker the services talk to in production, bound to 127.0.0.1.

Python API::

    libs = ensure_jars()                     # mvn fetches the jars once into .cache/kafka/libs
    with KafkaBroker(tmp_path / "kafka", libs_dir=libs) as broker:
        await create_topics(broker.bootstrap_servers, {"mentions.raw": 3})
        broker.restart()                     # same data dir and ports: data survives

Command line (detached broker for the Makefile and the demo)::

    python -m services.devtools.kafka_broker up [--port 9092] [--run-dir run]
    python -m services.devtools.kafka_broker status [--run-dir run]
    python -m services.devtools.kafka_broker down [--run-dir run]
    python -m services.devtools.kafka_broker checksums [--write]   # the sha256 list in tools/kafka/jars.sha256
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from services.common.errors import TriageError
from services.devtools.ports import free_port

__all__ = [
    "DEFAULT_CACHE_DIR",
    "DEFAULT_LIBS_DIR",
    "JAR_CHECKSUMS",
    "KAFKA_VERSION",
    "KafkaBroker",
    "KafkaBrokerError",
    "create_topics",
    "ensure_jars",
    "jar_checksum_problems",
    "main",
    "read_jar_checksums",
    "wait_until_ready",
]

log = logging.getLogger(__name__)

# Keep in step with <kafka.version> in tools/kafka/pom.xml (the jar cache is keyed on the pom's hash).
KAFKA_VERSION = "4.4.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
POM_PATH = REPO_ROOT / "tools" / "kafka" / "pom.xml"
# sha256 of every jar the pom resolves to, committed: `python -m services.devtools.kafka_broker checksums --write`.
JAR_CHECKSUMS = REPO_ROOT / "tools" / "kafka" / "jars.sha256"
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "kafka"
DEFAULT_LIBS_DIR = DEFAULT_CACHE_DIR / "libs"

STARTED_LINE = "Kafka Server started"
_MARKER = ".complete"
_NODE_ID = 1
# Small heap and a single-threaded GC: the broker shares 2 cores with the services and the tests.
DEFAULT_JVM_OPTS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)

# Console output goes to the log file (stdout/stderr of the JVM are redirected there). The root level
# comes from a system property so `StorageTool format` can run quietly with the same file.
_LOG4J2_PROPERTIES = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${sys:triage.kafka.log.level:-INFO}
rootLogger.appenderRef.out.ref = STDOUT
# Every component dumps its whole config at INFO: thousands of lines nobody reads.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
"""


class KafkaBrokerError(TriageError, RuntimeError):
    """The broker (or its jars) could not be fetched, started or stopped; the message says why."""


# --------------------------------------------------------------------------------------------- jars


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def read_jar_checksums(path: Path = JAR_CHECKSUMS) -> dict[str, str]:
    """The committed ``jar name -> sha256`` list (``sha256sum`` format: ``<hex>  <name>``, ``#`` comments)."""
    expected: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name.endswith(".jar") or "/" in name:
            raise KafkaBrokerError(f"{path}:{number}: not '<sha256>  <name>.jar': {line!r}")
        expected[name] = digest.lower()
    return expected


def jar_checksum_problems(libs: Path, expected: Mapping[str, str]) -> list[str]:
    """What differs between the jars in ``libs`` and ``expected``: missing, unexpected or altered jars."""
    actual = {}
    for jar in libs.glob("*.jar"):
        with open(jar, "rb") as f:
            actual[jar.name] = hashlib.file_digest(f, "sha256").hexdigest()
    problems = [f"{name}: missing" for name in sorted(expected.keys() - actual.keys())]
    problems += [f"{name}: not in the checksum list" for name in sorted(actual.keys() - expected.keys())]
    problems += [f"{name}: sha256 {actual[name]}, expected {expected[name]}"
                 for name in sorted(actual.keys() & expected.keys()) if actual[name] != expected[name]]
    return problems


def _jars_complete(libs: Path, digest: str, expected: Mapping[str, str]) -> bool:
    marker = libs / _MARKER
    try:
        if marker.read_text().strip() != digest or not any(libs.glob("kafka_2.13-*.jar")):
            return False
    except OSError:
        return False
    problems = jar_checksum_problems(libs, expected)
    if problems:
        log.warning("cached kafka jars in %s fail their checksums, fetching again: %s", libs, "; ".join(problems))
    return not problems


def _fetch_jars(pom: Path, dest: Path) -> None:
    """Maven copies the broker's runtime jars into ``dest``; ``--strict-checksums`` makes it refuse any file
    (artifact, pom or plugin) whose checksum does not match the one the repository publishes beside it."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaBrokerError(
            "Maven (`mvn`) is not on PATH; it fetches the Kafka broker jars from Maven Central "
            "(Debian/Ubuntu: apt-get install maven; needs Java 17+ too)"
        )
    shutil.rmtree(dest, ignore_errors=True)
    cmd = [
        mvn, "-q", "-B", "--strict-checksums", "-f", str(pom), "dependency:copy-dependencies",
        f"-DoutputDirectory={dest}", "-DincludeScope=runtime",
    ]  # fmt: skip
    log.info("fetching kafka jars: %s", " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(dest.glob("kafka_2.13-*.jar")):
        output = (result.stdout + result.stderr).strip().splitlines()
        raise KafkaBrokerError(
            f"`{' '.join(cmd)}` failed (exit {result.returncode}); last output:\n" + "\n".join(output[-30:])
        )


def ensure_jars(cache_dir: Path = DEFAULT_CACHE_DIR, *, pom: Path = POM_PATH, checksums: Path = JAR_CHECKSUMS) -> Path:
    """Return ``cache_dir/libs`` holding the broker's jars, running Maven only when they are missing.

    The libs dir is complete when its marker file holds the hash of ``pom`` and every jar matches the
    committed sha256 list ``checksums`` (no jar missing, none extra); a changed pom (a Kafka upgrade) or an
    altered cached jar fetches again, and a fetch whose jars do not match the list fails. Maven itself runs
    with ``--strict-checksums`` (every download checked against the repository's checksum). Maven writes into
    a scratch dir that replaces ``libs`` only on success, and a file lock serialises concurrent callers
    (parallel test workers), so a half-fetched or unverified dir is never used.
    """
    cache_dir = Path(cache_dir)
    libs = cache_dir / "libs"
    digest = _pom_digest(pom)
    expected = read_jar_checksums(checksums)
    if _jars_complete(libs, digest, expected):
        return libs
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _jars_complete(libs, digest, expected):  # another process fetched them while we waited
            return libs
        partial = cache_dir / "libs.partial"
        _fetch_jars(pom, partial)
        problems = jar_checksum_problems(partial, expected)
        if problems:
            shutil.rmtree(partial, ignore_errors=True)
            raise KafkaBrokerError(
                f"the Kafka jars Maven fetched do not match {checksums}:\n  " + "\n  ".join(problems)
                + "\nafter a deliberate change of tools/kafka/pom.xml, regenerate the list with "
                "`python -m services.devtools.kafka_broker checksums --write` and review its diff"
            )
        (partial / _MARKER).write_text(digest + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
    return libs


# ------------------------------------------------------------------------------------------- broker


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the JVM sets, so a previous broker's TIME_WAIT sockets do not count as "taken".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _accepts_connections(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _random_cluster_id() -> str:
    """A cluster id as Kafka's ``Uuid.randomUuid()`` makes it: 16 random bytes, URL-safe base64."""
    while True:
        raw = uuid.uuid4().bytes
        text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        # Kafka reserves the all-zero and 0/1 ids and rejects ids a CLI would read as an option.
        if not text.startswith("-") and int.from_bytes(raw, "big") > 1:
            return text


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGTERM the child when this process dies (even by SIGKILL).

    Linux only. The kernel ties it to the *thread* that forks, so it is only used from the main thread
    (a broker started from a worker thread would die with that thread). The libc lookup happens here,
    before the fork: the child must not import or allocate.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    return functools.partial(prctl, pr_set_pdeathsig, int(signal.SIGTERM))


def _tail(path: Path, lines: int = 40, start: int = 0) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


class _LogFollower:
    """Reads a growing log from an offset and remembers whether a line has appeared yet."""

    def __init__(self, path: Path, offset: int) -> None:
        self._path = path
        self._offset = offset
        self._carry = b""

    def seen(self, needle: str) -> bool:
        with open(self._path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        self._offset += len(chunk)
        data = self._carry + chunk
        wanted = needle.encode()
        self._carry = data[-len(wanted) :]  # a line split across two reads is still found
        return wanted in data


class KafkaBroker:
    """One Apache Kafka 4 node in KRaft mode (broker+controller in one JVM) listening on 127.0.0.1.

    ``data_dir`` holds the generated ``server.properties``/``log4j2.properties`` and the log dirs
    (``data_dir/kafka-logs``); it is formatted on the first ``start()`` only, so a broker started again on
    the same dir (``restart()``, or a new object) keeps its topics, messages and committed offsets. Ports
    not given are picked free once, in ``__init__``, and kept across restarts.

    The JVM runs in its own process group with stdout/stderr appended to ``log_file`` (default
    ``data_dir/kafka.log``). With ``die_with_parent`` (the default; Linux, main thread) the kernel stops the
    broker if the Python process that started it dies, so a killed test run leaves no JVM behind; the
    detached CLI turns it off. ``extra_config`` overrides/extends the broker properties.

    ``sasl_users`` (name -> password) adds a second listener, ``SASL_PLAINTEXT`` on ``sasl_port``, that
    accepts those SCRAM-SHA-512 users only (created when the storage is formatted, as KRaft does), for
    tests of the clients' SASL settings; the ``PLAINTEXT`` listener stays for the broker itself. With
    ``sasl_tls_keystore`` (a PKCS12 file with the broker's certificate and key, and its password) that
    listener is ``SASL_SSL`` instead, as Strimzi's TLS listener with SCRAM users is.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        controller_port: int | None = None,
        libs_dir: Path = DEFAULT_LIBS_DIR,
        log_file: Path | None = None,
        *,
        jvm_opts: Sequence[str] = DEFAULT_JVM_OPTS,
        extra_config: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
        java: str | None = None,
        sasl_users: Mapping[str, str] | None = None,
        sasl_port: int | None = None,
        sasl_tls_keystore: tuple[Path, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port if port is not None else free_port()
        self.controller_port = controller_port if controller_port is not None else free_port()
        if self.controller_port == self.port:
            raise ValueError(f"broker and controller need different ports, both are {self.port}")
        self.libs_dir = Path(libs_dir).resolve()
        self.log_file = Path(log_file).resolve() if log_file is not None else self.data_dir / "kafka.log"
        self.jvm_opts = tuple(jvm_opts)
        self.extra_config = dict(extra_config or {})
        self.sasl_users = dict(sasl_users or {})
        self.sasl_port = (sasl_port if sasl_port is not None else free_port()) if self.sasl_users else None
        self.sasl_tls_keystore = sasl_tls_keystore
        self.die_with_parent = die_with_parent
        self._java = java
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None
        self.startup_seconds: float | None = None
        """Wall time of the last successful ``start()`` (format included)."""

    # -- paths and config ---------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT``, for aiokafka's and Faust's ``bootstrap_servers``."""
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        """``127.0.0.1:SASL_PORT`` of the SCRAM-SHA-512 listener (only with ``sasl_users``; TLS with
        ``sasl_tls_keystore``)."""
        if self.sasl_port is None:
            raise KafkaBrokerError("this broker has no SASL listener (give it sasl_users)")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def log_dir(self) -> Path:
        """Where the partitions (and the KRaft metadata log) live."""
        return self.data_dir / "kafka-logs"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def pid(self) -> int | None:
        """The JVM's pid (also its process-group id) while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def is_running(self) -> bool:
        return self.pid is not None

    def server_properties(self) -> dict[str, str]:
        """The broker configuration written to ``server.properties`` (one node, replication factor 1)."""
        props = {
            "process.roles": "broker,controller",
            "node.id": str(_NODE_ID),
            # Static quorum: the single voter comes from config, so a new controller port on an already
            # formatted data dir is fine (a dynamic `--standalone` quorum pins it in the metadata log).
            "controller.quorum.voters": f"{_NODE_ID}@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            # 50 partitions by default: the first consumer group would wait for all of them to load.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a crash (SIGKILL) the node cannot re-register until its old broker session expires:
            # 9 s by default. 5 s keeps fault tests quick while a busy 2-core box still heartbeats in time.
            "broker.session.timeout.ms": "5000",
            "broker.heartbeat.interval.ms": "1000",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            # Compacted topics (incidents, Faust changelogs) need the cleaner, not its 128 MiB buffer.
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "log.cleaner.threads": "1",
        }
        if self.sasl_port is not None:
            sasl = "SASL_SSL" if self.sasl_tls_keystore else "SASL_PLAINTEXT"
            props["listeners"] += f",{sasl}://127.0.0.1:{self.sasl_port}"
            props["advertised.listeners"] += f",{sasl}://127.0.0.1:{self.sasl_port}"
            props["listener.security.protocol.map"] += f",{sasl}:{sasl}"
            props["sasl.enabled.mechanisms"] = "SCRAM-SHA-512"
            props[f"listener.name.{sasl.lower()}.scram-sha-512.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
            if self.sasl_tls_keystore:
                keystore, password = self.sasl_tls_keystore
                props[f"listener.name.{sasl.lower()}.ssl.keystore.type"] = "PKCS12"
                props[f"listener.name.{sasl.lower()}.ssl.keystore.location"] = str(keystore)
                props[f"listener.name.{sasl.lower()}.ssl.keystore.password"] = password
        props.update(self.extra_config)
        return props

    def _write_configs(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        self.config_file.write_text("# generated by services.devtools.kafka_broker\n" + "\n".join(lines) + "\n")
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2_PROPERTIES)
        return log4j

    def _java_cmd(self, log4j: Path, main_class: str, *args: str, log_level: str = "INFO") -> list[str]:
        java = self._java or shutil.which("java")
        if java is None:
            raise KafkaBrokerError("`java` is not on PATH; the Kafka broker needs Java 17+")
        return [
            java,
            *self.jvm_opts,
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dtriage.kafka.log.level={log_level}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            str(self.libs_dir / "*"),
            main_class,
            *args,
        ]

    def _format_storage(self, log4j: Path) -> None:
        if (self.log_dir / "meta.properties").exists():
            return  # formatted by an earlier start: keep the data
        cmd = self._java_cmd(
            log4j, "kafka.tools.StorageTool", "format",
            "--cluster-id", _random_cluster_id(), "--config", str(self.config_file),
            *(arg for name, password in self.sasl_users.items()
              for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")),
            log_level="WARN",
        )  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=self.data_dir)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            raise KafkaBrokerError(
                f"formatting {self.log_dir} failed (exit {result.returncode}):\n" + "\n".join(output[-30:])
            )

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Format the storage if new, launch the JVM and return once it serves on ``port``.

        Raises ``KafkaBrokerError`` with the tail of the log if the JVM exits, or has not logged
        ``Kafka Server started`` and accepted a connection within ``timeout`` seconds (it is then killed).
        """
        if self.is_running():
            return
        if not any(self.libs_dir.glob("kafka_2.13-*.jar")):
            raise KafkaBrokerError(f"no Kafka jars in {self.libs_dir}; call ensure_jars() first")
        for port in (self.port, self.controller_port, *([self.sasl_port] if self.sasl_port else [])):
            if not _port_is_free(port):
                raise KafkaBrokerError(f"port 127.0.0.1:{port} is already in use by another process")
        began = time.monotonic()
        log4j = self._write_configs()
        self._format_storage(log4j)

        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = open(self.log_file, "ab")  # owned by the broker until stop()
        log_start = self._log_fh.tell()
        cmd = self._java_cmd(log4j, "kafka.Kafka", str(self.config_file))
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,  # own process group: stop() signals the JVM and anything it forks
            preexec_fn=_parent_death_signal() if self.die_with_parent else None,
        )
        log.info("kafka starting pid=%s bootstrap=%s log=%s", self._proc.pid, self.bootstrap_servers,
                 self.log_file)  # fmt: skip
        deadline = began + timeout
        log_reader = _LogFollower(self.log_file, log_start)
        started = False
        while True:
            code = self._proc.poll()
            if code is not None:
                self._close_log()
                self._proc = None
                raise KafkaBrokerError(
                    f"kafka exited with code {code} while starting; log {self.log_file}:\n"
                    + _tail(self.log_file, start=log_start)
                )
            if not started:
                started = log_reader.seen(STARTED_LINE)
            if started and _accepts_connections(self.port):
                break
            if time.monotonic() > deadline:
                self._kill(signal.SIGKILL, wait=10.0)
                raise KafkaBrokerError(
                    f"kafka did not start within {timeout:.0f}s; log {self.log_file}:\n"
                    + _tail(self.log_file, start=log_start)
                )
            time.sleep(0.1)
        self.startup_seconds = time.monotonic() - began
        log.info("kafka started pid=%s bootstrap=%s seconds=%.1f", self._proc.pid, self.bootstrap_servers,
                 self.startup_seconds)  # fmt: skip

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the broker's process group (a clean shutdown), SIGKILL it after ``timeout`` s; wait."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._kill(signal.SIGTERM, wait=timeout)
            if self._proc.poll() is None:
                log.warning("kafka pid=%s ignored SIGTERM for %.0fs, killing it", self._proc.pid, timeout)
                self._kill(signal.SIGKILL, wait=10.0)
        self._proc = None
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the broker (a crash, for fault tests); ``start()`` recovers the same data dir."""
        if self._proc is not None:
            self._kill(signal.SIGKILL, wait=10.0)
            self._proc = None
        self._close_log()

    def restart(self, timeout: float = 60.0) -> None:
        """Stop cleanly and start again on the same data dir and ports (committed data survives)."""
        self.stop()
        self.start(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_file, lines=lines)

    def _kill(self, sig: signal.Signals, wait: float) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=wait)

    def _close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"KafkaBroker(bootstrap={self.bootstrap_servers!r}, data_dir='{self.data_dir}', pid={self.pid})"


# ------------------------------------------------------------------------------------- async helpers


# A retry deadline, not a cancellation scope: each attempt has its own client, so asyncio.timeout() would
# not say why the broker never answered.
async def wait_until_ready(bootstrap: str, timeout: float = 30.0) -> None:
    """Return once a metadata request to ``bootstrap`` lists at least one broker; ``TimeoutError`` if not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: BaseException | None = None
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            if cluster.get("brokers"):
                return
        except (KafkaError, OSError) as err:
            last_error = err
        finally:
            await admin.close()
        if loop.time() >= deadline:
            raise TimeoutError(f"kafka at {bootstrap} not ready after {timeout:.0f}s: {last_error!r}")
        await asyncio.sleep(0.2)


async def create_topics(
    bootstrap: str,
    topics: Mapping[str, int] | Sequence[str],
    configs: Mapping[str, Mapping[str, str]] | None = None,
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> list[str]:
    """Create ``topics`` (name -> partitions, or names with 1 partition) unless they exist already.

    ``configs`` maps a topic name to its topic configs (e.g. ``{"incidents": {"cleanup.policy":
    "compact"}}``); they apply only when the topic is created here. Returns the names this call created.
    Waits until every partition of every listed topic has a leader, so producing right after works.
    """
    partitions = dict(topics) if isinstance(topics, Mapping) else dict.fromkeys(topics, 1)
    configs = configs or {}
    unknown = set(configs) - set(partitions)
    if unknown:
        raise ValueError(f"configs for topics not being created: {sorted(unknown)}")
    if not partitions:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    created: list[str] = []
    try:
        await admin.start()
        new_topics = [
            NewTopic(name, count, replication_factor, topic_configs=dict(configs.get(name, {})))
            for name, count in partitions.items()
        ]
        response = await admin.create_topics(new_topics, timeout_ms=int(timeout * 1000))
        errors = []
        for topic, error_code, *rest in response.topic_errors:
            if error_code == 0:
                created.append(topic)
                continue
            error = for_code(error_code)
            if error is TopicAlreadyExistsError:
                continue
            message = rest[0] if rest and rest[0] else error.__name__
            errors.append(f"{topic}: {message}")
        if errors:
            raise KafkaBrokerError("could not create topics: " + "; ".join(errors))
        await _wait_for_leaders(admin, list(partitions), timeout)
    finally:
        await admin.close()
    return created


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        described = await admin.describe_topics(names)
        pending = [
            t["topic"]
            for t in described
            if t["error_code"] != 0 or not t["partitions"] or any(p["leader"] < 0 for p in t["partitions"])
        ]
        if not pending:
            return
        if loop.time() >= deadline:
            raise TimeoutError(f"topics without a leader after {within:.0f}s: {sorted(pending)}")
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------- CLI


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_broker(pid: int, config_file: Path) -> bool:
    """True if ``pid`` is alive and is the kafka.Kafka JVM of ``config_file`` (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and b"kafka.Kafka" in cmdline and str(config_file).encode() in cmdline


def _configured_bootstrap(config_file: Path) -> str:
    for line in config_file.read_text().splitlines():
        if line.startswith("advertised.listeners="):
            return line.split("://", 1)[1].split(",", 1)[0]
    return "?"


def _stop_pid(pid: int, timeout: float) -> None:
    def alive() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)  # the JVM leads its own process group (start_new_session)
        deadline = time.monotonic() + wait
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive():
            return
    raise KafkaBrokerError(f"kafka pid {pid} survived SIGKILL")


def _cli_paths(run_dir: Path) -> tuple[Path, Path, Path]:
    return run_dir / "kafka.pid", run_dir / "kafka.log", run_dir / "kafka-data"


def _cmd_up(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir).resolve()
    pid_file, log_file, data_dir = _cli_paths(run_dir)
    config_file = data_dir / "server.properties"
    pid = _read_pid(pid_file)
    if pid is not None and _is_our_broker(pid, config_file):
        print(f"kafka already running (pid {pid})", file=sys.stderr)
        print(_configured_bootstrap(config_file))
        return 0
    pid_file.unlink(missing_ok=True)  # stale
    if not _port_is_free(args.port):
        print(f"error: port 127.0.0.1:{args.port} is already in use by another process", file=sys.stderr)
        return 1
    try:
        libs = ensure_jars(Path(args.cache_dir))
        broker = KafkaBroker(data_dir, args.port, args.controller_port, libs, log_file, die_with_parent=False)
        broker.start(timeout=args.timeout)
    except KafkaBrokerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    assert broker.pid is not None
    pid_file.write_text(f"{broker.pid}\n")
    print(f"kafka {KAFKA_VERSION} started (pid {broker.pid}, {broker.startup_seconds:.1f}s, log {log_file})",
          file=sys.stderr)  # fmt: skip
    print(broker.bootstrap_servers)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    pid_file, _, data_dir = _cli_paths(Path(args.run_dir).resolve())
    pid = _read_pid(pid_file)
    if pid is None:
        print("kafka not running (no pid file)", file=sys.stderr)
        return 0
    if not _is_our_broker(pid, data_dir / "server.properties"):
        print(f"kafka not running (stale pid file, pid {pid})", file=sys.stderr)
        pid_file.unlink(missing_ok=True)
        return 0
    try:
        _stop_pid(pid, args.timeout)
    except KafkaBrokerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    pid_file.unlink(missing_ok=True)
    print(f"kafka stopped (pid {pid})", file=sys.stderr)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    pid_file, log_file, data_dir = _cli_paths(Path(args.run_dir).resolve())
    config_file = data_dir / "server.properties"
    pid = _read_pid(pid_file)
    if pid is not None and _is_our_broker(pid, config_file):
        bootstrap = _configured_bootstrap(config_file)
        port = int(bootstrap.rsplit(":", 1)[1])
        state = "serving" if _accepts_connections(port) else "not accepting connections"
        print(f"kafka running pid={pid} bootstrap={bootstrap} {state} log={log_file}")
        return 0
    print("kafka not running")
    return 3  # LSB "program is not running"


def _cmd_checksums(args: argparse.Namespace) -> int:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kafka-jars-") as tmp:
        try:
            _fetch_jars(POM_PATH, Path(tmp) / "libs")
        except KafkaBrokerError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        lines = []
        for jar in sorted((Path(tmp) / "libs").glob("*.jar")):
            with open(jar, "rb") as f:
                lines.append(f"{hashlib.file_digest(f, 'sha256').hexdigest()}  {jar.name}")
    text = (f"# sha256 of the Kafka {KAFKA_VERSION} broker jars tools/kafka/pom.xml resolves to (Maven Central,\n"
            "# fetched with --strict-checksums); ensure_jars() refuses any other set. Regenerate after a pom change:\n"
            "#   python -m services.devtools.kafka_broker checksums --write\n" + "\n".join(lines) + "\n")
    if args.write:
        JAR_CHECKSUMS.write_text(text)
        print(f"wrote {len(lines)} checksums to {JAR_CHECKSUMS}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.devtools.kafka_broker",
        description=f"Run a detached single-node Apache Kafka {KAFKA_VERSION} broker (KRaft) on 127.0.0.1.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the broker in the background (no-op if it runs already)")
    up.add_argument("--port", type=int, default=9092, help="client port (default 9092)")
    up.add_argument("--controller-port", type=int, default=None, help="KRaft controller port (default: free)")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for start-up")
    up.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), help="where the jars are cached")
    down = sub.add_parser("down", help="stop the broker started by `up`")
    down.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGTERM becomes SIGKILL")
    status = sub.add_parser("status", help="exit 0 if the broker runs, 3 if not")
    for command in (up, down, status):
        command.add_argument("--run-dir", default="run", help="pid file, log and data dir (default ./run)")
    checksums = sub.add_parser("checksums", help="fetch the jars the pom resolves to and print their sha256 list")
    checksums.add_argument("--write", action="store_true", help=f"write it to {JAR_CHECKSUMS.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)
    handlers = {"up": _cmd_up, "down": _cmd_down, "status": _cmd_status, "checksums": _cmd_checksums}
    return handlers[args.command](args)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    sys.exit(main())
