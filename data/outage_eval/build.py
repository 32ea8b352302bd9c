"""Join the candidates with the team's labels into the outage evaluation set (`eval.jsonl`).

    python data/outage_eval/select_candidates.py   # candidates.jsonl (deterministic; not committed)
    python data/outage_eval/select_candidates.py --train   # train_candidates.jsonl (the training pool's)
    python data/outage_eval/build.py               # eval.jsonl from candidates.jsonl + labels/team.jsonl,
                                                   # train_pool.jsonl from train_candidates.jsonl + labels/train.jsonl

Each line of eval.jsonl: {"id", "source", "ref", "lang", "label", "service", "text"} where label is
`outage` (an outage report by GUIDE.md), `complaint` (an ordinary complaint: a complaint that is not an
outage report) or `other`, and service is the service an outage report (or a hard negative) is about:
power_gas_water, telecom, transport, payments, apps_sites_logins, or null. `lang` is the language the team
read the post in (the stratum's language unless the labeller noted another).
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(candidates: str, labels: str, target: str) -> None:
    cands = {json.loads(x)["id"]: json.loads(x) for x in (HERE / candidates).read_text(encoding="utf-8").splitlines()}
    out = []
    for line in (HERE / "labels" / labels).read_text(encoding="utf-8").splitlines():
        lab = json.loads(line)
        c = cands[lab["id"]]
        out.append({"id": c["id"], "source": c["source"], "ref": c["ref"], "lang": lab.get("lang") or c["lang"],
                    "label": lab["label"], "service": lab["service"], "text": c["text"]})
    with (HERE / target).open("w", encoding="utf-8") as fh:
        for rec in out:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"wrote {len(out)} posts to {HERE / target}")


def main() -> None:
    build("candidates.jsonl", "team.jsonl", "eval.jsonl")
    if (HERE / "train_candidates.jsonl").exists():
        build("train_candidates.jsonl", "train.jsonl", "train_pool.jsonl")


if __name__ == "__main__":
    main()
