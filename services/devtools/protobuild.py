"""Builds the Python protobuf modules from `protos/` (never hand-edited).

`python -m services.devtools.protobuild` writes them under `services/common/pb/`
(git-ignored); `--check` exits non-zero when what is there is stale, so a
changed `.proto` can never ship with old generated code.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "protos"
OUT_DIR = REPO_ROOT / "services" / "common" / "pb"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def build(out_dir: Path = OUT_DIR) -> list[Path]:
    """Compile every .proto under protos/ into `out_dir`; returns the files written."""
    import grpc_tools
    from grpc_tools import protoc  # dev dependency: only the build needs it

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *[str(p) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return sorted(p for p in out_dir.rglob("*") if p.suffix in {".py", ".pyi"})


def stale_files(out_dir: Path = OUT_DIR) -> list[str]:
    """Names of generated files that differ from a fresh build (empty = up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        build(fresh)
        problems = []
        for f in sorted(p for p in fresh.rglob("*") if p.is_file()):
            rel = f.relative_to(fresh)
            current = out_dir / rel
            if not current.exists():
                problems.append(f"{rel} (missing)")
            elif not filecmp.cmp(f, current, shallow=False):
                problems.append(f"{rel} (stale)")
        return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_files()
        if problems:
            print("generated protobuf code is stale; run `make proto`:", *problems, sep="\n  ")
            return 1
        print("generated protobuf code is up to date")
        return 0
    written = build()
    print(f"wrote {len(written)} files under {OUT_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
