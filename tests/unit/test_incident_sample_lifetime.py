"""Resolved incidents lose their samples (ids, URLs) on the compacted incidents topic after their lifetime."""

from __future__ import annotations

from services.classify.sample_lifetime import SampleLifetime, without_any_samples
from services.common import codec
from services.common.codec import pb
from services.common.timeutil import ts_from_epoch

DAY = 86400.0


def incident(iid: str, state: int = pb.RESOLVED, resolved_at: float = 1_000.0, brand: str = "acme",
             samples: bool = True) -> bytes:
    inc = pb.Incident(id=iid, brand=brand, kind=pb.OUTAGE_CLUSTER, state=state, mention_count=42,
                      reasons=["outage reports 12x expected"])
    inc.updated_at.CopyFrom(ts_from_epoch(resolved_at))
    if state == pb.RESOLVED:
        inc.resolved_at.CopyFrom(ts_from_epoch(resolved_at))
    inc.evidence.top_terms.extend(["login", "down"])
    if samples:
        inc.evidence.sample_mention_ids.extend(["x:1", "x:2"])
        inc.evidence.sample_urls.extend(["https://x.com/ana/status/1", "https://x.com/bob/status/2"])
    return codec.encode(inc)


def test_a_resolved_incident_is_due_only_once_its_lifetime_ran_out():
    lifetime = SampleLifetime(keep_seconds=14 * DAY)
    lifetime.observe(incident("i1", resolved_at=1_000.0))
    assert lifetime.due(1_000.0 + 14 * DAY - 1, owns=lambda _b: True) == []
    [out] = lifetime.due(1_000.0 + 14 * DAY, owns=lambda _b: True)
    assert out.id == "i1" and list(out.evidence.sample_mention_ids) == [] and list(out.evidence.sample_urls) == []
    # What is not personal data stays: counts, terms, the reasons (one added saying why the samples went).
    assert out.mention_count == 42 and list(out.evidence.top_terms) == ["login", "down"]
    assert out.reasons[0] == "outage reports 12x expected" and "samples dropped 14 d" in out.reasons[-1]
    assert out.state == pb.RESOLVED and out.resolved_at.seconds == 1_000


def test_open_incidents_and_ones_without_samples_are_never_due():
    lifetime = SampleLifetime(keep_seconds=DAY)
    lifetime.observe(incident("open", state=pb.OPEN))
    lifetime.observe(incident("bare", samples=False))
    assert lifetime.due(100 * DAY, owns=lambda _b: True) == [] and len(lifetime) == 0


def test_a_reopened_incident_a_tombstone_or_its_sample_free_copy_stop_holding_it():
    lifetime = SampleLifetime(keep_seconds=DAY)
    for iid in ("a", "b", "c"):
        lifetime.observe(incident(iid))
    lifetime.observe(incident("a", state=pb.OPEN))                 # the same id opened again
    lifetime.observe(None, b"b")                                   # erased by a tombstone
    [c] = lifetime.due(10 * DAY, owns=lambda _b: True)
    lifetime.observe(codec.encode(c))                              # the follower reads the re-published copy
    assert len(lifetime) == 0 and lifetime.due(10 * DAY, owns=lambda _b: True) == []


def test_only_the_replica_that_owns_the_brand_republishes():
    lifetime = SampleLifetime(keep_seconds=DAY)
    lifetime.observe(incident("i1", brand="acme"))
    lifetime.observe(incident("i2", brand="globex"))
    assert [i.id for i in lifetime.due(10 * DAY, owns=lambda b: b == "globex")] == ["i2"]


def test_an_undecodable_record_is_skipped():
    lifetime = SampleLifetime(keep_seconds=DAY)
    lifetime.observe(b"\xff\xff\xff")
    assert len(lifetime) == 0


def test_without_any_samples_leaves_the_original_untouched():
    inc = codec.decode(incident("i1"), pb.Incident)
    out = without_any_samples(inc, 7 * DAY)
    assert list(inc.evidence.sample_mention_ids) == ["x:1", "x:2"] and not out.evidence.sample_mention_ids
