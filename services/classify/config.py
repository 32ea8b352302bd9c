"""Classify worker settings (env prefix `TRIAGE_`)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from services.common.settings import ServiceSettings


class ClassifySettings(ServiceSettings):
    classify_app_id: str = Field("triage-classify", description="Faust app id (= consumer group)")
    model: str = Field(
        "", description="Hugging Face model directory or hub id; empty = the converted multilingual-e5-small"
    )
    heads_dir: str = Field("", description="directory with heads.npz/heads.json; empty = the bundled trained heads")
    max_batch: int = Field(32, ge=1, le=1024, description="mentions per inference micro-batch")
    max_wait_seconds: float = Field(0.2, gt=0, description="flush a partial batch after this long")
    max_tokens: int = Field(128, ge=8, le=512, description="tokens per mention fed to the encoder")
    precision: Literal["auto", "fp32", "bf16", "bf16-autocast", "bf16-weights", "int8"] = Field(
        "auto", description="encoder precision: auto = bf16 where the CPU has native bf16 and it measures faster"
    )
    adapter_dir: str = Field(
        "", description="fine-tuned encoder adapter directory; empty = the bundled one, 'none' = the plain base"
    )
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = the CPUs this process may use")
    classify_metrics_port: int = Field(9101, description="port of the worker's /metrics")
    store: str = Field("memory://", description="Faust table store (rocksdict:// in production)")
    data_dir: str = Field("run/classify-data", description="Faust data directory (tables, rocksdict)")
    instance_id: str = Field(
        default_factory=lambda: os.environ.get("POD_NAME", ""),
        description="static group membership id (pod name); avoids rebalance storms on rolling restarts",
    )
    languages: str = Field("", description="comma-separated ISO codes for language ID; empty = defaults")
