"""The alert rules load in Prometheus and fire (only) when they should: `promtool check rules` and
`promtool test rules` over deploy/prometheus (Debian's `prometheus` package ships promtool).

Locally the tests skip when promtool is absent; in CI (CI=true) a missing promtool fails them, so a
broken install can never pass as green.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool not installed (apt-get install -y prometheus)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, timeout=120)


def test_rules_are_valid(promtool: str) -> None:
    out = _run(promtool, "check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_rules_unit_tests_pass(promtool: str) -> None:
    assert RULE_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    out = _run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_is_unit_tested() -> None:
    # An alert without a promtool case can have an expression that never fires.
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    tested: set[str] = set()
    firing: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                tested.add(check["alertname"])
                if check.get("exp_alerts"):
                    firing.add(check["alertname"])
    assert alerts <= tested, f"alerts without a promtool test: {sorted(alerts - tested)}"
    assert alerts <= firing, f"alerts never shown to fire: {sorted(alerts - firing)}"


def test_a_broken_rule_is_caught(promtool: str, tmp_path: Path) -> None:
    # Guards the two tests above against a promtool that reports success for anything.
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(rate(up[5m])\n")
    out = _run(promtool, "check", "rules", str(bad))
    assert out.returncode != 0
