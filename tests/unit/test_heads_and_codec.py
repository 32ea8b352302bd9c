"""Head persistence, protobuf codecs and the generated-code freshness check."""

from __future__ import annotations

import numpy as np
import pytest

from services.classify.heads import SENTIMENT_LABELS, Head, HeadSet
from services.classify.priority import INTENTS
from services.common import codec, topics
from services.common.codec import pb
from services.devtools import protobuild


def _heads(rng: np.random.Generator) -> HeadSet:
    s = Head(SENTIMENT_LABELS, [(rng.normal(size=(8, 4)).astype(np.float32), np.zeros(8, np.float32)),
                                (rng.normal(size=(3, 8)).astype(np.float32), np.zeros(3, np.float32))], False)
    i = Head(INTENTS, [(rng.normal(size=(6, 4)).astype(np.float32), np.zeros(6, np.float32))], True,
             temperature=np.full(6, 2.0, np.float32))
    return HeadSet(s, i, {"note": "test"})


def test_heads_roundtrip_and_probabilities(tmp_path):
    rng = np.random.default_rng(0)
    heads = _heads(rng)
    heads.save(tmp_path)
    loaded = HeadSet.load(tmp_path)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(loaded.sentiment.predict_proba(x), heads.sentiment.predict_proba(x), rtol=1e-6)
    assert np.allclose(loaded.sentiment.predict_proba(x).sum(1), 1.0)
    p = loaded.intents.predict_proba(x)
    assert p.shape == (5, 6) and ((p > 0) & (p < 1)).all()
    assert loaded.version == heads.version and len(loaded.version) == 12


def test_tampered_heads_are_refused(tmp_path):
    _heads(np.random.default_rng(1)).save(tmp_path)
    meta = (tmp_path / "heads.json").read_text().replace('"heads_sha256": "', '"heads_sha256": "0')
    (tmp_path / "heads.json").write_text(meta)
    with pytest.raises(ValueError, match="does not match"):
        HeadSet.load(tmp_path)


def test_missing_heads_say_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="make train"):
        HeadSet.load(tmp_path)


def test_codec_roundtrip_and_topic_types():
    m = pb.Mention(source=pb.SOURCE_BLUESKY, external_id="at://x/1", text="καλημέρα")
    m.mention_id = codec.mention_id(m.source, m.external_id)
    assert m.mention_id == "bluesky:at://x/1"
    back = codec.decode(codec.encode(m), codec.type_for_topic(topics.MENTIONS_RAW))
    assert back == m
    assert codec.type_for_topic("triage.queue.urgent") is pb.RoutedMention
    with pytest.raises(Exception, match=r"triage\.v1\.Mention"):
        codec.decode(b"\xff\xff\xff", pb.Mention)


def test_queue_names_are_validated():
    assert topics.queue_topic("urgent") == "triage.queue.urgent"
    with pytest.raises(ValueError):
        topics.queue_topic("Urgent Queue")


def test_generated_protobuf_code_is_fresh():
    assert protobuild.stale_files() == [], "run `make proto`"
