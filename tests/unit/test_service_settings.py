"""Per-service setting names: one .env can serve every service; the old shared names still work."""

from __future__ import annotations

import pytest

from services.classify.config import ClassifySettings
from services.common.settings import env_names
from services.ingest.config import IngestSettings
from services.router.config import RouterSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no .env from the working directory
    for var in ("TRIAGE_MAX_BATCH", "TRIAGE_MAX_WAIT_SECONDS", "TRIAGE_INGEST_MAX_BATCH", "TRIAGE_CLASSIFY_MAX_BATCH",
                "TRIAGE_ROUTER_MAX_BATCH", "TRIAGE_CLASSIFY_MAX_WAIT_SECONDS", "TRIAGE_ROUTER_MAX_WAIT_SECONDS"):
        monkeypatch.delenv(var, raising=False)


def test_defaults_unchanged() -> None:
    assert (IngestSettings().max_batch, ClassifySettings().max_batch, RouterSettings().max_batch) == (2000, 32, 64)
    assert (ClassifySettings().max_wait_seconds, RouterSettings().max_wait_seconds) == (0.2, 0.1)
    assert ClassifySettings().faust_data_dir() == "run/classify-data"
    assert RouterSettings().faust_data_dir() == "run/router-data"


def test_prefixed_names_keep_the_services_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_INGEST_MAX_BATCH", "5000")
    monkeypatch.setenv("TRIAGE_CLASSIFY_MAX_BATCH", "16")
    monkeypatch.setenv("TRIAGE_ROUTER_MAX_BATCH", "128")
    assert (IngestSettings().max_batch, ClassifySettings().max_batch, RouterSettings().max_batch) == (5000, 16, 128)


def test_old_shared_name_is_an_alias_and_the_prefixed_one_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_MAX_BATCH", "48")
    assert (IngestSettings().max_batch, ClassifySettings().max_batch, RouterSettings().max_batch) == (48, 48, 48)
    monkeypatch.setenv("TRIAGE_CLASSIFY_MAX_BATCH", "8")
    assert ClassifySettings().max_batch == 8 and RouterSettings().max_batch == 48


def test_field_names_still_work_in_code() -> None:
    assert ClassifySettings(max_batch=4).max_batch == 4
    assert ClassifySettings(crisis_tick_seconds=0.5).crisis_tick_seconds == 0.5  # crisis settings live here too


def test_env_names() -> None:
    assert env_names(RouterSettings)["max_batch"] == ("TRIAGE_ROUTER_MAX_BATCH", "TRIAGE_MAX_BATCH")
    assert env_names(RouterSettings)["tick_seconds"] == ("TRIAGE_TICK_SECONDS",)


def test_documented_env_vars_are_settings() -> None:
    """Every TRIAGE_* variable the README and the operating guide name is read by some service."""
    import re
    from pathlib import Path

    from services.console.config import ConsoleSettings

    repo = Path(__file__).resolve().parents[2]
    known = {v.upper() for cls in (IngestSettings, ClassifySettings, RouterSettings, ConsoleSettings)
             for names in env_names(cls).values() for v in names}
    for doc in ("README.md", "docs/operating.md", "services/router/ROUTING.md"):
        named = set(re.findall(r"\b(TRIAGE_[A-Z0-9_]*[A-Z0-9])\b", (repo / doc).read_text(encoding="utf-8")))
        assert named <= known, f"{doc} names variables no service reads: {sorted(named - known)}"
