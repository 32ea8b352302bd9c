"""Where the ONNX export and OpenVINO's compile cache live: the repository's .cache by default, the image's
baked export and writable /tmp when TRIAGE_ONNX_CACHE / TRIAGE_OPENVINO_CACHE say so (deploy/docker/Dockerfile)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.classify.encoder.onnx_export import onnx_cache_root
from services.classify.encoder.openvino_runtime import openvino_cache_root

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_repositorys_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIAGE_ONNX_CACHE", raising=False)
    monkeypatch.delenv("TRIAGE_OPENVINO_CACHE", raising=False)
    assert onnx_cache_root() == REPO / ".cache" / "onnx"
    assert openvino_cache_root() == REPO / ".cache" / "openvino"


def test_the_environment_moves_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRIAGE_ONNX_CACHE", str(tmp_path / "onnx"))
    monkeypatch.setenv("TRIAGE_OPENVINO_CACHE", " /tmp/openvino ")
    assert onnx_cache_root() == tmp_path / "onnx"
    assert openvino_cache_root() == Path("/tmp/openvino")
    monkeypatch.setenv("TRIAGE_ONNX_CACHE", "  ")   # blank = the default, not the working directory
    assert onnx_cache_root() == REPO / ".cache" / "onnx"
