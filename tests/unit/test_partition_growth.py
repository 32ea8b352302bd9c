"""Partition counts from settings and the pure parts of `triage topics grow` (the broker test is
tests/integration/test_partition_growth.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common import topics
from services.common.kafka import partition_setting
from services.common.partition_growth import plan_growth, rekey, router_state_owner
from services.common.settings import ServiceSettings
from services.common.topics import PartitionLayout, all_topic_specs, partition_for, specs_named
from services.router.config import RouterSettings


def test_partition_counts_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_CLASSIFY_PARTITIONS", "12")
    monkeypatch.setenv("TRIAGE_ROUTER_PARTITIONS", "9")
    layout = RouterSettings().partition_layout()
    counts = {s.name: s.partitions for s in all_topic_specs(layout=layout)}
    assert counts[topics.MENTIONS_RAW] == counts[topics.CLASSIFY_CRISIS_INPUT] == 12
    assert (counts[topics.MENTIONS_SCORED] == counts[topics.RESPONSES] == counts[topics.ROUTER_PAGE_REQUESTS]
            == counts[topics.router_state_spec().name] == 9)
    assert counts[topics.INCIDENTS] == 6 and counts[topics.PAGES] == 1   # not scale-out units
    assert [s.partitions for s in specs_named(topics.MENTIONS_SCORED, topics.SILENCES, layout=layout)] == [9, 1]
    # Without settings: the defaults, 6 and 6.
    assert {s.name: s.partitions for s in all_topic_specs()}[topics.MENTIONS_SCORED] == 6


def test_a_partition_count_below_one_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_ROUTER_PARTITIONS", "0")
    with pytest.raises(ValidationError, match="router_partitions"):
        ServiceSettings()


def test_a_mismatch_names_the_setting_to_fix() -> None:
    assert partition_setting(topics.MENTIONS_RAW) == "TRIAGE_CLASSIFY_PARTITIONS"
    assert partition_setting(topics.RESPONSES) == "TRIAGE_ROUTER_PARTITIONS"
    assert partition_setting(topics.router_state_spec("my-router").name) == "TRIAGE_ROUTER_PARTITIONS"
    assert partition_setting(topics.faust_changelog_topic("triage-classify", "crisis-state")) \
        == "TRIAGE_CRISIS_STATE_PARTITIONS"


def test_the_router_plan_grows_its_state_with_its_topics_and_drains_them_first() -> None:
    plan = plan_growth("router", "r1")
    assert set(plan.topics) == {*topics.ROUTER_COPARTITIONED, "r1-state-changelog"}
    assert set(plan.drained) == set(topics.ROUTER_COPARTITIONED) and plan.rekeyed == ("r1-state-changelog",)
    classify = plan_growth("classify")
    # Scoring keeps no keyed state: mentions.raw may keep its backlog; the crisis input may not.
    assert classify.group == "triage-classify" and classify.drained == (topics.CLASSIFY_CRISIS_INPUT,)
    assert classify.rekeyed == ()


def test_rekey_moves_each_key_to_its_owner_partition_copies_before_tombstones() -> None:
    keys = [f"sla:x:{i}" for i in range(40)] + [f"group:pagerduty|incident:inc-{i}" for i in range(10)]
    live = {k: {partition_for(router_state_owner(k) or "", 2): k.encode()} for k in keys}
    live["incident:old"] = {0: b"{}"}   # not the router's any more: left where it is
    plan = rekey(live, 4)
    moving = {k for k in keys if partition_for(router_state_owner(k) or "", 4) != next(iter(live[k]))}
    assert moving and plan.moved == len(moving) and plan.kept == len(keys) - len(moving) + 1
    assert {(m.key, m.partition) for m in plan.copies} == {(k, partition_for(router_state_owner(k) or "", 4))
                                                           for k in moving}
    assert all(m.value == m.key.encode() for m in plan.copies)
    assert {(m.key, m.partition) for m in plan.tombstones} == {(k, next(iter(live[k]))) for k in moving}
    assert all(m.value is None for m in plan.tombstones)


def test_rekey_finishes_an_interrupted_run() -> None:
    key = next(f"sla:x:{i}" for i in range(100) if partition_for(f"x:{i}", 4) != partition_for(f"x:{i}", 2))
    old, new = partition_for(key[4:], 2), partition_for(key[4:], 4)
    plan = rekey({key: {old: b"v", new: b"v"}}, 4)   # the copy was written, the tombstone was not
    assert plan.copies == [] and [(m.partition, m.value) for m in plan.tombstones] == [(old, None)]
    done = rekey({key: {new: b"v"}}, 4)
    assert done.copies == done.tombstones == [] and done.kept == 1


def test_layout_refuses_a_count_below_one() -> None:
    with pytest.raises(ValueError, match="partition counts"):
        PartitionLayout(router=0)


def test_a_remembered_deletion_moves_with_its_mention_and_an_author_s_stays() -> None:
    assert router_state_owner("deleted:id:x:1850") == "x:1850" == router_state_owner("sla:x:1850")
    assert router_state_owner("deleted:author:x:@ana") is None
