"""Every exception class the services define derives from `TriageError` (services/common/errors.py)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from services.common.errors import TriageError

SERVICES = Path(__file__).resolve().parents[2] / "services"


def _exception_classes() -> list[tuple[str, str]]:
    """(module, class name) of every class under services/ whose name ends in Error or that raises as one."""
    found = []
    for path in sorted(SERVICES.rglob("*.py")):
        if "pb" in path.relative_to(SERVICES).parts:
            continue
        module = ".".join(path.relative_to(SERVICES.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and (node.name.endswith(("Error", "Unavailable"))):
                found.append((module, node.name))
    return found


def test_the_scan_finds_the_projects_errors() -> None:
    names = {name for _, name in _exception_classes()}
    assert {"DeliveryError", "MentionError", "KafkaUnavailable", "IntervalError", "MatcherError"} <= names


def test_every_error_the_services_define_is_a_triage_error() -> None:
    not_ours = []
    for module, name in _exception_classes():
        cls = getattr(importlib.import_module(module), name)
        if isinstance(cls, type) and issubclass(cls, BaseException) and not issubclass(cls, TriageError):
            not_ours.append(f"{module}.{name}")
    assert not not_ours, f"derive these from services.common.errors.TriageError: {not_ours}"
