"""`make profile`: where `triage score` spends its time, from py-spy samples of a real run.

Writes ~2,000 real tweets (UMSAB val, an equal share of each of the 8 languages) to a file, runs
`triage score` over it under `py-spy record` (all threads, idle ones left out, 100 samples/s), and writes:

- ``.cache/bench/profile-score.speedscope.json``: the profile (open it in https://www.speedscope.app/);
- ``.cache/bench/profile-score.json``: the shares below, for later comparison.

Prints the share of samples per part of the scoring path (every thread's samples, a sample counted
once, by the first of these rules its stack matches):

- start-up: imports, model load, runtime choice and warm-up (``build_scorer``), reported apart;
- model forward: torch modules, transformers, ONNX Runtime, OpenVINO (the encoder's forward pass);
- encoder glue: ``Encoder.embed_ids`` itself (padding the batch, pooling, normalising);
- tokeniser: Hugging Face tokenizers / ``Encoder.tokenize``;
- language ID: lingua / ``langid.py``;
- heads: the sentiment and intent heads (``heads.py``, scikit-learn);
- protobuf: google.protobuf and the codec;
- waiting: a pool thread waiting for work (reported apart, like start-up);
- other: the rest (JSON output, the staged pipeline's queues, priority, reading the file).

The shares of the scoring path are also printed without start-up and waiting (``steady``).

and the top self-time functions outside the model forward. The fast tokenizer's Rust work runs on its own
(rayon) threads, which py-spy does not sample: the Python thread that waits for it counts as idle, so
the tokeniser's share is a lower bound (``--idle`` counts those waits too, and every other wait with
them). Needs py-spy (the dev extra) and ptrace
permission over a child process (root in a container, or kernel.yama.ptrace_scope <= 1).

    python -m bench.profile [--tweets 2000] [--rate 100] [--env TRIAGE_RUNTIME=onnx ...]

The classify **worker** under load is profiled by `make bench-e2e E2E_PROFILE=.cache/bench/worker.txt` (py-spy
attached to the running worker, raw folded stacks, every thread, idle included); the same parts plus the Kafka
client and Faust and the crisis engine are printed at the end of that run, or later with
`python -m bench.profile --worker FILE --rate 25`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / ".cache" / "bench"

# (part, patterns of a frame's "function (file)" text); the first part whose rule any frame of a sample matches wins
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("start-up", (r"^build_scorer \(", r"^_find_and_load \(", r"^load_encoder \(")),
    ("tokeniser", (r"tokenization_utils", r"/tokenizers/", r"^(_ids|tokenize|token_counts) \(.*encoder/loader\.py\)$")),
    ("model forward", (r"/torch/nn/", r"/transformers/(models|modeling|pytorch_utils|integrations)", r"/onnxruntime/",
                       r"/openvino/", r"^run \(.*openvino_runtime\.py\)$")),
    ("encoder glue", (r"^embed_ids \(.*encoder/loader\.py\)$",)),
    ("language ID", (r"lingua", r"services/classify/langid\.py")),
    ("heads", (r"services/classify/heads\.py", r"/sklearn/")),
    ("protobuf", (r"google/protobuf", r"services/common/codec", r"services/common/pb/")),
)
RULES = [(part, [re.compile(n) for n in needles]) for part, needles in PARTS]
# a thread waiting, by its innermost frame (py-spy does not always see a pool thread's wait as idle)
WAITING = [re.compile(n) for n in (r"^_worker \(.*concurrent/futures/thread\.py\)$", r"^get \(.*/queue\.py\)$",
                                   r"^wait \(.*threading\.py\)$")]
ORDER = [p for p, _ in PARTS] + ["waiting", "other"]


def frame_text(frame: dict[str, Any]) -> str:
    return f"{frame.get('name', '?')} ({frame.get('file', '?')})"


def part_of(stack: Sequence[str]) -> str:
    """The part a sample's stack (frame texts, outermost first) belongs to."""
    for part, needles in RULES:
        if any(n.search(f) for f in stack for n in needles):
            return part
    if stack and any(n.search(stack[-1]) for n in WAITING):
        return "waiting"
    return "other"


def summarise(speedscope: dict[str, Any], top: int = 15) -> dict[str, Any]:
    """Seconds per part and the top self-time functions outside the model forward, over every thread."""
    frames = [frame_text(f) for f in speedscope["shared"]["frames"]]
    parts: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for profile in speedscope["profiles"]:
        for sample, weight in zip(profile["samples"], profile["weights"], strict=True):
            stack = [frames[i] for i in sample]
            part = part_of(stack)
            parts[part] += weight
            if part not in ("model forward", "start-up", "waiting") and stack:
                self_time[f"{stack[-1]} [{part}]"] += weight
    total = sum(parts.values()) or 1.0
    steady = (total - parts["start-up"] - parts["waiting"]) or 1.0
    return {"seconds": round(total, 2), "startup_seconds": round(parts["start-up"], 2),
            "shares": {p: round(parts[p] / total, 4) for p in ORDER},
            "steady_shares": {p: round(parts[p] / steady, 4) for p in ORDER if p not in ("start-up", "waiting")},
            "top_self_outside_model": [[name, round(s / steady, 4)] for name, s in self_time.most_common(top)]}


# The classify worker's own parts (bench/e2e.py --profile records it under load). A worker sample is the part
# of its innermost Python frame that any rule names (the callback that runs, not the event loop or Faust agent
# around it), so these come after the scoring path's rules and the event loop last.
WORKER_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("crisis engine", (r"services/classify/crisis", r"crisis_agent\.py")),
    ("Kafka client and Faust", (r"/aiokafka/", r"/faust/", r"/mode/", r"/kafka/")),
    ("event loop", (r"/asyncio/", r"/uvloop/")),
)
WORKER_RULES = [*RULES[1:], *[(part, [re.compile(n) for n in needles]) for part, needles in WORKER_PARTS]]
# a thread with nothing to do, by its innermost Python frame: the event loop's poll, a lock or condition wait,
# a pool thread's idle get
IDLE = [re.compile(n) for n in (r"^select \(.*selectors\.py",
                                r"^(wait|get|_worker|acquire) \(.*(threading|queue|concurrent/futures/thread)\.py")]
WORKER_ORDER = [p for p, _ in PARTS if p != "start-up"] + [p for p, _ in WORKER_PARTS] + ["other", "idle"]
_LINE = re.compile(r":\d+\)$")


def raw_frame(text: str) -> str:
    """A py-spy raw frame (``name (pkg/module.py:12)``, site-packages paths shortened to the package) as the
    rules read it: ``name (/pkg/module.py)``."""
    name, sep, where = text.partition(" (")
    if not sep:
        return text
    return f"{name} ({'' if where.startswith(('/', '<')) else '/'}{_LINE.sub(')', where)}"


def worker_part_of(stack: Sequence[str]) -> str:
    """The part of a worker sample (frames outermost first, raw_frame form; native frames may follow the
    innermost Python frame, whose wait makes the sample idle)."""
    python = [f for f in stack if ".py)" in f or "<frozen" in f]
    if python and any(n.search(python[-1]) for n in IDLE):
        return "idle"
    for f in reversed(python):
        for part, needles in WORKER_RULES:
            if any(n.search(f) for n in needles):
                return part
    return "other"


def summarise_folded(lines: Sequence[str], rate: float, top: int = 15) -> dict[str, Any]:
    """Seconds per part of a py-spy ``--format raw`` profile (``frame;frame;... count`` per line), over every
    thread, with the busy shares (idle left out) and the top self-time functions outside the model forward."""
    parts: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for line in lines:
        stack_text, _, count = line.rstrip("\n").rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        stack = [raw_frame(f) for f in stack_text.split(";")]
        part = worker_part_of(stack)
        parts[part] += int(count) / rate
        if part not in ("model forward", "idle"):
            self_time[f"{stack[-1]} [{part}]"] += int(count) / rate
    total = sum(parts.values()) or 1.0
    busy = (total - parts["idle"]) or 1.0
    return {"seconds": round(total, 2), "busy_seconds": round(busy, 2),
            "busy_shares": {p: round(parts[p] / busy, 4) for p in WORKER_ORDER if p != "idle"},
            "top_self_outside_model": [[name, round(s / busy, 4)] for name, s in self_time.most_common(top)]}


def print_worker_summary(path: Path, rate: float) -> dict[str, Any]:
    summary = summarise_folded(path.read_text(encoding="utf-8", errors="replace").splitlines(), rate)
    print(f"# classify worker profile {path}: {summary['seconds']:.1f} s of samples over all threads, "
          f"{summary['busy_seconds']:.1f} s busy\n")
    print("| part | share of the busy samples |\n|---|---:|")
    for part, share in summary["busy_shares"].items():
        print(f"| {part} | {share:.1%} |")
    print("\n| top self time outside the model forward | share of the busy samples |\n|---|---:|")
    for name, share in summary["top_self_outside_model"]:
        print(f"| `{name}` | {share:.1%} |")
    return summary


def tweets(n: int) -> list[str]:
    from services.classify.training.datasets import load_umsab

    val = load_umsab("val")
    langs = sorted(set(val.langs))
    per = -(-n // len(langs))
    picked: list[str] = []
    for lang in langs:
        own = [t.replace("\n", " ") for t, g in zip(val.texts, val.langs, strict=True) if g == lang and t.strip()]
        picked += own[:per]
    return picked[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tweets", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the scoring process (repeatable)")
    parser.add_argument("--idle", action="store_true", help="count idle samples too (py-spy --idle)")
    parser.add_argument("--worker", type=Path, default=None,
                        help="only summarise a worker profile (py-spy raw folded stacks, e.g. bench/e2e.py --profile)")
    args = parser.parse_args(argv)
    if args.worker is not None:
        print_worker_summary(args.worker, args.rate)
        return 0
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        print("bench.profile: py-spy not found (pip install '.[dev]')", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    texts = tweets(args.tweets)
    infile = args.out / "profile-tweets.txt"
    infile.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    profile = args.out / "profile-score.speedscope.json"
    env = {**os.environ, **dict(e.split("=", 1) for e in args.env)}
    cmd = [pyspy, "record", "--format", "speedscope", "--rate", str(args.rate), "--output", str(profile),
           *(["--idle"] if args.idle else []), "--", sys.executable, "-m", "services.cli", "score", str(infile)]
    started = time.perf_counter()
    run = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if run.returncode != 0 or not profile.exists():
        print(run.stderr[-3000:], file=sys.stderr)
        print("bench.profile: py-spy record failed (ptrace not permitted? see the docstring)", file=sys.stderr)
        return 1
    summary = summarise(json.loads(profile.read_text()))
    runtime = " ".join(f"{k}={v}" for k, v in sorted(env.items()) if k in ("TRIAGE_RUNTIME", "TRIAGE_PRECISION")) \
        or "the defaults"
    summary.update(tweets=len(texts), wall_s=round(wall, 1), settings=runtime, idle=args.idle, profile=str(profile))
    (args.out / "profile-score.json").write_text(json.dumps(summary, indent=1))
    print(f"# `triage score` on {len(texts)} UMSAB val tweets, encoder settings {runtime}: {wall:.1f}s wall "
          f"(model load included), {summary['seconds']:.1f}s of {'' if args.idle else 'non-idle '}samples, "
          "all threads\n")
    print("| part | share of all samples | share of the scoring work (no start-up, no waiting) |\n|---|---:|---:|")
    for part in ORDER:
        steady = summary["steady_shares"].get(part)
        print(f"| {part} | {summary['shares'][part]:.1%} | {'-' if steady is None else f'{steady:.1%}'} |")
    print("\n| top self time outside the model forward | share of the scoring work |\n|---|---:|")
    for name, share in summary["top_self_outside_model"]:
        print(f"| `{name}` | {share:.1%} |")
    print(f"\nprofile: {profile} (https://www.speedscope.app/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
