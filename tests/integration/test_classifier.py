"""The real classifier (converted e5-small + trained heads) on mentions a responder would judge instantly.

These are behaviour checks, not the evaluation (that is `make eval`): clear-cut posts in several
languages and scripts must land where any human triager would put them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support import REPO_ROOT

from services.classify.config import ClassifySettings
from services.classify.priority import Signals


@pytest.fixture(scope="module")
def scorer():
    from services.classify.factory import build_scorer

    return build_scorer(ClassifySettings())


OUTAGES = [
    "@AcmeBank app is down again, can't log in at all",
    "@AcmeBank la app no funciona, no puedo entrar a mi cuenta",
    "@AcmeBank приложение не работает, не могу войти в аккаунт",
    "@AcmeBank η εφαρμογή δεν λειτουργεί, δεν μπορώ να συνδεθώ",
    "@AcmeBank اپلیکیشن از کار افتاده، نمی‌تونم وارد حسابم بشم",
    "@AcmeBank ऐप काम नहीं कर रहा, लॉगिन नहीं हो रहा",
]


def test_outage_reports_are_recognised_in_every_script(scorer):
    scores = scorer.score_texts(OUTAGES)
    for text, s in zip(OUTAGES, scores, strict=True):
        assert s.intents["outage_report"] >= 0.5, (text, s.intents)
        assert s.priority <= 2, (text, s.priority, s.reasons)


def test_language_is_detected(scorer):
    langs = [s.language for s in scorer.score_texts(OUTAGES)]
    assert langs == ["en", "es", "ru", "el", "fa", "hi"]


def test_praise_question_spam_and_threat(scorer):
    texts = [
        "Thank you @AcmeBank, the support team sorted my card in five minutes. Brilliant service!",
        "@AcmeBank how do I change the phone number linked to my account?",
        "WIN a FREE iPhone 17!!! follow + RT + click bit.ly/fr33-g1ft #giveaway #AcmeBank",
        "Your ATM sparked and burned my hand, @AcmeBank. My lawyer will be in touch.",
    ]
    praise, question, spam, threat = scorer.score_texts(texts)
    assert praise.intents["praise"] >= 0.5 and praise.sentiment_label == "positive"
    assert question.intents["question"] >= 0.5 and question.priority == 3
    assert spam.intents["spam"] >= 0.5 and spam.priority == 4
    assert threat.intents["safety_or_legal_threat"] >= 0.5 and threat.priority == 1


def test_reach_raises_priority_of_the_same_complaint(scorer):
    text = "@AcmeBank charged me twice and nobody answers my emails. Worst bank ever."
    small, big = scorer.score_texts([text, text], [Signals(followers=40), Signals(followers=900_000, verified=True)])
    assert small.sentiment_label == "negative"
    assert big.priority < small.priority
    assert any("author reach" in r for r in big.reasons)


def test_score_command_keeps_input_order_and_streams_in_chunks(tmp_path):
    # Through the staged pipeline (`Scorer.stream_texts`); empty lines are errors in their own place.
    lines = [f"line {i}: " + OUTAGES[i % len(OUTAGES)] for i in range(70)]
    lines[5] = "Thanks @AcmeBank, great service!"
    lines[0] = lines[40] = lines[69] = "   "
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n")
    out = subprocess.run([sys.executable, "-m", "services.cli", "score", str(src), "--batch-size", "16"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True)
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["line"] for r in rows] == list(range(1, 71))
    assert [r["line"] for r in rows if "error" in r] == [1, 41, 70]
    assert all(r["error"] == "empty text" for r in rows if "error" in r)
    assert rows[5]["intents"]["praise"] > rows[6]["intents"]["praise"]
    assert {"language", "sentiment", "intents", "urgency", "priority", "reasons", "model_version"} <= set(rows[1])
    assert "sketch" not in rows[1]


def test_score_command_sketch_carries_the_embedding_for_backtests(tmp_path):
    # `triage score --sketch`: each line's embedding as the worker's int8 sketch (base64), one byte a dimension;
    # two outage reports are nearer each other than either is to a thank-you.
    import base64

    import numpy as np

    from services.classify.crisis.emerging import unsketch

    src = tmp_path / "in.txt"
    src.write_text("\n".join([OUTAGES[0], OUTAGES[1], "Thanks @AcmeBank, great service!"]) + "\n")
    out = subprocess.run([sys.executable, "-m", "services.cli", "score", str(src), "--sketch"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True)
    vecs = [unsketch(base64.b64decode(json.loads(x)["sketch"])) for x in out.stdout.splitlines()]
    assert all(v is not None and v.shape == (384,) for v in vecs)
    a, b, c = (np.asarray(v) for v in vecs)
    assert float(a @ b) > max(float(a @ c), float(b @ c))


def test_staged_offline_scoring_gives_the_same_scores_as_one_batch(scorer):
    # `triage score`, `triage backtest` and `make eval` stream through the worker's staged pipeline; the
    # scores are those of the one-batch call (batch composition only changes padding).
    texts = [OUTAGES[i % len(OUTAGES)] + f" #{i}" for i in range(60)] + ["Thanks @AcmeBank, great service!"]
    signals = [Signals(followers=10 * i) for i in range(len(texts))]
    whole = scorer.score_texts(texts, signals)
    staged = list(scorer.stream_texts(zip(texts, signals, strict=True), max_batch=16))
    assert len(staged) == len(whole)
    for a, b in zip(whole, staged, strict=True):
        assert (a.language, a.sentiment_label, a.priority) == (b.language, b.sentiment_label, b.priority)
        assert max(abs(a.intents[k] - b.intents[k]) for k in a.intents) < 0.02
