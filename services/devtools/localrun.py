"""Running the whole pipeline on this machine: `make up` / `make down` and the demo.

Each service runs as a background process of `python -m services.cli <name>`,
with its pid and log under the run directory (git-ignored `run/`), so `down`
stops exactly the processes `up` started and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.devtools import kafka_broker

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RUN_DIR = REPO_ROOT / "run"
SERVICES = ("ingest", "classify", "router", "console")


@dataclass
class Ports:
    kafka: int = 9092
    ingest: int = 8080
    classify_metrics: int = 9101
    router_metrics: int = 9102
    console: int = 8090


def service_env(bootstrap: str, ports: Ports, run_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "TRIAGE_KAFKA_BOOTSTRAP": bootstrap,
        "TRIAGE_INGEST_PORT": str(ports.ingest),
        "TRIAGE_CLASSIFY_METRICS_PORT": str(ports.classify_metrics),
        "TRIAGE_ROUTER_METRICS_PORT": str(ports.router_metrics),
        "TRIAGE_CONSOLE_PORT": str(ports.console),
        "TRIAGE_CONSOLE_URL": f"http://127.0.0.1:{ports.console}",
        "TRIAGE_DATA_DIR": str(run_dir / "faust-data"),
        "PYTHONUNBUFFERED": "1",
        # A developer's machine (make up, make demo): ingest and the console open without credentials.
        "TRIAGE_INSECURE_DEV": "1",
    })
    env.update(extra or {})
    return env


def start_service(name: str, run_dir: Path, env: dict[str, str]) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_file = run_dir / f"{name}.pid"
    old = _read_pid(pid_file)
    if old and _alive(old):
        print(f"{name} already running (pid {old})", file=sys.stderr)
        return old
    proc = spawn_service(name, run_dir, env)
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def spawn_service(name: str, run_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`python -m services.cli NAME` in its own process group (so `os.killpg` stops all of it), appending
    to run_dir/NAME.log; the chaos suite (services/devtools/chaos.py) kills and restarts these."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / f"{name}.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "services.cli", name], cwd=REPO_ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_service(name: str, run_dir: Path, timeout: float = 20.0) -> bool:
    pid_file = run_dir / f"{name}.pid"
    pid = _read_pid(pid_file)
    pid_file.unlink(missing_ok=True)
    if not pid or not _alive(pid):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _alive(pid):
            break
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def wait_http_ok(url: str, timeout: float, what: str, pid: int | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if pid is not None and not _alive(pid):
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited during start-up; log tail:\n{tail}")
        time.sleep(0.3)
    raise TimeoutError(f"{what} not ready at {url} after {timeout:.0f}s")


def up(run_dir: Path = DEFAULT_RUN_DIR, ports: Ports | None = None) -> str:
    """Start broker + topics + services in the background; returns the ingest URL."""
    import asyncio

    from services.common.kafka import ensure_topics
    from services.common.settings import ServiceSettings
    from services.common.topics import all_topic_specs

    ports = ports or Ports()
    rc = kafka_broker.main(["up", "--port", str(ports.kafka), "--run-dir", str(run_dir)])
    if rc != 0:
        raise RuntimeError("could not start Kafka (see above)")
    bootstrap = f"127.0.0.1:{ports.kafka}"
    # The counts the services will read (TRIAGE_*_PARTITIONS, .env): they refuse topics laid out otherwise.
    asyncio.run(ensure_topics(bootstrap, all_topic_specs(layout=ServiceSettings().partition_layout())))
    env = service_env(bootstrap, ports, run_dir)
    pids = {name: start_service(name, run_dir, env) for name in SERVICES}
    url = f"http://127.0.0.1:{ports.ingest}"
    wait_http_ok(f"{url}/readyz", 60, "ingest", pids["ingest"], run_dir / "ingest.log")
    wait_http_ok(f"http://127.0.0.1:{ports.console}/healthz", 60, "console", pids["console"],
                 run_dir / "console.log")
    return url


def down(run_dir: Path = DEFAULT_RUN_DIR) -> None:
    for name in reversed(SERVICES):
        if stop_service(name, run_dir):
            print(f"{name} stopped", file=sys.stderr)
    kafka_broker.main(["down", "--run-dir", str(run_dir)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.devtools.localrun")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    args = parser.parse_args(argv)
    if args.action == "up":
        url = up(args.run_dir)
        print(f"pipeline up: ingest {url}/v1/mentions (metrics {url}/metrics), classify metrics "
              f"http://127.0.0.1:9101/metrics, router metrics http://127.0.0.1:9102/metrics; "
              f"console http://127.0.0.1:8090; logs in {args.run_dir}")
    else:
        down(args.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
