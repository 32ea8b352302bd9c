"""docs/operating.md's retention table is the one generated from services/common/topics.py."""

from __future__ import annotations

import pytest

from services.common import retention, topics


def test_the_documented_table_is_the_generated_one():
    documented = retention.section(retention.DOC.read_text())
    assert documented, "docs/operating.md lost its retention table markers"
    assert documented == retention.table(), (
        "docs/operating.md's retention table drifted from services/common/topics.py: run "
        "`python -m services.common.retention --write`")


def test_every_topic_has_its_row_with_its_retention():
    rows = {r[0]: r for r in retention.rows()}
    for spec in topics.all_topic_specs():
        name = topics.QUEUE_PREFIX + "<name>" if spec.name.startswith(topics.QUEUE_PREFIX) else spec.name
        assert f"`{name}`" in rows
    assert rows["`mentions.raw`"][2] == "7 d" and rows["`incidents`"][2].startswith("compacted")
    assert rows["`erasures`"][2] == "kept"


def test_a_topic_without_a_why_fails(monkeypatch):
    monkeypatch.setattr(topics, "CORE_TOPICS", (*topics.CORE_TOPICS, topics.TopicSpec("new.topic", 1)))
    with pytest.raises(KeyError, match=r"new\.topic"):
        retention.rows()
