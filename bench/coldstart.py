"""Cold start: process start -> first scored mention, per runtime, in a fresh process (issue 27).

The lag-based autoscaler adds classify pods exactly when a crisis starts, so how long a new process takes to
score its first mention is part of the capacity plan (target: under 10 s). Measured here in child processes,
never in a process that already imported torch or loaded the model, two ways per runtime/precision:

- **phases** (`python -m bench.coldstart --child`): the child stamps the system-wide monotonic clock at
  each phase: interpreter up (the parent stamps the spawn), imports (torch, transformers, the classify
  package), scorer built (`factory.build_scorer`: tokenizer and weights loaded, adapter merged, weights hashed,
  precision/runtime chosen, ONNX Runtime session created), first mention scored (first forward pass: oneDNN
  or ONNX Runtime first-call work). It then scores a warm batch of real tweets and reports its resident memory
  (VmRSS after the first mention, after the batch, and the peak VmHWM): the RSS of one worker's scoring path.
- **`triage score`** (`python -m services.cli score -`): the user-facing command on one mention on stdin, timed
  from spawn to its first output line, and its peak RSS (wait4's ru_maxrss).

What it does not include: Kafka (joining the consumer group and the first fetch, which a worker pod adds;
`make bench-e2e` prints "pipeline warm after" for the whole pipeline) and container start. The
`auto` choices (precision, runtime) are measured once per machine and cached beside the model; a run on a
machine where they are not cached yet includes that measurement (the last column says which). The
first run after a reboot also reads the weights from disk rather than the page cache: `--repeats 2` shows both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 10.0
DEFAULT_CONFIGS = "torch:auto,torch:fp32,onnx:fp32,onnx:int8,openvino:bf16,auto:auto"
PHASES = ("interpreter", "imports", "scorer_built", "first_scored")


def _status_kib(field_name: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def child(texts_file: Path) -> int:
    """The measured process: stamps each phase, prints one JSON object on stdout."""
    marks = {"interpreter": time.monotonic()}
    import torch  # the import itself is part of the phase measured
    import transformers  # noqa: F401

    from services.classify.config import ClassifySettings
    from services.classify.factory import build_scorer

    marks["imports"] = time.monotonic()
    texts = [t for t in texts_file.read_text(encoding="utf-8").splitlines() if t.strip()]
    settings = ClassifySettings()
    scorer = build_scorer(settings)
    marks["scorer_built"] = time.monotonic()
    scorer.score_texts(texts[:1])
    marks["first_scored"] = time.monotonic()
    rss_first = _status_kib("VmRSS")
    started = time.monotonic()
    scorer.score_texts(texts)
    warm = len(texts) / max(1e-9, time.monotonic() - started)
    print(json.dumps({"marks": marks, "runtime": scorer.encoder.runtime, "reason": scorer.encoder.runtime_reason,
                      "threads": torch.get_num_threads(),
                      "rss_first_mib": rss_first / 1024, "rss_warm_mib": _status_kib("VmRSS") / 1024,
                      "rss_peak_mib": _status_kib("VmHWM") / 1024, "warm_batch": len(texts),
                      "warm_mentions_per_s": warm}))
    return 0


@dataclass
class ColdStart:
    """One cold start of one runtime/precision configuration, seconds from spawn."""
    config: str                       # "<TRIAGE_RUNTIME>:<TRIAGE_PRECISION>" as asked
    runtime: str = ""                 # what it resolved to (torch-bf16, onnx-int8, ...)
    reason: str = ""
    phases: dict[str, float] = field(default_factory=dict)   # phase -> seconds since spawn (cumulative)
    total_s: float = float("nan")     # spawn -> first mention scored (phased child)
    cli_first_output_s: float = float("nan")   # spawn -> first line of `triage score -`
    rss_first_mib: float = 0.0
    rss_warm_mib: float = 0.0
    rss_peak_mib: float = 0.0
    cli_peak_rss_mib: float = 0.0
    threads: int = 0
    error: str = ""

    @property
    def measured_now(self) -> bool:
        """Whether an `auto` choice was measured during this start (not read from the per-machine cache)."""
        return (" ms" in self.reason or "measured" in self.reason) and "cached" not in self.reason


def _env(config: str, extra: dict[str, str] | None) -> dict[str, str]:
    runtime, _, precision = config.partition(":")
    env = {**os.environ, "TRIAGE_RUNTIME": runtime, "TRIAGE_PRECISION": precision or "auto",
           "PYTHONUNBUFFERED": "1"}
    env.update(extra or {})
    return env


def measure_phases(config: str, texts_file: Path, extra_env: dict[str, str] | None = None,
                   timeout: float = 300.0) -> ColdStart:
    result = ColdStart(config)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bench.coldstart", "--child", "--texts", str(texts_file)],
                          env=_env(config, extra_env), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        result.error = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return result
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    result.phases = {p: out["marks"][p] - t0 for p in PHASES}
    result.total_s = result.phases["first_scored"]
    for k in ("runtime", "reason", "rss_first_mib", "rss_warm_mib", "rss_peak_mib", "threads"):
        setattr(result, k, out[k])
    return result


def measure_cli(result: ColdStart, text: str, extra_env: dict[str, str] | None = None,
                timeout: float = 300.0) -> None:
    """`triage score -` on one mention: spawn -> first output line, and the child's peak RSS."""
    import threading

    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "score", "-"], env=_env(result.config, extra_env),
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdin is not None and proc.stdout is not None
    killer = threading.Timer(timeout, proc.kill)   # a hung child must not hang the benchmark
    killer.start()
    proc.stdin.write(text.replace("\n", " ") + "\n")
    proc.stdin.close()
    first = proc.stdout.readline()
    t_first = time.monotonic()
    proc.stdout.read()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        status, usage = 0, None
    killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if not first or proc.returncode != 0:
        result.error = (result.error + "; " if result.error else "") + f"triage score exit {proc.returncode}"
        return
    result.cli_first_output_s = t_first - t0
    if usage is not None:
        result.cli_peak_rss_mib = usage.ru_maxrss / 1024   # KiB on Linux


def run_all(configs: list[str], texts: list[str], repeats: int = 1, extra_env: dict[str, str] | None = None,
            cli: bool = True) -> list[ColdStart]:
    """Every configuration ``repeats`` times, one after the other (never two children at once)."""
    import tempfile

    results: list[ColdStart] = []
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        texts_file = Path(tmp) / "texts.txt"
        texts_file.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
        for config in configs:
            for _ in range(repeats):
                r = measure_phases(config, texts_file, extra_env)
                if cli and not r.error:
                    measure_cli(r, texts[0], extra_env)
                results.append(r)
                print(f"cold start {config}: {r.total_s:.1f} s{' (' + r.error + ')' if r.error else ''}", flush=True)
    return results


def table(results: list[ColdStart]) -> str:
    rows = ["| TRIAGE_RUNTIME:PRECISION | runtime | threads | interpreter s | + imports s | + scorer built s "
            "| + first mention s | **cold start s** | `triage score` first line s | < 10 s "
            "| RSS first / warm / peak MiB | `triage score` peak RSS MiB | auto choice measured during the start |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|"]
    for r in results:
        if r.error and not r.phases:
            rows.append(f"| {r.config} | failed: {r.error} |" + " |" * 11)
            continue
        p = r.phases
        worst = max(r.total_s, r.cli_first_output_s if r.cli_first_output_s == r.cli_first_output_s else 0)
        rows.append(
            f"| {r.config} | {r.runtime} | {r.threads} | {p['interpreter']:.2f} | "
            f"{p['imports'] - p['interpreter']:.2f} | {p['scorer_built'] - p['imports']:.2f} | "
            f"{p['first_scored'] - p['scorer_built']:.2f} | **{r.total_s:.1f}** | {r.cli_first_output_s:.1f} | "
            f"{'yes' if worst < TARGET_SECONDS else 'NO'} | {r.rss_first_mib:.0f} / {r.rss_warm_mib:.0f} / "
            f"{r.rss_peak_mib:.0f} | {r.cli_peak_rss_mib:.0f} | {'yes' if r.measured_now else 'no'} |")
    return "\n".join(rows)


def summary(results: list[ColdStart]) -> list[dict[str, Any]]:
    """JSON-ready rows; with repeats, one row per configuration: the median, plus every run."""
    by_config: dict[str, list[ColdStart]] = {}
    for r in results:
        by_config.setdefault(r.config, []).append(r)
    out = []
    for config, runs in by_config.items():
        ok = [r for r in runs if not r.error]
        row: dict[str, Any] = {"config": config, "runs": [asdict(r) | {"measured_now": r.measured_now} for r in runs]}
        if ok:
            row.update({"runtime": ok[0].runtime, "cold_start_s": statistics.median(r.total_s for r in ok),
                        "cli_first_output_s": statistics.median(r.cli_first_output_s for r in ok),
                        "rss_peak_mib": max(r.rss_peak_mib for r in ok),
                        "rss_warm_mib": statistics.median(r.rss_warm_mib for r in ok)})
        out.append(row)
    return out


def load_texts(n: int) -> list[str]:
    import random

    from services.classify.training.datasets import load_umsab

    texts = load_umsab("val").texts
    random.Random(0).shuffle(texts)
    return texts[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.coldstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--configs", default=os.environ.get("BENCH_COLD_CONFIGS", DEFAULT_CONFIGS),
                        help=f"comma-separated TRIAGE_RUNTIME:TRIAGE_PRECISION (default {DEFAULT_CONFIGS})")
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_COLD_REPEATS", "1")))
    parser.add_argument("--warm-batch", type=int, default=128, help="tweets scored after the first (RSS when warm)")
    parser.add_argument("--no-cli", action="store_true", help="skip the `triage score` runs")
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON results file")
    args = parser.parse_args(argv)
    if args.child:
        return child(args.texts)
    results = run_all([c for c in args.configs.split(",") if c], load_texts(args.warm_batch), args.repeats,
                      cli=not args.no_cli)
    print(f"\n# Cold start: spawn -> first scored mention, fresh process per run (target < {TARGET_SECONDS:.0f} s)\n")
    print(table(results))
    if not args.no_json:
        from bench.results import write_results

        print(f"\nwrote {write_results('coldstart', {'cold_start': summary(results)})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
