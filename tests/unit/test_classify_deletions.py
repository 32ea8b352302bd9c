"""Classify's deletion gate: a deleted mention is never scored, however its deletion and its copies are ordered."""

from __future__ import annotations

from services.classify.crisis.config import IncidentConfig
from services.classify.crisis.incidents import OpenIncident
from services.classify.deletion_gate import DeletionGate
from services.common import codec
from services.common.codec import pb
from services.common.deletions import DeletionMemory


def mention(ext: str, handle: str = "ana", author_id: str = "") -> bytes:
    m = pb.Mention(source=pb.SOURCE_X, external_id=ext, text="card charged twice",
                   author=pb.Author(handle=handle, id=author_id))
    m.mention_id = codec.mention_id(m.source, ext)
    return codec.encode(m)


def deleted(ext: str = "", handle: str = "", author_id: str = "") -> bytes:
    d = pb.MentionDeleted(source=pb.SOURCE_X, external_id=ext, author_handle=handle, author_id=author_id,
                          reason=pb.PLATFORM_DELETE if ext else pb.USER_DEACTIVATED)
    if ext:
        d.mention_id = codec.mention_id(d.source, ext)
    return codec.encode(d)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_mention_deleted_in_the_same_batch_is_not_scored_either_order():
    gate = DeletionGate(3600)
    after = gate.admit([(mention("1"), False), (deleted("1"), True), (mention("2"), False)])
    assert [m.mention_id for m in after.mentions] == ["x:2"] and after.dropped == ["x:1"]
    assert [d.mention_id for d in after.deletions] == ["x:1"]
    before = DeletionGate(3600).admit([(deleted("3"), True), (mention("3"), False)])
    assert before.mentions == [] and before.dropped == ["x:3"]


def test_a_replayed_copy_within_the_window_is_dropped_and_after_it_passes():
    clock = Clock()
    gate = DeletionGate(3600, clock=clock)
    gate.admit([(deleted("1"), True)])
    clock.now = 3599
    assert gate.admit([(mention("1"), False)]).dropped == ["x:1"]
    clock.now = 3601
    assert [m.mention_id for m in gate.admit([(mention("1"), False)]).mentions] == ["x:1"]


def test_an_author_deletion_drops_every_post_of_theirs_by_handle_or_id():
    gate = DeletionGate(3600)
    gate.admit([(deleted(handle="@Ana"), True), (deleted(author_id="42"), True)])
    out = gate.admit([(mention("1", handle="ana"), False), (mention("2", handle="bob", author_id="42"), False),
                      (mention("3", handle="carol"), False)])
    assert out.dropped == ["x:1", "x:2"] and [m.mention_id for m in out.mentions] == ["x:3"]


def test_memory_is_bounded():
    memory = DeletionMemory(3600, max_entries=2)
    for ext in "123":
        memory.remember(codec.decode(deleted(ext), pb.MentionDeleted))
    assert len(memory) == 2


def test_an_undecodable_deletion_is_kept_for_the_dead_letter_queue():
    out = DeletionGate(3600).admit([(b"\xff\xff", True)])
    assert out.deletions == [] and len(out.undecodable) == 1


def test_an_open_incident_forgets_a_deleted_sample_and_its_url():
    inc = OpenIncident(id="i1", brand="acme", kind=pb.OUTAGE_CLUSTER, opened_at=1.0, updated_at=1.0, last_active=1.0,
                       sample_ids=["x:1", "x:2"], sample_urls=["https://x.com/ana/status/1", "https://x.com/b/status/2"])
    assert inc.forget("x:1") and not inc.forget("x:9")
    ev = inc.to_pb(pb.UPDATED, IncidentConfig()).evidence
    assert list(ev.sample_mention_ids) == ["x:2"] and list(ev.sample_urls) == ["https://x.com/b/status/2"]


def test_a_restored_memory_keeps_what_is_within_the_window_and_expires_it_on_time():
    clock = Clock()
    clock.now = 1_000.0
    first = DeletionMemory(3600, clock=clock)
    entries = first.remember(codec.decode(deleted("1"), pb.MentionDeleted))
    entries += first.remember(codec.decode(deleted(handle="@Ana"), pb.MentionDeleted))
    assert entries == [("id:x:1", 1_000.0), ("author:x:@ana", 1_000.0)]
    clock.now = 2_000.0
    again = DeletionMemory(3600, clock=clock)      # the restarted worker, from the checkpoints
    assert again.restore([*entries, ("id:x:old", -5_000.0)]) == 2
    assert again.take_expired() == ["id:x:old"]    # a checkpoint past the window is tombstoned, not restored
    assert again.covers(codec.decode(mention("1"), pb.Mention))
    assert again.covers(codec.decode(mention("7", handle="ANA"), pb.Mention))
    assert not again.covers(codec.decode(mention("2", handle="bob"), pb.Mention))
    clock.now = 4_601.0
    assert not again.covers(codec.decode(mention("1"), pb.Mention))
    assert sorted(again.take_expired()) == ["author:x:@ana", "id:x:1"]
    assert again.take_expired() == []


def test_a_key_remembered_again_after_it_expired_keeps_its_checkpoint():
    clock = Clock()
    memory = DeletionMemory(10, clock=clock)
    memory.remember(codec.decode(deleted("1"), pb.MentionDeleted))
    clock.now = 20
    assert not memory.covers(codec.decode(mention("1"), pb.Mention))
    memory.remember(codec.decode(deleted("1"), pb.MentionDeleted))
    assert memory.take_expired() == []             # no tombstone for a key held again
    restored = DeletionMemory(10, clock=clock)
    restored.restore([("id:x:1", 5.0), ("id:x:1", 20.0)])   # the newest checkpoint of a key wins
    clock.now = 29
    assert restored.covers(codec.decode(mention("1"), pb.Mention))


def test_a_restored_memory_stays_bounded_oldest_first():
    clock = Clock()
    clock.now = 100.0
    memory = DeletionMemory(3600, max_entries=2, clock=clock)
    assert memory.restore([("id:x:3", 30.0), ("id:x:1", 10.0), ("id:x:2", 20.0)]) == 2
    assert not memory.covers(codec.decode(mention("1"), pb.Mention))
    assert memory.covers(codec.decode(mention("2"), pb.Mention))
    assert memory.covers(codec.decode(mention("3"), pb.Mention))
    assert memory.take_expired() == ["id:x:1"]
