"""Writes ``artifacts/calibration_set.jsonl``: the real texts that static int8 quantisation of the ONNX
export (``encoder/onnx_export.py``) calibrates its activation ranges on.

A fixed slice of UMSAB *train* (the first ``--per-language`` posts of each of the 8 languages), never a
text of the parity set the quantised model is then judged on (``artifacts/parity_set.jsonl``). Committed,
so ``triage model build`` needs no shared data and every build calibrates on the same texts:

    TRIAGE_SHARED_DATA=../shared/data python -m services.classify.training.calibration_set
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.classify.training.datasets import load_umsab

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def calibration_slice(texts: list[str], langs: list[str], exclude: set[str], per_language: int) -> list[dict[str, str]]:
    """The first ``per_language`` distinct, non-empty texts of each language that are not in ``exclude``."""
    taken: dict[str, list[str]] = {}
    for text, lang in zip(texts, langs, strict=True):
        bucket = taken.setdefault(lang, [])
        if text.strip() and text not in exclude and text not in bucket and len(bucket) < per_language:
            bucket.append(text)
    return [{"lang": lang, "text": t} for lang in sorted(taken) for t in taken[lang]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-language", type=int, default=24)
    parser.add_argument("--out", type=Path, default=ARTIFACTS / "calibration_set.jsonl")
    args = parser.parse_args(argv)
    parity = {json.loads(x)["text"] for x in (ARTIFACTS / "parity_set.jsonl").read_text(encoding="utf-8").splitlines()
              if x.strip()}
    train = load_umsab("train")
    rows = calibration_slice(train.texts, train.langs, parity, args.per_language)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} calibration texts to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
