"""tools/check_imports.py: services/ has no import cycles and no private cross-module imports."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_imports", REPO / "tools" / "check_imports.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_imports"] = module
    spec.loader.exec_module(module)
    return module


def test_services_have_no_cycles_and_no_private_imports() -> None:
    assert _checker().check(REPO) == []


def test_finds_cycles_late_imports_and_private_names(tmp_path: Path) -> None:
    pkg = tmp_path / "services" / "x"
    pkg.mkdir(parents=True)
    (tmp_path / "services" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from services.x.b import _helper\n")
    (pkg / "b.py").write_text("def f():\n    from services.x import a\n    return a\n\ndef _helper():\n    pass\n")
    (pkg / "c.py").write_text("def g(obj):\n    return obj._mark(False)\n")
    problems = _checker().check(tmp_path)
    assert any("imports private name services.x.b._helper" in p for p in problems)
    assert "import cycle: services.x.a <-> services.x.b" in problems
    assert any("obj._mark" in p for p in problems)
