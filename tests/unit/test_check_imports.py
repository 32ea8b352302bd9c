"""tools/check_imports.py: services/ has no import cycles, no private cross-module imports and no service
importing another; a run that reads no module fails."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

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


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {"services/__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != root / "services" and not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
        path.write_text(text)
    return root


def test_reading_no_module_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checker = _checker()
    problems = checker.check(tmp_path)  # no services/ here: nothing would be checked
    assert len(problems) == 1 and problems[0].startswith("no modules read under")
    assert checker.main([str(tmp_path)]) == 1
    capsys.readouterr()


def test_accepts_the_services_folder_as_root(capsys: pytest.CaptureFixture[str]) -> None:
    # `tools/check_imports.py services` used to look for services/services/ and pass with 0 modules.
    checker = _checker()
    assert checker.main([str(REPO / "services")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("check_imports: ") and int(out.split()[1]) == len(checker.module_names(REPO)) > 100


def test_a_service_importing_another_service_fails(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "services/common/alerting/silences.py": "class Silence: ...\n",
        "services/router/tree.py": "from services.common.alerting.silences import Silence\n",
        "services/console/views.py": "from services.router.tree import Silence\n",
        "services/console/render.py": "def f():\n    import services.ingest.normalize\n",
        "services/ingest/normalize.py": "from services.devtools import kafka_broker\n",
        "services/common/codec.py": "from services.classify import heads\n",
        "services/classify/heads.py": "",
        "services/devtools/kafka_broker.py": "",
        "services/devtools/localrun.py": "from services.router import tree\nfrom services.console import views\n",
        "services/cli.py": "from services.ingest import normalize\n",
    })
    problems = _checker().check(root)
    assert sorted(problems) == sorted([
        "services/console/views.py:1: service console imports services.router (services.router.tree): "
        "services meet only through topics and services/common",
        "services/console/render.py:2: service console imports services.ingest (services.ingest.normalize): "
        "services meet only through topics and services/common",
        "services/ingest/normalize.py:1: service ingest imports services.devtools "
        "(services.devtools.kafka_broker): services meet only through topics and services/common",
        "services/common/codec.py:1: services/common imports services.classify (services.classify.heads): "
        "services meet only through topics and services/common",
    ])


def test_offline_analysis_sits_above_the_services_and_no_service_crosses(tmp_path: Path) -> None:
    checker = _checker()
    assert checker.CROSS_SERVICE_ALLOWED == {}   # no exceptions left: services meet only through common/
    root = _tree(tmp_path, {
        "services/analysis/backtest.py": "from services.ingest.normalize import normalize\n",
        "services/classify/crisis/engine.py": "from services.ingest.normalize import normalize\n",
        "services/ingest/normalize.py": "def normalize(): ...\n",
    })
    assert checker.check(root) == [
        "services/classify/crisis/engine.py:1: service classify imports services.ingest (services.ingest.normalize): "
        "services meet only through topics and services/common"]


def test_live_code_importing_the_training_code_fails(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "services/classify/scorer.py": "",
        "services/classify/training/datasets.py": "",
        "services/classify/training/train.py": "from services.classify.scorer import x\n"
                                               "from services.classify.training.datasets import y\n",
        "services/classify/app.py": "def main():\n    from services.classify.training import train\n",
        "services/cli.py": "from services.classify.training import train\n",
    })
    assert _checker().check(root) == [
        "services/classify/app.py:2: imports offline code services.classify.training.train: "
        "the live service must not load services.classify.training"]
