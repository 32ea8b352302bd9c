"""A deletion read by the router's bookkeeping and by the console's views (no broker)."""

from __future__ import annotations

from test_console_views import T0, incident, q, routed

from services.common import codec, topics
from services.common.codec import pb
from services.common.deletions import deletion_headers
from services.common.timeutil import ts_from_epoch
from services.console.views import ConsoleView
from services.router.ledger import RoutedLedger, mention_version
from services.router.sla import SlaItem, SlaTracker


def deleted(ext: str = "", handle: str = "", at: float = T0 + 100) -> bytes:
    d = pb.MentionDeleted(source=pb.SOURCE_X, external_id=ext, author_handle=handle, received_at=ts_from_epoch(at))
    if ext:
        d.mention_id = f"x:{ext}"
    return codec.encode(d)


def test_the_ledger_knows_which_queue_topics_a_mention_went_to_within_its_window():
    ledger = RoutedLedger(window=3600)
    m = pb.Mention(mention_id="x:1")
    ledger.claim("triage.queue.urgent", mention_version(m), at=0)
    ledger.remember("triage.queue.normal", mention_version(m).encode(), at=10)
    assert ledger.topics_of("x:1") == {"triage.queue.urgent", "triage.queue.normal"}
    assert ledger.topics_of("x:2") == set()
    ledger.expire(now=3605)
    assert ledger.topics_of("x:1") == {"triage.queue.normal"}


def test_a_deleted_mention_s_sla_clock_is_dropped_and_never_escalates():
    sla = SlaTracker()
    sla.open(SlaItem("x:1", "urgent", "P2", "root/p2", 0.0, 60.0, ""))
    sla.open(SlaItem("x:2", "urgent", "P2", "root/p2", 0.0, 60.0, ""))
    assert sla.drop(lambda item: item.mention_id == "x:1") == ["x:1"]
    assert [i.mention_id for i in sla.breaches(now=120)] == ["x:2"]


def test_console_removes_a_deleted_mention_from_queues_incident_samples_and_corrections():
    v = ConsoleView()
    v.apply_record(q("urgent"), b"x:1", routed("1"))
    v.apply_record(q("urgent"), b"x:2", routed("2"))
    v.apply_record(topics.INCIDENTS, b"inc-1", incident())
    v.feedback["x:1"] = {"comment": "wrong"}
    v.apply_record(q("urgent"), b"x:1", deleted("1"), deletion_headers())
    assert [i.mention_id for i in v.queue_items("urgent", include_done=True)] == ["x:2"]
    assert v.incidents["inc-1"].sample_mention_ids == [] and v.incidents["inc-1"].sample_urls == []
    assert "x:1" not in v.feedback
    # Read again later (an incident update, the item from another queue topic): still not shown.
    v.apply_record(topics.INCIDENTS, b"inc-1", incident(updated=T0 + 120))
    v.apply_record(q("normal"), b"x:1", routed("1", queue="normal"))
    assert v.incidents["inc-1"].sample_mention_ids == [] and v.queue_items("normal") == []


def test_console_removes_every_post_of_a_deleted_author_routed_before_the_deletion():
    v = ConsoleView()
    v.apply_record(q("urgent"), b"x:1", routed("1"))      # author "ana"
    v.apply_record(q("urgent"), b"x:2", deleted(handle="@ANA", at=T0 + 100), deletion_headers())
    assert v.queue_items("urgent", include_done=True) == []
    v.apply_record(q("urgent"), b"x:3", routed("3", created=T0 + 200))   # posted after: shown
    assert [i.mention_id for i in v.queue_items("urgent")] == ["x:3"]


def test_a_correction_read_after_the_deletion_is_not_shown():
    v = ConsoleView()
    v.apply_record(q("urgent"), b"x:1", deleted("1"), deletion_headers())
    fb = pb.LabelFeedback(mention_id="x:1", queue="urgent", text="text 1", corrected_priority=pb.P3)
    v.apply_record(topics.FEEDBACK, b"x:1", codec.encode(fb))
    assert "x:1" not in v.feedback


def test_a_deleted_post_leaves_the_samples_of_the_incident_groups():
    from services.router.grouping import Group, IncidentGrouper

    grouper = IncidentGrouper()
    g = Group(key="k", id="g1", receiver="oncall", route="root", incident_id="inc-1", labels={}, priority="P1",
              group_wait=0, group_interval=60, repeat_interval=3600, quiet_period=600, first_at=0, last_at=0,
              count=2, samples=[{"mention_id": "x:1", "text": "call me", "url": ""},
                                {"mention_id": "x:2", "text": "down", "url": ""}])
    grouper.groups["k"] = g
    assert grouper.drop_samples_of("x:1") == [g] and [s["mention_id"] for s in g.samples] == ["x:2"]
    assert grouper.drop_samples_of("x:1") == [] and g.count == 2
