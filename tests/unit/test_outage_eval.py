"""The team-labelled outage evaluation set (data/outage_eval): its shape, and that no training path ever sees it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.classify.training import intent_sources as src
from services.classify.training.datasets import SHARED_DATA, OutagePost, load_outage_eval
from services.classify.training.evaluate import outage_eval_tables

needs_data = pytest.mark.skipif(not SHARED_DATA.exists(), reason="shared data not present")

SERVICES = {"power_gas_water", "telecom", "transport", "payments", "apps_sites_logins"}


def test_eval_set_is_large_labelled_and_typed() -> None:
    posts = load_outage_eval()
    assert len(posts) >= 600
    assert len({p.id for p in posts}) == len(posts)
    assert {p.label for p in posts} == {"outage", "complaint", "other"}
    outages = [p for p in posts if p.label == "outage"]
    assert len(outages) >= 100
    assert all(p.service in SERVICES for p in outages)  # every outage report says what went down
    assert {p.lang for p in outages} >= {"en", "es", "it"}
    assert {p.service for p in outages} >= {"power_gas_water", "telecom", "transport", "apps_sites_logins"}


def test_eval_set_shares_no_post_with_the_training_pool_or_realdev() -> None:
    eval_keys = src.outage_eval_keys()
    pool = (src.OUTAGE_EVAL_DIR / "train_pool.jsonl").read_text(encoding="utf-8").splitlines()
    assert pool and not any(src.loose_key(json.loads(x)["text"]) in eval_keys for x in pool)
    for name in ("pool.jsonl", "train_pool.jsonl"):
        realdev = (src.REALDEV_DIR / name).read_text(encoding="utf-8").splitlines()
        assert not any(src.loose_key(json.loads(x)["text"]) in eval_keys for x in realdev)


def test_loose_key_sees_through_retweets_links_and_handles() -> None:
    a = src.loose_key("RT @ANCALERTS: No power in our area since 9pm #PabloPH http://t.co/abc")
    assert a == src.loose_key("No power in our area since 9pm #PabloPH https://t.co/xyz")
    assert a != src.loose_key("Power back in our area since 9pm #PabloPH")


def test_the_training_check_refuses_an_eval_post_even_as_a_retweet() -> None:
    post = next(p for p in load_outage_eval() if p.label == "outage")
    with pytest.raises(src.EvalLeakError):
        src.check_disjoint_from_outage_eval(["an unrelated post", f"RT @someone: {post.text} http://t.co/zzz"])
    src.check_disjoint_from_outage_eval(["an unrelated post about the weather"])  # no leak: no error


@needs_data
@pytest.mark.parametrize("team_pool", [True, False])
def test_training_examples_never_contain_an_eval_post(team_pool: bool) -> None:
    eval_keys = src.outage_eval_keys()
    examples = src.training_examples(team_pool=team_pool)
    assert examples and not any(src.loose_key(ex.text) in eval_keys for ex in examples)
    families = {ex.source.split(":")[0] for ex in examples}
    assert ("outage-train" in families) == team_pool
    # whole CrisisLex evaluation events are held out, not just their posts
    assert not any(ex.source.split(":", 1)[1] in src.CRISISLEX_EVAL_EVENTS for ex in examples
                   if ex.source.startswith("crisislex:"))


@needs_data
def test_sentiment_training_drops_eval_posts() -> None:
    from services.classify.training.train import umsab_train_without_dev

    eval_keys = src.outage_eval_keys()
    train = umsab_train_without_dev()
    assert train.texts and not any(src.loose_key(t) in eval_keys for t in train.texts)


def test_team_labels_map_to_intents() -> None:
    by_label = {}
    for ex in src.outage_train():
        by_label.setdefault((ex.labels["outage_report"], ex.labels["complaint"]), ex)
    assert (1, 1) in by_label and (0, 0) in by_label  # outage reports are complaints; news and damage are neither
    assert all(set(ex.labels) == {"outage_report", "complaint"} for ex in src.outage_train())
    written = src.outage_written()
    assert written and all(ex.labels["complaint"] == 1 for ex in written if ex.labels["outage_report"])


def test_outage_tables_count_recall_per_service_and_language_and_flagged_complaints() -> None:
    posts = [OutagePost("a", "s", "en", "outage", "power_gas_water", "no power"),
             OutagePost("b", "s", "en", "outage", "power_gas_water", "lights out"),
             OutagePost("c", "s", "es", "outage", "telecom", "sin señal"),
             OutagePost("d", "s", "en", "complaint", None, "late again"),
             OutagePost("e", "s", "en", "complaint", None, "rude staff"),
             OutagePost("f", "s", "en", "other", None, "nice day")]
    table, recall, complaints = outage_eval_tables(posts, np.array([0.9, 0.2, 0.7, 0.6, 0.1, 0.0]))
    assert recall == pytest.approx(200 / 3)
    assert complaints == pytest.approx(50.0)
    assert "| service: power_gas_water | 2 | 50.0 | 9.5-90.5 |" in table
    assert "| service: telecom | 1 | 100.0 | 20.7-100.0 |" in table
    assert "| language: es | 1 | 100.0 | 20.7-100.0 |" in table
    assert "| service: payments | 0 | - | - |" in table


def test_the_wilson_interval_matches_its_textbook_values() -> None:
    from services.classify.training.evaluate import wilson_interval

    lo, hi = wilson_interval(84, 128)          # 65.6% of the outage set's 128 reports
    assert (round(lo * 100, 1), round(hi * 100, 1)) == (57.0, 73.3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    lo, hi = wilson_interval(2, 53)            # 2 of 53 ordinary complaints flagged: 3.8%
    assert lo < 0.038 < hi and hi < 0.13
    assert wilson_interval(0, 0) == (0.0, 1.0)
