"""Responders' corrections as a dev set for `make eval`: which label counts, and the figures (pure)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from services.classify.training import feedback_set as fs
from services.common import codec
from services.common.codec import pb


def fb(mid: str, original: str, corrected: str = "", text: str = "the app is down", prio: int = 0) -> pb.LabelFeedback:
    return pb.LabelFeedback(mention_id=mid, text=text, language="en", brand="acme", original_intent=original,
                            corrected_intent=corrected, original_priority=pb.P1, corrected_priority=prio,
                            model_version="v1")


def test_truth_is_the_correction_or_the_intent_left_standing_and_the_latest_counts():
    ex = fs.examples([fb("x:1", "complaint", "outage_report"), fb("x:2", "question", prio=pb.P3),
                      fb("x:3", "praise", "spam", text="  "),          # no text: not an example
                      fb("x:4", "complaint", "not_an_intent"),
                      fb("x:1", "complaint", "question")])              # latest correction of x:1 wins
    assert [(e.mention_id, e.intent, e.flagged_intent) for e in ex] == [
        ("x:2", "question", "question"), ("x:1", "question", "complaint")]


def test_top_intents_threshold_and_precision_recall():
    names = fs.INTENTS
    row = [0.0] * len(names)
    high = list(row)
    high[names.index("outage_report")] = 0.9
    low = list(row)
    low[names.index("praise")] = 0.3
    assert fs.top_intents([high, low]) == ["outage_report", "none"]
    stats = fs.precision_recall(["outage_report", "outage_report", "complaint"],
                                ["outage_report", "complaint", "complaint"])
    assert stats["outage_report"] == (2, 1, 100.0, 50.0)
    assert stats["complaint"] == (1, 2, 50.0, 100.0)
    support, said, p, r = stats["spam"]
    assert (support, said) == (0, 0) and math.isnan(p) and math.isnan(r)
    text = fs.table(["outage_report", "complaint"], {"when flagged": ["complaint", "question"],
                                                     "this model": ["outage_report", "complaint"]})
    assert "| outage_report | 1 | 0 | nan | 0.0 | 1 | 100.0 | 100.0 |" in text
    assert "**0.0**" in text and "**100.0**" in text


def test_jsonl_export_reads_back_and_bad_lines_name_their_line(tmp_path: Path):
    path = tmp_path / "feedback.jsonl"
    path.write_text(codec.to_json(fb("x:1", "complaint", "outage_report")) + "\n\n"
                    + codec.to_json(fb("x:2", "question")) + "\n")
    back = fs.read_jsonl(path)
    assert [r.mention_id for r in back] == ["x:1", "x:2"] and back[0].corrected_intent == "outage_report"
    examples, source = fs.load_for_eval(str(path), "127.0.0.1:1")
    assert len(examples) == 2 and source == str(path)
    path.write_text(codec.to_json(fb("x:1", "complaint")) + "\n{\"mention_id\": 5, \"nope\": 1}\n")
    with pytest.raises(ValueError, match=r"feedback.jsonl:2"):
        fs.read_jsonl(path)


def test_no_kafka_means_no_examples_and_the_reason():
    examples, source = fs.load_for_eval("", "127.0.0.1:1", timeout=2)
    assert examples == [] and "did not answer" in source
