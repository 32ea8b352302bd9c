"""Responders' corrections (LabelFeedback on the `feedback` topic) as an extra real dev set for `make eval`.

A correction says what a person decided a mention's top intent is: `corrected_intent` when they
changed it, else the `original_intent` they left standing (a priority-only correction confirms the
intent). Only the latest correction per mention counts, as on the console. The set is small and
biased towards the classifier's mistakes (people flag what is wrong), so its figures say whether a
newer model fixes what responders flagged, not how good the model is overall.

    triage feedback export [--out FILE] [--bootstrap HOST:PORT]   the topic as JSON lines (one LabelFeedback each)

`make eval` reads an export given with `triage eval --feedback FILE`, else the topic itself when Kafka
answers within a few seconds; it prints the section only when there is feedback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.json_format import ParseDict

from services.classify.priority import INTENTS
from services.common import codec, topics
from services.common.codec import pb
from services.common.vocabulary import INTENT_THRESHOLD


@dataclass(frozen=True)
class FeedbackExample:
    mention_id: str
    text: str
    language: str
    brand: str
    intent: str            # the responder's top intent (the truth here)
    flagged_intent: str    # the classifier's top intent when the responder saw it
    model_version: str


def examples(records: Iterable[pb.LabelFeedback]) -> list[FeedbackExample]:
    """The latest correction per mention, with a text and a known intent, in the order of those corrections."""
    latest: dict[str, pb.LabelFeedback] = {}
    for fb in records:
        if fb.mention_id:
            latest.pop(fb.mention_id, None)
            latest[fb.mention_id] = fb
    out = []
    for fb in latest.values():
        truth = fb.corrected_intent or fb.original_intent
        if not fb.text.strip() or truth not in INTENTS:
            continue
        out.append(FeedbackExample(fb.mention_id, fb.text, fb.language, fb.brand, truth, fb.original_intent,
                                   fb.model_version))
    return out


def top_intents(proba: list[list[float]], names: tuple[str, ...] = INTENTS,
                threshold: float = INTENT_THRESHOLD) -> list[str]:
    """The top intent of each row of intent probabilities (in `names` order), "none" below the threshold."""
    out = []
    for row in proba:
        k = max(range(len(row)), key=lambda j: row[j])
        out.append(names[k] if row[k] >= threshold else "none")
    return out


def precision_recall(truth: list[str], predicted: list[str]) -> dict[str, tuple[int, int, float, float]]:
    """Per intent: (support, times predicted, precision %, recall %) of top-intent predictions; NaN when
    the intent was never predicted (precision) or never the truth (recall)."""
    out = {}
    for name in INTENTS:
        support = sum(1 for t in truth if t == name)
        hits = sum(1 for t, p in zip(truth, predicted, strict=True) if t == name and p == name)
        said = sum(1 for p in predicted if p == name)
        out[name] = (support, said, 100.0 * hits / said if said else float("nan"),
                     100.0 * hits / support if support else float("nan"))
    return out


def table(truth: list[str], columns: dict[str, list[str]]) -> str:
    """Markdown: one row per intent, precision/recall of each column of predictions against `truth`."""
    head = "| intent | support | " + " | ".join(f"{n}: predicted | P | R" for n in columns) + " |"
    rows = [head, "|---|---:|" + "---:|---:|---:|" * len(columns)]
    stats = {n: precision_recall(truth, pred) for n, pred in columns.items()}
    for name in INTENTS:
        support = next(iter(stats.values()))[name][0] if stats else 0
        cells = [f"{s[name][1]} | {s[name][2]:.1f} | {s[name][3]:.1f}" for s in stats.values()]
        rows.append(f"| {name} | {support} | " + " | ".join(cells) + " |")
    accuracy = [100.0 * sum(t == p for t, p in zip(truth, pred, strict=True)) / len(truth) if truth else float("nan")
                for pred in columns.values()]
    rows.append(f"| **top-intent accuracy** | {len(truth)} | "
                + " | ".join(f"| | **{a:.1f}**" for a in accuracy) + " |")
    return "\n".join(rows)


# ---- reading ------------------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[pb.LabelFeedback]:
    """An export (`triage feedback export`): one LabelFeedback per line in protobuf JSON; bad lines raise
    ValueError naming the line."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(ParseDict(json.loads(line), pb.LabelFeedback()))
        except Exception as exc:
            raise ValueError(f"{path}:{n}: not a LabelFeedback JSON line: {exc}") from None
    return out


async def read_topic(bootstrap: str, topic: str = topics.FEEDBACK, timeout: float = 10.0,
                     client_options: dict[str, Any] | None = None) -> list[pb.LabelFeedback]:
    """Every record of the topic from the beginning to its current end (no consumer group); undecodable
    records are skipped. Raises TimeoutError / KafkaError when Kafka does not answer in `timeout`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=int(timeout * 1000),
                                **(client_options or {}))

    async def read() -> list[pb.LabelFeedback]:
        await consumer.start()
        consumer.assign([TopicPartition(topic, 0)])  # makes the client fetch the topic's metadata
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            await asyncio.sleep(0.1)
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(*tps, timeout_ms=500)).values():
                for rec in records:
                    try:
                        out.append(codec.decode(rec.value, pb.LabelFeedback))
                    except Exception:  # a bad record is not a labelled example
                        continue
        return out

    try:
        return await asyncio.wait_for(read(), timeout)
    finally:
        await consumer.stop()


def load_for_eval(path: str, bootstrap: str, timeout: float = 5.0,
                  client_options: dict[str, Any] | None = None) -> tuple[list[FeedbackExample], str]:
    """The examples `make eval` scores and where they came from: the export at `path`, else the topic when
    Kafka answers within `timeout` (else none, and the reason)."""
    if path:
        return examples(read_jsonl(Path(path))), path
    try:
        records = asyncio.run(read_topic(bootstrap, timeout=timeout, client_options=client_options))
    except Exception as exc:
        return [], f"Kafka at {bootstrap} did not answer ({type(exc).__name__})"
    return examples(records), f"topic {topics.FEEDBACK} at {bootstrap}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage feedback", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write the feedback topic as JSON lines")
    export.add_argument("--out", default="-", help="file to write (default: stdout)")
    export.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default: TRIAGE_KAFKA_BOOTSTRAP)")
    export.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    from services.common.settings import ServiceSettings

    settings = ServiceSettings()
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    try:
        records = asyncio.run(read_topic(bootstrap, timeout=args.timeout,
                                         client_options=settings.kafka_client_options()))
    except Exception as exc:
        print(f"feedback export: cannot read {topics.FEEDBACK} from {bootstrap}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    lines = "".join(codec.to_json(r) + "\n" for r in records)
    if args.out == "-":
        sys.stdout.write(lines)
    else:
        Path(args.out).write_text(lines, encoding="utf-8")
        print(f"wrote {len(records)} corrections to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
