"""Erasure planning (services/common/erasure.py): who matches, what expires when, an audit without personal data."""

from __future__ import annotations

import pytest

from services.common import codec, topics
from services.common.codec import pb
from services.common.erasure import Finding, Subject, plan, retention_seconds, without_samples

T0 = 1_800_000_000.0


def mention(ext: str, handle: str, source: int = pb.SOURCE_X) -> pb.Mention:
    return pb.Mention(source=source, external_id=ext, mention_id=codec.mention_id(source, ext),
                      author=pb.Author(handle=handle))


def test_an_author_subject_matches_their_posts_on_that_source_only():
    ana = Subject.author("x", "@Ana_K")
    assert ana.matches(mention("1", "ana_k")) and ana.matches(mention("2", "ANA_K"))
    assert not ana.matches(mention("3", "bob")) and not ana.matches(mention("4", "ana_k", pb.SOURCE_REDDIT))
    assert Subject.mention("x:1").matches(mention("1", "bob"))
    with pytest.raises(ValueError):
        Subject.author("nowhere", "ana")
    with pytest.raises(ValueError):
        Subject.mention("1850")


def test_the_plan_says_when_each_append_only_copy_expires_and_holds_no_personal_data():
    ana = Subject.author("x", "ana_k")
    raw = Finding(topics.MENTIONS_RAW)
    raw.add("x:1", T0)
    queue = Finding(topics.queue_topic("urgent"))
    queue.add("x:1", T0 + 60)
    record = plan(ana, [raw, queue], "dpo", T0 + 3600, notices=2, tombstones={"triage-router-state-changelog": 1},
                  republished=1)
    assert record.mentions_found == 1 and record.requested_by == "dpo"
    assert "mentions.raw: 1 mention(s), the last copy expires by retention at 2027-01-22T08:00:00Z" in record.expiring
    assert any(e.startswith("triage.queue.urgent: ") and "2027-01-29" in e for e in record.expiring)
    assert any("1 tombstone" in a for a in record.actions) and any("incidents: 1" in a for a in record.actions)
    text = codec.to_json(record)
    assert "ana_k" not in text and "x:1" not in text
    assert record.subject_digest == Subject.author("x", "@ANA_K").digest()


def test_retention_of_compacted_and_append_only_topics():
    assert retention_seconds(topics.MENTIONS_RAW) == 7 * 24 * 3600
    assert retention_seconds(topics.queue_topic("anything")) == 14 * 24 * 3600
    assert retention_seconds(topics.INCIDENTS) is None and retention_seconds(topics.ERASURES) is None


def test_an_incident_is_republished_without_the_erased_samples():
    inc = pb.Incident(id="inc-1")
    inc.evidence.sample_mention_ids.extend(["x:1", "x:2"])
    inc.evidence.sample_urls.extend(["https://x.com/ana_k/status/1", "https://x.com/bob/status/2"])
    out = without_samples(inc, {"x:1"})
    assert out is not None and list(out.evidence.sample_mention_ids) == ["x:2"]
    assert list(out.evidence.sample_urls) == ["https://x.com/bob/status/2"]
    assert without_samples(inc, {"x:9"}) is None
