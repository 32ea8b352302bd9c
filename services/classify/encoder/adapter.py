"""Fine-tuned encoder deltas: LoRA adapters (peft) merged into the converted base at load time.

The fine-tuned encoder is never stored whole (470 MB): `triage train` writes a peft LoRA adapter
(`adapter_config.json` + `adapter_model.safetensors`, about 1 MB) under
`services/classify/artifacts/adapter/`, and the loader merges it into the base weights, so serving
costs exactly what the base model costs. `TRIAGE_ADAPTER_DIR` points elsewhere, or `none` serves the
plain base (the heads must then be ones trained on the plain base).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

ADAPTER_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "adapter"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def resolve_adapter(setting: str) -> Path | None:
    """The adapter directory for the `adapter_dir` setting: '' = the bundled one if present, 'none' = no adapter."""
    if setting.strip().lower() == "none":
        return None
    path = Path(setting).expanduser() if setting else ADAPTER_DIR
    if not setting and not (path / ADAPTER_FILES[1]).is_file():
        return None
    missing = [f for f in ADAPTER_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"adapter directory {path} lacks {', '.join(missing)}")
    return path


def adapter_sha256(path: Path) -> str:
    h = hashlib.sha256()
    for name in ADAPTER_FILES:
        h.update(name.encode() + b"\0" + (path / name).read_bytes())
    return h.hexdigest()


def apply_adapter(model: Any, path: Path) -> tuple[Any, str]:
    """``model`` with the LoRA adapter in ``path`` merged into its weights, and the adapter's sha256."""
    from peft import PeftModel

    merged = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    return merged, adapter_sha256(path)
