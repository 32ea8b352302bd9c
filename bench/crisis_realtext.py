"""Real-text crisis scenarios for `make eval-crisis`: real posts scored by the real model on seasonal curves.

Texts (all from ../shared/data, none of the real-text dev set `data/realdev/pool.jsonl`):
- ordinary brand traffic: UMSAB tweets (train split; en, es, pt, de, fr, it), every sentiment;
- complaints: the customer first turns of `customer-care-unlabelled` (real tweets to 25 support accounts)
  that are not in the dev set: the 525 of the training pool (`train_pool.jsonl`), which the intent heads
  were trained on, so their complaint scores are optimistic; they also make up `COMPLAINT_SHARE` of
  ordinary traffic;
- outage reports: CrisisLex T26 "Infrastructure and utilities" tweets and HumAID (Hurricane Maria, dev
  and test splits) `infrastructure_and_utility_damage` tweets that say a service is out (`_OUTAGE_WORDS`:
  power, outage, internet, phone, network, down...): real reports, mostly about utilities, not brands.
Each text is scored once by the worker's model (`factory.build_scorer`; intents, sentiment, language) and
the scores are cached in .cache/eval_crisis/ under a fingerprint of the model files and settings, so a
rerun does not load the model. A post's text gets its post number appended for the engine's near-duplicate
rule only (the pools are smaller than a week of a busy brand; the model scored the real text).

Brands from 10 to 10,000 mentions a day follow a daily curve (quiet night, afternoon peak), quieter
weekends and day-to-day gamma noise. Injected: outage bursts (outage-pool posts over minutes to an hour,
sized to the brand) and complaint surges (extra complaints at 0.5x-2x the usual complaint rate over 2-8 h;
on a storm day the rest of the brand's traffic doubles too).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.classify.crisis import CrisisConfig, CrisisEngine
from services.classify.crisis.replay import replay_opened
from services.common.codec import pb
from services.common.timeutil import epoch, ts_from_epoch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRIAGE_SHARED_DATA", REPO.parent / "shared" / "data"))   # as services/classify/datasets
CACHE = REPO / ".cache" / "eval_crisis"
DAY = 86_400.0
WEEK_START = 1_793_577_600.0   # Monday 2026-11-02 00:00 UTC
COMPLAINT_SHARE = 0.12         # of a brand's ordinary traffic (the surge detector learns the brand's own)
UMSAB_LANGS = ("english", "spanish", "portuguese", "german", "french", "italian")
PER_LANGUAGE = 700
BRANDS = (("brand10", 10.0), ("brand100", 100.0), ("brand1k", 1000.0), ("brand10k", 10_000.0), ("airline", 500.0))
PER_DAY = dict(BRANDS)
# An airline's mentions are mostly complaints (delays, bags, rebooking); on a storm day its other traffic
# (rebooking questions, news) rises with them, so the complaints' share barely moves.
SHARE = {b: 0.6 if b == "airline" else COMPLAINT_SHARE for b in PER_DAY}
# An infrastructure tweet is an outage report when it says a service is out (not acres burned, not aid).
_OUTAGE_WORDS = re.compile(r"\b(power|outages?|electricity|blackout|no service|without (power|water|service)|"
                           r"internet|cell ?phones?|phone lines?|signal|network|offline|down)\b", re.IGNORECASE)
_DAILY_MEAN = 0.25 + 1.5 * 3.5 * math.sqrt(2 * math.pi) / 24   # mean of the daily curve below


@dataclass(frozen=True)
class Scores:
    outage: float
    complaint: float
    negative: float
    positive: float
    safety: float
    language: str


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def excluded_texts() -> set[str]:
    out: set[str] = set()
    for name in ("pool.jsonl",):
        path = REPO / "data" / "realdev" / name
        if path.exists():
            with path.open(encoding="utf-8") as fh:
                out.update(_norm(json.loads(line)["text"]) for line in fh if line.strip())
    return out


def _json_line(line: str) -> dict[str, str]:
    try:
        return dict(json.loads(line))
    except json.JSONDecodeError:   # one upstream line escapes "<" with a backslash
        return dict(json.loads(re.sub(r'\\(?![\\"/bfnrtu])', r"\\\\", line)))


def load_pools(data: Path = DATA) -> dict[str, list[str]]:
    """{"ordinary", "complaint", "outage"}: real texts, deduplicated, without the realdev pools' texts."""
    skip = excluded_texts()
    seen: set[str] = set()

    def keep(text: str) -> bool:
        k = _norm(text)
        if len(k) < 12 or k in skip or k in seen:
            return False
        seen.add(k)
        return True

    ordinary = []
    for lang in UMSAB_LANGS:
        path = data / "umsab-sentiment" / lang / "train_text.txt"
        with path.open(encoding="utf-8") as fh:
            lines = [t.strip() for t in fh]
        ordinary += [t for t in lines if t and keep(t)][:PER_LANGUAGE]
    complaint = []
    with open(data / "customer-care-unlabelled" / "customer_care_texts.jsonl", encoding="utf-8") as fh:
        records = [_json_line(line) for line in fh if line.strip()]   # not splitlines(): texts hold U+2028
    for rec in records:
        if rec.get("role") == "customer_first_turn" and keep(rec["text"]):
            complaint.append(rec["text"])
    outage = []
    for csv_path in sorted(glob.glob(str(data / "crisislex-t26" / "*.csv"))):
        with open(csv_path, encoding="utf-8", errors="replace", newline="") as fh:
            for row in csv.reader(fh):
                if len(row) >= 4 and "Infrastructure" in row[3] and _OUTAGE_WORDS.search(row[1]) and keep(row[1]):
                    outage.append(row[1])
    with open(data / "humaid-maria" / "HumAID_maria_tweets.csv", encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["class_label"] == "infrastructure_and_utility_damage" and r["split"] != "train" \
                    and _OUTAGE_WORDS.search(r["tweet_text"]) and keep(r["tweet_text"]):
                outage.append(r["tweet_text"])
    return {"ordinary": ordinary, "complaint": complaint, "outage": outage}


# What a scorer writes beside the model (per-machine runtime and precision measurements) and artefacts that
# are not scoring inputs (the parity and calibration texts): they change without changing a score.
NOT_SCORING_INPUTS = frozenset({"runtime-choices.json", "precision-choices.json", "parity_set.jsonl",
                                "calibration_set.jsonl"})


def score_fingerprint() -> str:
    """Model files and scoring settings: a score cache (this bench's, the CrisisLex streams') is valid while
    these are unchanged. The auto precision's per-machine choice is not in it (a cache made on a machine that
    chose bf16 is reused where fp32 was chosen: labels agree >= 99.7%, `make parity`)."""
    from services.classify.config import ClassifySettings
    from services.classify.encoder.loader import ensure_default_model
    from services.classify.heads import ARTIFACTS_DIR

    s = ClassifySettings()
    h = hashlib.sha256(f"{s.model}|{s.heads_dir}|{s.adapter_dir}|{s.precision}|{s.max_tokens}".encode())
    for p in sorted(ARTIFACTS_DIR.rglob("*")):
        if p.is_file() and p.name not in NOT_SCORING_INPUTS:
            h.update(p.name.encode() + hashlib.sha256(p.read_bytes()).digest())
    model = Path(s.model) if s.model else Path(ensure_default_model())
    for p in sorted(model.rglob("*")) if model.is_dir() else []:
        if p.is_file() and p.name not in NOT_SCORING_INPUTS:
            h.update(f"{p.relative_to(model)}|{p.stat().st_size}|{int(p.stat().st_mtime)}".encode())
    return h.hexdigest()[:20]


def score_pools(pools: dict[str, list[str]], log: Callable[[str], None] = print) -> dict[str, list[Scores]]:
    """Every pool text through the real model once; cached scores on later runs."""
    path = CACHE / f"scores-{score_fingerprint()}.json"
    cache: dict[str, list[object]] = json.loads(path.read_text()) if path.exists() else {}
    texts = [t for pool in pools.values() for t in pool]
    todo = list(dict.fromkeys(t for t in texts if hashlib.sha1(t.encode()).hexdigest() not in cache))
    if todo:
        from services.classify.config import ClassifySettings
        from services.classify.factory import build_scorer

        started = time.perf_counter()
        scorer = build_scorer(ClassifySettings())
        for k in range(0, len(todo), 64):
            chunk = todo[k:k + 64]
            for text, sc in zip(chunk, scorer.score_texts(chunk), strict=True):
                cache[hashlib.sha1(text.encode()).hexdigest()] = [
                    round(sc.intents.get("outage_report", 0.0), 4), round(sc.intents.get("complaint", 0.0), 4),
                    round(sc.sentiment.get("negative", 0.0), 4), round(sc.sentiment.get("positive", 0.0), 4),
                    round(sc.intents.get("safety_or_legal_threat", 0.0), 4), sc.language]
        CACHE.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache))
        log(f"scored {len(todo)} texts with {scorer.model_version} in {time.perf_counter() - started:.0f} s "
            f"(cached in {path.relative_to(REPO)})")

    def scores(t: str) -> Scores:
        v = cache[hashlib.sha1(t.encode()).hexdigest()]
        return Scores(float(v[0]), float(v[1]), float(v[2]), float(v[3]), float(v[4]), str(v[5]))  # type: ignore[arg-type]

    return {name: [scores(t) for t in pool] for name, pool in pools.items()}


@dataclass
class Injection:
    name: str
    brand: str
    kind: int              # expected incident kind
    onset: float
    end: float
    detail: str
    rest: float = 1.0      # a surge's multiplier of the brand's other traffic (a storm day: > 1)
    first: float = 0.0     # first injected post (set when generated)


@dataclass
class RealStream:
    """ScoredMentions with the model's scores of real texts; `events` sorted by time before replay."""

    texts: dict[str, list[str]]
    scores: dict[str, list[Scores]]
    rng: random.Random
    events: list[tuple[float, int, pb.ScoredMention]] = field(default_factory=list)
    seq: int = 0

    def post(self, t: float, brand: str, pool: str) -> None:
        i = self.rng.randrange(len(self.texts[pool]))
        s = self.scores[pool][i]
        self.seq += 1
        sm = pb.ScoredMention(language=s.language)
        m = sm.mention
        m.source = pb.SOURCE_X
        m.external_id = f"{brand}-{self.seq}"
        m.mention_id = f"x:{m.external_id}"
        m.text = f"{self.texts[pool][i]} {self.seq}"
        m.brands.append(brand)
        m.author.follower_count = int(self.rng.lognormvariate(5.5, 1.8))
        m.created_at.CopyFrom(ts_from_epoch(t - self.rng.uniform(1, 20)))
        m.received_at.CopyFrom(ts_from_epoch(t))
        sm.intents["outage_report"] = s.outage
        sm.intents["complaint"] = s.complaint
        sm.intents["safety_or_legal_threat"] = s.safety
        sm.sentiment.negative, sm.sentiment.positive = s.negative, s.positive
        self.events.append((t, self.seq, sm))


def rate_per_minute(per_day: float, t: float, day_noise: float) -> float:
    hour = (t % DAY) / 3600
    daily = 0.25 + 1.5 * math.exp(-((hour - 14.0) ** 2) / (2 * 3.5 ** 2))
    weekly = 0.7 if time.gmtime(t).tm_wday >= 5 else 1.0
    return per_day / 1440 / _DAILY_MEAN * daily * weekly * day_noise


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 30:
        return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def build_stream(texts: dict[str, list[str]], scores: dict[str, list[Scores]], days: int, seed: int,
                 injections: list[Injection], stream: str = "") -> RealStream:
    # One random sequence per stream and brand: adding a brand or an injection does not reshuffle the
    # others, and each stream's calm days are their own draw.
    rngs = {b: random.Random(f"{seed}:{stream}:{b}") for b in PER_DAY}
    st = RealStream(texts, scores, random.Random(f"{seed}:{stream}"))
    noise = {(b, d): rngs[b].gammavariate(20, 1 / 20) for b in PER_DAY for d in range(days)}
    for minute in range(days * 1440):
        t0 = WEEK_START + minute * 60
        for brand, per_day in BRANDS:
            rng = rngs[brand]
            lam = rate_per_minute(per_day, t0, noise[(brand, minute // 1440)])
            for _ in range(_poisson(rng, lam)):
                st.post(t0 + rng.random() * 60, brand, "complaint" if rng.random() < SHARE[brand] else "ordinary")
    for inj in injections:
        per_day, share, rng = PER_DAY[inj.brand], SHARE[inj.brand], rngs[inj.brand]
        before = len(st.events)
        if inj.kind == pb.OUTAGE_CLUSTER:
            n = int(inj.detail.split()[0])
            for _ in range(n):
                st.post(rng.uniform(inj.onset, inj.end), inj.brand, "outage")
        else:   # complaint surge: extra complaints at (factor - 1) x the usual complaint rate (and, on a
            # storm day, extra ordinary posts at (rest - 1) x the usual rate of the rest)
            factor = float(inj.detail.split("x")[0])
            extra = {"complaint": (factor - 1) * share}
            if inj.rest > 1:   # only then: an empty draw would still move the stream's random sequence
                extra["ordinary"] = (inj.rest - 1) * (1 - share)
            minute = int(inj.onset // 60)
            while minute * 60 < inj.end:
                t0 = minute * 60.0
                for pool, part in extra.items():
                    for _ in range(_poisson(rng, part * rate_per_minute(per_day, t0, 1.0))):
                        st.post(t0 + rng.random() * 60, inj.brand, pool)
                minute += 1
        inj.first = min((e[0] for e in st.events[before:]), default=inj.onset)
    st.events.sort(key=lambda e: (e[0], e[1]))
    return st


def at(day: int, hour: float) -> float:
    return WEEK_START + day * DAY + hour * 3600


def streams() -> list[tuple[str, list[Injection]]]:
    """The three streams of a run: a calm week, outage bursts, complaint surges (one brand each per day)."""
    o, s = pb.OUTAGE_CLUSTER, pb.COMPLAINT_SURGE
    return [
        ("calm", []),
        ("outages", [
            Injection("outage 8 in 5 min", "brand10", o, at(2, 10), at(2, 10) + 300, "8 reports / 5 min"),
            Injection("outage 12 in 5 min", "brand100", o, at(3, 11), at(3, 11) + 300, "12 reports / 5 min"),
            Injection("outage 30 in 10 min", "brand1k", o, at(2, 15), at(2, 15) + 600, "30 reports / 10 min"),
            Injection("outage 150 in 20 min", "brand10k", o, at(3, 16), at(3, 16) + 1200, "150 reports / 20 min"),
            Injection("outage 12 in 2 min", "brand10k", o, at(4, 9), at(4, 9) + 120, "12 reports / 2 min"),
            Injection("slow outage 30 in 60 min", "brand1k", o, at(4, 19), at(4, 19) + 3600,
                      "30 reports / 60 min"),
        ]),
        ("surges", [
            Injection("surge 2x 4 h", "brand100", s, at(3, 13), at(3, 17), "2x complaints / 4 h"),
            Injection("surge 2x 4 h", "brand1k", s, at(3, 13), at(3, 17), "2x complaints / 4 h"),
            Injection("surge 2x 4 h", "brand10k", s, at(4, 13), at(4, 17), "2x complaints / 4 h"),
            Injection("surge 3x 8 h", "brand100", s, at(5, 9), at(5, 17), "3x complaints / 8 h"),
            Injection("surge 1.5x 2 h", "brand10k", s, at(2, 14), at(2, 16), "1.5x complaints / 2 h"),
            Injection("storm 2.4x, rest 2x, 8 h", "brand1k", s, at(5, 9), at(5, 17),
                      "2.4x complaints, 2x rest / 8 h", rest=2.0),
            Injection("airline storm", "airline", s, at(3, 8), at(3, 18), "2.4x complaints, 2x rest / 10 h",
                      rest=2.0),
            Injection("airline storm", "airline", s, at(6, 8), at(6, 18), "2.3x complaints, 1.5x rest / 10 h",
                      rest=1.5),
        ]),
    ]


def replay(st: RealStream, config: CrisisConfig, tick: float = 10.0) -> list[pb.Incident]:
    """The stream through the detectors as `triage backtest` and the worker run them
    (services/classify/crisis/replay.py)."""
    return replay_opened((sm for _, _, sm in st.events), CrisisEngine(config), tick)[0]


@dataclass
class Outcome:
    """One injection of one seed's run."""

    stream: str
    inj: Injection
    delay: float | None
    ok: bool
    target: str
    kinds: str


def simulate(texts: dict[str, list[str]], scores: dict[str, list[Scores]], days: int, seed: int
             ) -> tuple[list[Outcome], dict[str, int], dict[str, int], list[str]]:
    """Run every stream of one seed: (outcomes per injection, false incidents per brand, calm brand-days per
    brand, a line per false incident)."""
    false_by_brand: dict[str, int] = {b: 0 for b, _ in BRANDS}
    brand_days: dict[str, int] = {b: 0 for b, _ in BRANDS}
    outcomes: list[Outcome] = []
    false_lines = []
    for name, injections in streams():
        st = build_stream(texts, scores, days, seed, injections, stream=name)
        opened = replay(st, CrisisConfig())
        used: set[str] = set()
        for inj in injections:
            hits = [i for i in opened if i.brand == inj.brand and inj.first - 300 <= epoch(i.opened_at)
                    <= inj.end + 2 * 3600]
            right = [i for i in hits if i.kind == inj.kind]
            used |= {i.id for i in hits}
            delay = min(epoch(i.opened_at) for i in right) - inj.first if right else None
            if inj.kind == pb.OUTAGE_CLUSTER:
                target = "<= 5 min"
                ok = delay is not None and delay <= 300
            else:
                factor = float(inj.detail.split("x")[0])
                target = "<= 2 h" if factor >= 2 else "(best effort)"
                ok = (delay is not None and delay <= 7200) if factor >= 2 else True
            kinds = ", ".join(sorted({pb.IncidentKind.Name(i.kind) for i in hits})) or "-"
            outcomes.append(Outcome(name, inj, delay, ok, target, kinds))
        inj_days = {(i.brand, int((i.first - WEEK_START) // DAY)) for i in injections}
        for b, _ in BRANDS:
            brand_days[b] += sum(1 for d in range(days) if (b, d) not in inj_days)
        for i in opened:
            if i.id not in used:
                false_by_brand[i.brand] += 1
                false_lines.append(f"seed {seed} {name}: {i.id} {'; '.join(i.reasons)[:200]}")
    return outcomes, false_by_brand, brand_days, false_lines


def _pools(out: Callable[[str], None], days: int, seeds: str) -> tuple[dict[str, list[str]], dict[str, list[Scores]]]:
    texts = load_pools()
    scores = score_pools(texts, log=lambda s: print(s, file=sys.stderr))
    flagged = {k: sum(1 for s in v if (s.outage if k == "outage" else s.complaint) >= 0.5) for k, v in scores.items()}
    out(f"\n# Real text: real posts scored by the model, {days}-day seasonal streams, {seeds}\n")
    out(f"Pools (../shared/data, none of the dev set data/realdev/pool.jsonl): "
        f"ordinary {len(texts['ordinary'])} UMSAB tweets ({flagged['ordinary']} scored complaint >= 0.5), "
        f"complaints {len(texts['complaint'])} customer-care first turns ({flagged['complaint']} complaint >= 0.5), "
        f"outage {len(texts['outage'])} CrisisLex/HumAID infrastructure tweets "
        f"({flagged['outage']} outage_report >= 0.5). Brands: {', '.join(f'{b} {d:g}/day' for b, d in BRANDS)}.\n")
    return texts, scores


def _false_table(out: Callable[[str], None], false_by_brand: dict[str, int], brand_days: dict[str, int]) -> None:
    out("\n| brand | mentions/day | calm brand-days | false incidents | false / brand-day |")
    out("|---|---|---|---|---|")
    for b, per_day in BRANDS:
        out(f"| {b} | {per_day:g} | {brand_days[b]} | {false_by_brand[b]} | {false_by_brand[b] / brand_days[b]:.2f} |")


def run(days: int = 7, seed: int = 7, out: Callable[[str], None] = print) -> bool:
    """Print the real-text tables; True when every outage burst and every 2x+ surge was found in time and
    calm brand-days opened nothing."""
    started = time.perf_counter()
    texts, scores = _pools(out, days, f"seed {seed}")
    out("| stream | injected | brand (/day) | expected | detected | kind opened | delay | target |")
    out("|---|---|---|---|---|---|---|---|")
    outcomes, false_by_brand, brand_days, false_lines = simulate(texts, scores, days, seed)
    for o in outcomes:
        out(f"| {o.stream} | {o.inj.detail} | {o.inj.brand} ({PER_DAY[o.inj.brand]:g}) "
            f"| {pb.IncidentKind.Name(o.inj.kind)} | {'yes' if o.delay is not None else 'no'} | {o.kinds} "
            f"| {'' if o.delay is None else _dur(o.delay)} | {o.target}: {'met' if o.ok else 'MISSED'} |")
    _false_table(out, false_by_brand, brand_days)
    all_ok = all(o.ok for o in outcomes) and sum(false_by_brand.values()) == 0
    for line in false_lines:
        print(f"  false: {line}", file=sys.stderr)
    out(f"\nTargets: every outage burst within 5 min, every 2x+ complaint surge within 2 h, 0 false incidents. "
        f"All met: {'yes' if all_ok else 'NO'}. ({time.perf_counter() - started:.1f} s wall)")
    return all_ok


def run_seeds(seeds: list[int], days: int = 7, out: Callable[[str], None] = print) -> bool:
    """The same streams drawn with several seeds: per injection, how often it was found and in time, and the
    delays; false incidents summed over the seeds. One seed's week is a small sample of a detector's
    behaviour; this is the table to compare two detectors on."""
    started = time.perf_counter()
    texts, scores = _pools(out, days, f"seeds {', '.join(map(str, seeds))}")
    runs = [simulate(texts, scores, days, seed) for seed in seeds]
    out("| stream | injected | brand (/day) | expected | found | in target | delays (per seed) |")
    out("|---|---|---|---|---|---|---|")
    for k, o in enumerate(runs[0][0]):
        per_seed = [r[0][k] for r in runs]
        found = sum(x.delay is not None for x in per_seed)
        in_target = sum(x.ok for x in per_seed)
        delays = ", ".join("-" if x.delay is None else _dur(x.delay) for x in per_seed)
        out(f"| {o.stream} | {o.inj.detail} | {o.inj.brand} ({PER_DAY[o.inj.brand]:g}) "
            f"| {pb.IncidentKind.Name(o.inj.kind)} | {found}/{len(seeds)} | {in_target}/{len(seeds)} "
            f"({o.target}) | {delays} |")
    false_by_brand = {b: sum(r[1][b] for r in runs) for b in PER_DAY}
    brand_days = {b: sum(r[2][b] for r in runs) for b in PER_DAY}
    _false_table(out, false_by_brand, brand_days)
    for r in runs:
        for line in r[3]:
            print(f"  false: {line}", file=sys.stderr)
    all_ok = all(o.ok for r in runs for o in r[0]) and sum(false_by_brand.values()) == 0
    out(f"\nAll targets met on every seed: {'yes' if all_ok else 'NO'}. ({time.perf_counter() - started:.1f} s wall)")
    return all_ok


def _dur(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"

