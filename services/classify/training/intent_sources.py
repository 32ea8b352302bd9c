"""Real labelled data for the intent head: the shared sets' own labels mapped to the triage intents.

Each shared data set labels something a little different from our intents, so each mapping says
only what the source's label really tells: an intent is 1 (present), 0 (absent) or missing (the
source says nothing about it; the training loss masks it out). The mapping is the table below,
applied to every record of a source; no example is picked by hand.

| source | label | -> intents |
|---|---|---|
| tweet-act (en tweets) | QUE | question=1 |
| | THT (threat) | safety_or_legal_threat=1, question=0 |
| | EXP, STM, SUG, OTH | question=0, safety_or_legal_threat=0 |
| | REQ | safety_or_legal_threat=0 (a request may or may not be a question) |
| banking77 (en queries; all praise=0, spam=0) | card/payment not working now (BANKING_OUTAGE) | outage=1, complaint=1 |
| | other failures (BANKING_FAILURE: fees, rates, double charges, missing money) | complaint=1, outage=0 |
| | fraud categories (BANKING_FRAUD: compromised card, lost/stolen, not recognised) | safety=1, complaint=1, outage=0 |
| | every other category (how-to and information queries) | complaint=0, safety=0, outage=0 |
| disaster-response (messages) | electricity=1 | outage_report=1 |
| | related=0 | outage_report=0, safety_or_legal_threat=0 |
| | related=1, electricity=0 (infrastructure_related etc.) | not used (team read 90 such: 3 outages) |
| humaid-maria (train split) | infrastructure_and_utility_damage | outage_report=1 |
| | sympathy, not_humanitarian, rescue/volunteering/donation, caution_and_advice (forecasts) | outage_report=0 |
| crisislex-t26 (training events: not the evaluation events) | Infrastructure and utilities | outage_report=1 |
| | Sympathy and support, Donations and volunteering, Not applicable | outage_report=0 |
| tweeteval emotion (train) | anger, joy, optimism, sadness | outage_report=0, spam=0 (everyday emotion is no outage) |
| tweeteval offensive (train) | offensive / not | spam=0, outage_report=0 |
| data/realdev train pool (labelled by the team, all intents) | the labels as given | every intent 0/1, weighted |
| data/outage_eval/train_pool.jsonl (team) | outage / complaint / other | (outage, complaint) 1,1 / 0,1 / 0,0 |
| data/outage_eval/written_train.jsonl (written) | the intents as written | every intent 0/1, weighted |
| nlu++ banking | not used | its not-working intent mixes failures with missing balances, pending transfers |

BANKING_OUTAGE: card, contactless or virtual card not working; declined card payment, cash withdrawal or
transfer; failed transfer; failed top-up ("payments/cards failing" in the definition).

The team-labelled training pool is the only real brand-directed text with every intent labelled (its
customer-care posts are where login, app and server outage reports live), and about 1,200 posts
among 14,000 mapped ones; its examples count SOURCE_WEIGHTS times in the head's loss so that the
mapped disaster and banking sets do not set the outage boundary for brand traffic alone. The
synthetic set is weighted up too: it is the only outage text in most languages, and without it
the English pool pulls non-English outage reports (Greek, Persian) below the paging priority.

The mapped disaster labels are noisy for outages: of the HumAID `infrastructure_and_utility_damage` posts
the team read for the evaluation set, 40 of 220 are outage reports by the guide (the rest is damage
without a cut service, restorations, appeals); hence the team-labelled training pool (crisis posts read
by the guide, which take precedence over the mapped label of the same post) and the written forms.

Texts of the real-text dev set (`data/realdev/pool.jsonl`) are removed from every source, so the
dev set stays unseen. The posts of the outage evaluation set (`data/outage_eval/eval.jsonl`) are removed
from every source too, compared by ``loose_key`` (so a retweet or a copy with another link is the same
post), and ``check_disjoint_from_outage_eval`` makes training fail if one got through; whole CrisisLex
evaluation events (CRISISLEX_EVAL_EVENTS: the synthetic set's dev events and the Italian, Costa Rican,
Guatemalan, Brazilian and Lac-Mégantic events) are never trained on.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from services.classify.priority import INTENTS
from services.classify.training.datasets import INTENTS_DIR, REPO_ROOT, SHARED_DATA
from services.common.errors import TriageError

REALDEV_DIR = REPO_ROOT / "data" / "realdev"
OUTAGE_EVAL_DIR = REPO_ROOT / "data" / "outage_eval"
CRISISLEX_DEV_EVENTS = frozenset({"2013_Alberta_floods", "2012_Typhoon_Pablo", "2013_NY_train_crash",
                                  "2013_Singapore_haze"})
# Whole events the team-labelled outage evaluation set (data/outage_eval) is drawn from: never trained on.
# The synthetic set's dev events plus one Italian, two Spanish, one Portuguese and one French/English event.
CRISISLEX_EVAL_EVENTS = CRISISLEX_DEV_EVENTS | frozenset({"2012_Italy_earthquakes", "2012_Costa_Rica_earthquake",
                                                          "2013_Brazil_nightclub_fire", "2013_Lac_Megantic_train_crash",
                                                          "2012_Guatemala_earthquake"})

# A card or payment that does not work now is an outage report by the definition ("payments/cards
# failing"); the other failures are complaints about a service that works (fees, rates, missing money).
BANKING_OUTAGE = frozenset({
    "card_not_working", "contactless_not_working", "virtual_card_not_working", "declined_card_payment",
    "declined_transfer", "declined_cash_withdrawal", "failed_transfer", "top_up_failed",
})
BANKING_FAILURE = frozenset({
    "top_up_reverted", "transfer_not_received_by_recipient", "wrong_amount_of_cash_received",
    "card_payment_wrong_exchange_rate",
    "wrong_exchange_rate_for_cash_withdrawal", "extra_charge_on_statement", "transaction_charged_twice",
    "card_swallowed", "Refund_not_showing_up", "balance_not_updated_after_bank_transfer",
    "balance_not_updated_after_cheque_or_cash_deposit", "pin_blocked", "unable_to_verify_identity",
    "reverted_card_payment?", "beneficiary_not_allowed",
})
BANKING_FRAUD = frozenset({
    "compromised_card", "lost_or_stolen_card", "lost_or_stolen_phone", "card_payment_not_recognised",
    "cash_withdrawal_not_recognised", "direct_debit_payment_not_recognised",
})


@dataclass
class IntentExample:
    """One text with partial intent labels: ``labels[intent]`` is 0 or 1; a missing intent is unknown."""

    text: str
    lang: str
    source: str
    labels: dict[str, int] = field(default_factory=dict)


def normalise(text: str) -> str:
    return " ".join(text.casefold().split())


_URL = re.compile(r"https?://\S+|www\.\S+")
_HANDLE = re.compile(r"@\w+")


def loose_key(text: str) -> str:
    """A looser identity than ``normalise``: lowercased, URLs, @handles and a leading RT dropped, letters and
    digits only. A retweet or a copy with another link has the same key as its original."""
    t = _HANDLE.sub(" ", _URL.sub(" ", text.casefold()))
    t = re.sub(r"^(\W*rt\b)+", " ", t)
    return "".join(ch for ch in t if ch.isalnum())


def outage_eval_keys(root: Path = OUTAGE_EVAL_DIR) -> set[str]:
    """Loose keys of the team-labelled outage evaluation set (data/outage_eval/eval.jsonl)."""
    path = root / "eval.jsonl"
    if not path.exists():
        return set()
    keys = {loose_key(json.loads(x)["text"]) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()}
    keys.discard("")
    return keys


class EvalLeakError(TriageError, ValueError):
    """A training text is a post of the outage evaluation set."""


def check_disjoint_from_outage_eval(texts: Iterable[str], keys: set[str] | None = None) -> None:
    """Raise EvalLeakError when any training text is (a copy of) a post of the outage evaluation set."""
    keys = outage_eval_keys() if keys is None else keys
    leaked = [t for t in texts if loose_key(t) in keys]
    if leaked:
        raise EvalLeakError(f"{len(leaked)} training texts are in data/outage_eval/eval.jsonl, e.g. {leaked[0][:80]!r}")


def _rank(text: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}|{text}".encode("utf-8", "surrogatepass")).hexdigest()


def _sample(items: list[IntentExample], n: int, salt: str) -> list[IntentExample]:
    return sorted(items, key=lambda e: _rank(e.text, salt))[:n] if len(items) > n else items


def dev_texts(root: Path = REALDEV_DIR) -> set[str]:
    path = root / "pool.jsonl"
    if not path.exists():
        return set()
    return {normalise(json.loads(x)["text"]) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()}


def tweet_act(root: Path = SHARED_DATA) -> list[IntentExample]:
    out = []
    with (root / "tweet-act" / "TWEET_DATA.csv").open(encoding="utf-8", newline="") as fh:
        for text, act in csv.reader(fh):
            if act == "QUE":
                labels = {"question": 1}
            elif act == "THT":
                labels = {"safety_or_legal_threat": 1, "question": 0}
            elif act == "REQ":
                labels = {"safety_or_legal_threat": 0}
            else:
                labels = {"question": 0, "safety_or_legal_threat": 0}
            out.append(IntentExample(text, "en", f"tweet-act:{act}", labels))
    return out


def banking77(root: Path = SHARED_DATA) -> list[IntentExample]:
    out = []
    with (root / "banking77-nlupp" / "banking77" / "train.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            cat = row["category"]
            labels = {"outage_report": 0, "praise": 0, "spam": 0}
            if cat in BANKING_FRAUD:
                labels |= {"safety_or_legal_threat": 1, "complaint": 1}
            elif cat in BANKING_OUTAGE:
                labels |= {"outage_report": 1, "complaint": 1, "safety_or_legal_threat": 0}
            elif cat in BANKING_FAILURE:
                labels |= {"complaint": 1, "safety_or_legal_threat": 0}
            else:
                labels |= {"complaint": 0, "safety_or_legal_threat": 0}
            out.append(IntentExample(row["text"], "en", f"banking77:{cat}", labels))
    return out


def disaster_response(root: Path = SHARED_DATA) -> list[IntentExample]:
    out = []
    for name in ("disaster_response_validation.csv", "disaster_response_test.csv"):
        with (root / "disaster-response" / name).open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                if row["electricity"] == "1":
                    labels = {"outage_report": 1}
                elif row["related"] == "0":
                    labels = {"outage_report": 0, "safety_or_legal_threat": 0}
                else:
                    continue
                out.append(IntentExample(row["message"], "en", f"disaster-response:{row['genre']}", labels))
    return out


# caution_and_advice: warnings and forecasts ("prepare for outages"), which the definition excludes.
HUMAID_NEGATIVE = frozenset({"sympathy_and_support", "not_humanitarian", "rescue_volunteering_or_donation_effort",
                             "caution_and_advice"})


def humaid(root: Path = SHARED_DATA) -> list[IntentExample]:
    out = []
    with (root / "humaid-maria" / "HumAID_maria_tweets.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["split"] != "train":
                continue
            label = row["class_label"]
            if label == "infrastructure_and_utility_damage":
                out.append(IntentExample(row["tweet_text"], "en", f"humaid:{label}", {"outage_report": 1}))
            elif label in HUMAID_NEGATIVE:
                out.append(IntentExample(row["tweet_text"], "en", f"humaid:{label}", {"outage_report": 0}))
    return out


CRISISLEX_NEGATIVE = frozenset({"Sympathy and support", "Donations and volunteering", "Not applicable"})


def crisislex(root: Path = SHARED_DATA) -> list[IntentExample]:
    out = []
    for f in sorted(glob.glob(str(root / "crisislex-t26" / "*.csv"))):
        event = Path(f).name.replace("-tweets_labeled.csv", "")
        if event in CRISISLEX_EVAL_EVENTS:
            continue
        with open(f, encoding="utf-8", errors="replace", newline="") as fh:
            for row in csv.DictReader(fh):
                kind = row[" Information Type"]
                if kind == "Infrastructure and utilities":
                    labels = {"outage_report": 1}
                elif kind in CRISISLEX_NEGATIVE:
                    labels = {"outage_report": 0}
                else:
                    continue
                out.append(IntentExample(row[" Tweet Text"], "en", f"crisislex:{event}", labels))
    return out


def tweeteval(root: Path = SHARED_DATA) -> list[IntentExample]:
    out = []
    for task in ("emotion", "offensive"):
        texts = (root / "tweeteval" / task / "train_text.txt").read_text(encoding="utf-8").splitlines()
        out += [IntentExample(t, "en", f"tweeteval:{task}", {"outage_report": 0, "spam": 0}) for t in texts if t]
    return out


def realdev_train(root: Path = REALDEV_DIR) -> list[IntentExample]:
    """The team-labelled training pool (all intents known); empty until its labels exist."""
    pool_path = root / "train_pool.jsonl"
    if not pool_path.exists():
        return []
    pool = {r["id"]: r for r in (json.loads(x) for x in pool_path.read_text(encoding="utf-8").splitlines() if x)}
    out = []
    for path in sorted((root / "labels").glob("train.*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            item = pool[rec["id"]]
            labels = {name: int(name in rec["intents"]) for name in INTENTS}
            labels["complaint"] |= labels["outage_report"]  # every outage report is a complaint
            out.append(IntentExample(item["text"], item["lang"], f"realdev-train:{item['source']}", labels))
    return out


def outage_train(root: Path = OUTAGE_EVAL_DIR) -> list[IntentExample]:
    """The team-labelled outage training pool (data/outage_eval/train_pool.jsonl, disjoint from eval.jsonl).

    Real crisis and brand posts read by the team under data/realdev/GUIDE.md: an outage report is
    outage_report=1 and complaint=1; an ordinary complaint complaint=1, outage_report=0; anything else (news,
    damage without a cut service, restorations, forecasts, chatter) outage_report=0 and complaint=0. The
    other intents were not judged (missing).
    """
    path = root / "train_pool.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        labels = {"outage_report": int(rec["label"] == "outage"),
                  "complaint": int(rec["label"] in ("outage", "complaint"))}
        out.append(IntentExample(rec["text"], rec["lang"], f"outage-train:{rec['source']}", labels))
    return out


def outage_written(root: Path = OUTAGE_EVAL_DIR) -> list[IntentExample]:
    """Outage reports and hard negatives written by the team (data/outage_eval/written_train.jsonl): the forms
    the labelling guide lists per service type (first-person, neighbourhood, duration, intermittent, question)
    and its hard negatives (delays, fees, rude staff, restorations, forecasts, a single account's trouble), in
    the supported languages. Every intent is labelled; every outage report is also a complaint."""
    path = root / "written_train.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            labels = {name: int(name in rec["intents"]) for name in INTENTS}
            labels["complaint"] |= labels["outage_report"]  # every outage report is a complaint
            out.append(IntentExample(rec["text"], rec["lang"], "outage-written:written", labels))
    return out


def synthetic(split: str = "train", root: Path = INTENTS_DIR) -> list[IntentExample]:
    """The written multilingual set (data/intents): every intent known.

    The set was written when a calm outage report was not a complaint; under the definitions now in
    force (docs/intents.md) every outage report is also a complaint, so that label is added here.
    """
    out = []
    for line in (root / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            labels = {name: int(name in rec["intents"]) for name in INTENTS}
            if labels["outage_report"]:
                labels["complaint"] = 1
            out.append(IntentExample(rec["text"], rec["lang"], f"intents:{rec['source']}", labels))
    return out


# Per-source caps keep any one mapped set from drowning the others (and bound training time).
SOURCE_CAPS: dict[str, int] = {
    "tweet-act": 3000, "banking77": 1500, "disaster-response": 1200, "humaid": 1500, "crisislex": 2000,
    "tweeteval": 1500,
}


# Loss weight per example of a source family (1 when not listed): see the note under the table above.
SOURCE_WEIGHTS: dict[str, float] = {"realdev-train": 4.0, "intents": 5.0, "outage-train": 4.0, "outage-written": 5.0}


def example_weights(examples: Iterable[IntentExample]) -> list[float]:
    """Each example's weight in the intent head's loss, from its source family (SOURCE_WEIGHTS)."""
    return [SOURCE_WEIGHTS.get(ex.source.split(":")[0], 1.0) for ex in examples]


def training_examples(shared: Path = SHARED_DATA, team_pool: bool = True) -> list[IntentExample]:
    """Every intent training example: synthetic + mapped real sets (+ the team-labelled pool), minus dev texts.

    The encoder fine-tune uses ``team_pool=False`` (it learns from the shared sets only, so the adapter
    does not change as the team labels more); the serving heads use everything.
    """
    loaders = {"tweet-act": tweet_act, "banking77": banking77, "disaster-response": disaster_response,
               "humaid": humaid, "crisislex": crisislex, "tweeteval": tweeteval}
    out = synthetic("train") + (realdev_train() + outage_train() + outage_written() if team_pool else [])
    for name, load in loaders.items():
        out += _sample(load(shared), SOURCE_CAPS[name], name)
    held_out = dev_texts()
    eval_keys = outage_eval_keys()
    seen: set[str] = set()
    kept = []
    for ex in out:
        key = normalise(ex.text)
        if not key or key in held_out or key in seen or loose_key(ex.text) in eval_keys:
            continue
        seen.add(key)
        kept.append(ex)
    check_disjoint_from_outage_eval([ex.text for ex in kept], eval_keys)
    return kept


def summary(examples: Iterable[IntentExample]) -> dict[str, dict[str, int]]:
    """Counts per source family: records and, per intent, how many are labelled 1 / 0."""
    table: dict[str, dict[str, int]] = {}
    for ex in examples:
        row = table.setdefault(ex.source.split(":")[0], {"records": 0})
        row["records"] += 1
        for name, v in ex.labels.items():
            key = f"{name}={v}"
            row[key] = row.get(key, 0) + 1
    return table
