"""`make test` runs the suite on pytest-xdist workers with `--dist loadgroup`, and tests/conftest.py puts each module
in one group (the heavy pipelines in one shared group), so a module's fixtures are built once and the heavy pipelines
never run side by side. pytest-xdist does the grouping by appending "@<group>" to each test's node id; pytest 9.2
stopped reading the attribute xdist writes, and every test silently became a group of its own (a module's
fixtures were built on each worker: the Prometheus pipeline three times). tests/conftest.py now sets the suffix on
pytest's structured node id itself; this fails if the grouping is lost again."""

from __future__ import annotations

import pytest


def test_under_loadgroup_each_test_carries_its_modules_group(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not on an xdist worker under --dist loadgroup (make test runs it there)")
    assert request.node.nodeid.endswith("@test_suite_grouping.py"), request.node.nodeid
