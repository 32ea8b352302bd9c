"""The documented mapping of the shared sets to triage intents, partial labels, and the dev hold-out."""

from __future__ import annotations

import numpy as np
import pytest

from services.classify.heads import Head
from services.classify.priority import INTENTS
from services.classify.training import intent_sources as src
from services.classify.training.datasets import SHARED_DATA
from services.classify.training.train import HeadConfig, _fit, fit_platt

needs_data = pytest.mark.skipif(not SHARED_DATA.exists(), reason="shared data not present")


@needs_data
def test_banking77_fraud_is_a_safety_threat_and_failures_are_complaints() -> None:
    rows = src.banking77()
    by_cat = {ex.source.split(":", 1)[1]: ex.labels for ex in rows}
    assert by_cat["compromised_card"]["safety_or_legal_threat"] == 1
    assert by_cat["compromised_card"]["outage_report"] == 0
    # a card or payment that fails now is an outage report ("payments/cards failing") and a complaint
    assert by_cat["card_not_working"] == {"outage_report": 1, "praise": 0, "spam": 0, "complaint": 1,
                                          "safety_or_legal_threat": 0}
    assert by_cat["declined_card_payment"]["outage_report"] == 1
    # a fee or a double charge is a complaint about a service that works: not an outage
    assert by_cat["transaction_charged_twice"] == {"outage_report": 0, "praise": 0, "spam": 0, "complaint": 1,
                                                  "safety_or_legal_threat": 0}
    assert by_cat["exchange_rate"]["complaint"] == 0
    assert by_cat["exchange_rate"]["outage_report"] == 0
    assert not src.BANKING_OUTAGE & src.BANKING_FAILURE and not src.BANKING_OUTAGE & src.BANKING_FRAUD
    assert "question" not in by_cat["exchange_rate"]  # banking77 says nothing about question-ness


@needs_data
def test_tweet_act_speaks_only_to_questions_and_threats() -> None:
    for ex in src.tweet_act():
        assert set(ex.labels) <= {"question", "safety_or_legal_threat"}
        if ex.source == "tweet-act:QUE":
            assert ex.labels == {"question": 1}


@needs_data
def test_training_examples_never_contain_a_dev_text() -> None:
    held_out = src.dev_texts()
    assert len(held_out) > 1000
    examples = src.training_examples()
    assert examples and not any(src.normalise(ex.text) in held_out for ex in examples)
    families = {ex.source.split(":")[0] for ex in examples}
    assert {"intents", "tweet-act", "banking77", "humaid", "crisislex"} <= families


def test_every_synthetic_outage_report_is_a_complaint() -> None:
    rows = src.synthetic("train")
    outages = [ex for ex in rows if ex.labels["outage_report"]]
    assert outages and all(ex.labels["complaint"] == 1 for ex in outages)


def test_masked_labels_do_not_teach_the_head() -> None:
    """An intent whose labels are all masked keeps its initial (near-zero) weights' behaviour."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    y = np.zeros((400, len(INTENTS)), dtype=np.float32)
    y[:, 0] = (x[:, 0] > 0).astype(np.float32)          # complaint follows feature 0
    y[:, 1] = 1.0                                        # question "always present" ... but masked
    mask = np.ones_like(y)
    mask[:, 1] = 0.0
    w = _fit(x, y, len(INTENTS), True, HeadConfig(0, 0.0, epochs=200, lr=0.05), mask=mask)
    head = Head(INTENTS, w, multilabel=True)
    p = head.predict_proba(x)
    assert ((p[:, 0] >= 0.5) == (y[:, 0] == 1)).mean() > 0.9
    assert abs(p[:, 1].mean() - 0.5) < 0.2               # unmasked, it would be pushed to ~1


def test_platt_scaling_moves_the_decision_point() -> None:
    z = np.linspace(-4, 4, 400)[:, None].astype(np.float32)
    y = (z[:, 0] > 2.0).astype(np.float32)[:, None]       # real positives only at the top
    t, b = fit_platt(z, y)
    p = 1 / (1 + np.exp(-(z / t + b)))
    assert p[z[:, 0] < 1.0].max() < 0.5 <= p[z[:, 0] > 3.0].min()


def test_team_pool_examples_weigh_more_in_the_loss() -> None:
    rows = [src.IntentExample("a", "en", "realdev-train:customer-care", {}),
            src.IntentExample("b", "en", "banking77:card_not_working", {})]
    assert src.example_weights(rows) == [src.SOURCE_WEIGHTS["realdev-train"], 1.0]
    assert src.SOURCE_WEIGHTS["realdev-train"] > 1.0


def test_sample_weight_decides_between_conflicting_labels() -> None:
    """Two sources label the same inputs oppositely: the heavier one sets the boundary."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    x = np.concatenate([x, x])
    y = np.zeros((800, len(INTENTS)), dtype=np.float32)
    y[:400, 2] = 1.0                                     # source A: all outage reports; source B: none
    weights = np.array([5.0] * 400 + [1.0] * 400, dtype=np.float32)
    cfg = HeadConfig(0, 0.0, epochs=100, lr=0.05)
    heavy_a = Head(INTENTS, _fit(x, y, len(INTENTS), True, cfg, sample_weight=weights), multilabel=True)
    heavy_b = Head(INTENTS, _fit(x, y, len(INTENTS), True, cfg, sample_weight=weights[::-1].copy()), multilabel=True)
    assert heavy_a.predict_proba(x[:400])[:, 2].mean() > 0.75
    assert heavy_b.predict_proba(x[:400])[:, 2].mean() < 0.25
