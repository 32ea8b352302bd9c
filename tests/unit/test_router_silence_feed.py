"""The silences topic's store (SilenceFeed): same semantics as the routing file's silences (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common import codec
from services.common.alerting.silence_feed import SilenceFeed, from_record
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch
from services.router.routing_file import loads

T0 = 1_800_000_000.0


def record(sid: str = "s1", matchers: tuple[str, ...] = ('brand="acme"',), start: float = T0, end: float = T0 + 3600,
           **kw: str) -> pb.Silence:
    return pb.Silence(id=sid, matchers=list(matchers), starts_at=ts_from_epoch(start), ends_at=ts_from_epoch(end),
                      created_by=kw.get("created_by", "ana"), comment=kw.get("comment", "status page is up"),
                      incident_id=kw.get("incident_id", "inc-1"), created_at=ts_from_epoch(start))


def test_active_between_start_and_end_and_matching_all_matchers():
    feed = SilenceFeed()
    feed.apply(record(matchers=('brand="acme"', 'intent=~"outage_report|complaint"')))
    hit = feed.match({"brand": "acme", "intent": "outage_report"}, T0 + 10)
    assert hit is not None and hit.id == "s1" and hit.created_by == "ana" and hit.incident_id == "inc-1"
    assert feed.match({"brand": "acme", "intent": "praise"}, T0 + 10) is None        # one matcher fails
    assert feed.match({"brand": "globex", "intent": "complaint"}, T0 + 10) is None
    assert feed.match({"brand": "acme", "intent": "complaint"}, T0 - 1) is None      # pending
    assert feed.match({"brand": "acme", "intent": "complaint"}, T0 + 3600) is None   # ends_at is exclusive
    assert feed.silences["s1"].state(T0 - 1) == "pending" and feed.silences["s1"].state(T0 + 3600) == "expired"


def test_expiry_record_replaces_and_tombstone_forgets():
    feed = SilenceFeed()
    feed.apply_record(b"s1", codec.encode(record()))
    assert feed.match({"brand": "acme"}, T0 + 100) is not None
    expired = record(end=T0 + 100)
    expired.expired_by = "bo"
    feed.apply_record(b"s1", codec.encode(expired))
    assert feed.match({"brand": "acme"}, T0 + 100) is None and feed.silences["s1"].expired_by == "bo"
    assert feed.silences["s1"].state(T0 + 100) == "expired"
    assert feed.apply_record(b"s1", None) is None and "s1" not in feed.silences
    feed.apply_record(b"unknown", b"")  # a tombstone for an id never seen changes nothing
    assert feed.silences == {}


def test_pending_silence_expired_before_it_starts_is_expired_not_pending():
    feed = SilenceFeed()
    feed.apply(record(start=T0 + 600, end=T0 + 60))  # expired at T0+60, before its start
    assert feed.silences["s1"].state(T0 + 100) == "expired" and feed.match({"brand": "acme"}, T0 + 700) is None


@pytest.mark.parametrize(("msg", "reason"), [
    (record(sid=""), "no id"),
    (record(matchers=()), "at least one matcher"),
    (record(matchers=('brand=~".*"',)), "empty label value"),   # would silence every page
    (record(matchers=('brand!="x"',)), "empty label value"),
    (record(matchers=("brand acme",)), "bad matcher"),
    (record(matchers=('brand=~"("',)), "bad regex"),
])
def test_unusable_records_raise_with_the_reason_and_change_nothing(msg: pb.Silence, reason: str):
    feed = SilenceFeed()
    feed.apply(record(sid="keep"))
    with pytest.raises(ValueError, match=reason):
        feed.apply_record(msg.id.encode() or b"k", codec.encode(msg))
    assert list(feed.silences) == ["keep"]


def test_undecodable_bytes_are_a_value_error():
    with pytest.raises(ValueError, match="Silence"):
        SilenceFeed().apply_record(b"k", b"\xff\xff\xff")


def test_oldest_active_silence_is_the_one_reported():
    feed = SilenceFeed()
    feed.apply(record(sid="b", start=T0 + 5))
    feed.apply(record(sid="a", start=T0))
    hit = feed.match({"brand": "acme"}, T0 + 10)
    assert hit is not None and hit.id == "a"
    assert [s.id for s in feed.active(T0 + 10)] == ["a", "b"]


_LABELS = st.fixed_dictionaries({"brand": st.sampled_from(["acme", "globex", ""]),
                                 "intent": st.sampled_from(["complaint", "outage_report", "none"]),
                                 "priority": st.sampled_from(["P1", "P2", "P3"])})
_MATCHERS = st.lists(st.sampled_from(['brand="acme"', 'brand!="globex"', 'intent=~"outage_report|complaint"',
                                      'intent!~"none"', 'priority="P1"']), min_size=1, max_size=3, unique=True)


@given(labels=_LABELS, matchers=_MATCHERS, offset=st.floats(min_value=-100, max_value=4000, allow_nan=False))
def test_same_answer_as_a_routing_file_silence(labels: dict[str, str], matchers: list[str], offset: float):
    """A silence from the topic mutes exactly what the same silence in the routing file mutes."""
    if all(m.startswith("brand!=") or m.startswith("intent!~") for m in matchers):
        matchers = [*matchers, 'priority="P1"']  # the feed refuses silences that match empty labels
    quoted = ", ".join(f"'{m}'" for m in matchers)
    tree = loads(f"""\
route: {{receiver: q}}
receivers: [{{name: q, kafka_queue: {{queue: normal}}}}]
silences:
  - matchers: [{quoted}]
    starts_at: {T0}
    ends_at: {T0 + 3600}
""")
    feed = SilenceFeed()
    feed.apply(record(matchers=tuple(matchers)))
    now = T0 + offset
    assert (tree.silenced_by(labels, now) is None) == (feed.match(labels, now) is None)
    assert from_record(record(matchers=tuple(matchers))).matchers == tree.silences[0].matchers


def test_fold_never_raises_and_counts_what_it_skipped():
    feed = SilenceFeed()
    assert feed.fold(b"s1", codec.encode(record())) == ""
    assert "Silence" in feed.fold(b"bad", b"\xff\xff\xff")
    assert "empty label value" in feed.fold(b"s2", codec.encode(record(sid="s2", matchers=('brand=~".*"',))))
    assert feed.skipped == 2 and list(feed.silences) == ["s1"]
    assert feed.fold(b"s1", None) == "" and feed.silences == {}
