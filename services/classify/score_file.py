"""`triage score FILE`: score mentions offline with the worker's own code path.

Input: plain text (one mention per line) or JSONL mentions (objects with a
`text` field, optionally `author.followers`, `author.verified`, `engagement`).
Output: one JSON object per input line, in input order. The file is streamed
in chunks of the batch size, so 10,000 lines never sit in one batch. `--sketch`
adds the embedding's sketch (`sketch`, base64 int8), so `triage backtest
--scores` of that output finds emerging issues as the worker would.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from services.classify.priority import Signals


def _parse_line(line: str, jsonl: bool) -> tuple[str, Signals]:
    if not jsonl:
        return line, Signals()
    obj: dict[str, Any] = json.loads(line)
    author = obj.get("author") or {}
    eng = obj.get("engagement") or {}
    return str(obj.get("text", "")), Signals(
        followers=int(author.get("followers", 0) or 0), verified=bool(author.get("verified", False)),
        likes=int(eng.get("likes", 0) or 0), reposts=int(eng.get("reposts", 0) or 0),
        replies=int(eng.get("replies", 0) or 0), quotes=int(eng.get("quotes", 0) or 0),
    )


def chunks(fh: IO[str], size: int, jsonl: bool) -> Iterator[list[tuple[int, str, Signals, str | None]]]:
    chunk: list[tuple[int, str, Signals, str | None]] = []
    for i, raw in enumerate(fh, start=1):
        line = raw.rstrip("\n")
        try:
            text, sig = _parse_line(line, jsonl)
            err = None if text.strip() else "empty text"
        except (ValueError, TypeError) as exc:
            text, sig, err = "", Signals(), f"invalid JSON line: {exc}"
        chunk.append((i, text, sig, err))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def main(argv: list[str] | None = None) -> int:
    from services.classify.config import ClassifySettings
    from services.classify.factory import build_scorer

    parser = argparse.ArgumentParser(prog="triage score", description=__doc__)
    parser.add_argument("file", help="text or JSONL file; - for stdin")
    parser.add_argument("--jsonl", action="store_true", help="force JSONL (default: by .jsonl/.ndjson suffix)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="at most this many texts per forward pass (length buckets; the worker's default)")
    parser.add_argument("--max-batch", type=int, default=0,
                        help="texts per staged batch (default: the worker's TRIAGE_MAX_BATCH)")
    parser.add_argument("--sketch", action="store_true",
                        help="add each text's embedding sketch (base64 int8, 512 characters): what "
                             "`triage backtest --scores` needs to find emerging issues")
    args = parser.parse_args(argv)
    jsonl = args.jsonl or args.file.endswith((".jsonl", ".ndjson"))
    settings = ClassifySettings()
    scorer = build_scorer(settings)
    scorer.batch_size = args.batch_size
    fh: IO[str] = sys.stdin if args.file == "-" else Path(args.file).open(encoding="utf-8")
    with fh:
        # The worker's staged pipeline over the good lines; bad lines are reported in their place, in order.
        lines = (row for chunk in chunks(fh, args.batch_size, jsonl) for row in chunk)
        pending: deque[tuple[int, str | None]] = deque()   # lines read, in order, until printed

        def good() -> Iterator[tuple[str, Signals]]:
            for lineno, text, sig, err in lines:
                pending.append((lineno, err))
                if err is None:
                    yield text, sig

        def flush_errors() -> None:
            while pending and pending[0][1] is not None:
                lineno, err = pending.popleft()
                print(json.dumps({"line": lineno, "error": err}))

        for score in scorer.stream_texts(good(), args.max_batch or settings.max_batch):
            flush_errors()
            lineno, _ = pending.popleft()
            print(json.dumps({"line": lineno, **score.as_json(scorer.model_version, args.sketch)}, ensure_ascii=False))
        flush_errors()
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
