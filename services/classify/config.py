"""Classify worker settings (env prefix `TRIAGE_`), crisis detection's included.

The crisis detectors' tuning parameters (thresholds, windows) are code, in `crisis/config.py`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from services.common.settings import WorkerSettings, service_env


class ClassifySettings(WorkerSettings):
    DEFAULT_DATA_DIR: ClassVar[str] = "run/classify-data"

    classify_app_id: str = Field("triage-classify", description="Faust app id (= consumer group)")
    model: str = Field(
        "", description="Hugging Face model directory or hub id; empty = the converted multilingual-e5-small"
    )
    heads_dir: str = Field("", description="directory with heads.npz/heads.json; empty = the bundled trained heads")
    max_batch: int = Field(32, ge=1, le=1024, validation_alias=service_env("classify", "max_batch"),
                           description="mentions per inference micro-batch")
    max_wait_seconds: float = Field(0.2, gt=0, validation_alias=service_env("classify", "max_wait_seconds"),
                                    description="flush a partial batch after this long")
    max_tokens: int = Field(128, ge=8, le=512, description="tokens per mention fed to the encoder")
    precision: Literal["auto", "fp32", "bf16", "bf16-autocast", "bf16-weights", "int8", "int8-static"] = Field(
        "auto", description="encoder precision: auto = bf16 where the CPU has native bf16 and it measures faster"
    )
    runtime: Literal["auto", "torch", "onnx", "openvino"] = Field(
        "torch", description="encoder runtime: torch, onnx (ONNX Runtime over the cached export of the same "
                             "weights), openvino (OpenVINO over that export; bf16 where the CPU has it natively) or "
                             "auto = the fastest that passes parity with fp32 torch on this CPU")
    # Read where the files are found (encoder/onnx_export.onnx_cache_root, openvino_runtime.openvino_cache_root),
    # also by `triage model build`, which has no service settings; declared here so they are documented settings.
    onnx_cache: str = Field("", description="directory of the ONNX exports (ONNX Runtime and OpenVINO run them); "
                                            "empty = <repo>/.cache/onnx. The classify image bakes /opt/triage/onnx")
    openvino_cache: str = Field("", description="OpenVINO's compiled-model cache; empty = <repo>/.cache/openvino; "
                                                "unwritable = no cache. The image uses /tmp/openvino")
    adapter_dir: str = Field(
        "", description="fine-tuned encoder adapter directory; empty = the bundled one, 'none' = the plain base"
    )
    classify_session_timeout_seconds: float = Field(30.0, gt=0, description="Kafka consumer session timeout: how "
                                                     "long a dead replica's partitions wait before they move")
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = the CPUs this process may use")
    classify_metrics_port: int = Field(9101, description="port of the worker's /metrics")
    languages: str = Field("", description="comma-separated ISO codes for language ID; empty = defaults")
    classify_deletion_window_seconds: float = Field(
        3600.0, ge=0, description="how long a deletion is remembered, so a late or replayed copy of its mention is "
                                  "dropped unscored (ingest's dedupe window)")
    incident_sample_retention_seconds: float = Field(
        14 * 24 * 3600.0, ge=0, description="how long a resolved incident keeps its sample mention ids and URLs on "
                                            "the compacted incidents topic; then it is re-published without them")

    # Crisis detection (services/classify/crisis/, the Faust glue in crisis_agent.py).
    crisis_enabled: bool = Field(True, description="run crisis detection in the classify worker")
    crisis_tick_seconds: float = Field(10.0, gt=0, description="how often quiet incidents are checked")
    crisis_checkpoint_seconds: float = Field(5.0, ge=0, description="per-brand state checkpoint interval")
    crisis_state_partitions: int = Field(6, ge=1, description="partitions of the crisis-state changelog")
    crisis_event_time: Literal["received_at", "created_at"] = Field(
        "received_at", description="crisis event time: received_at (live) or created_at (event-time replay)")
    crisis_lateness_seconds: float = Field(
        300.0, ge=0, description="events this far behind the crisis clock still count; older ones are late")
