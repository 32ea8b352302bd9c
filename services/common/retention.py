"""Where a post lives, for how long, and what a deletion does there: the table in docs/operating.md, generated
from the topic layout (`topics.py`) plus the state stores and views that are not topics.

    python -m services.common.retention          # print the table
    python -m services.common.retention --write  # rewrite it in docs/operating.md

tests/unit/test_retention_table.py fails when the document and the layout drift, and when a topic has no
entry in `WHY` (a new topic must say why it keeps what it keeps).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from services.common import topics

DOC = Path(__file__).resolve().parents[2] / "docs" / "operating.md"
START, END = "<!-- retention-table:start (python -m services.common.retention --write) -->", \
    "<!-- retention-table:end -->"

# topic -> (holds post text or ids?, why this retention, what a deletion / erasure does there)
WHY: dict[str, tuple[str, str, str]] = {
    topics.MENTIONS_RAW: ("text, author, raw payload", "the replay window", "MentionDeleted travels here, keyed "
                          "like the mention; the post itself expires by retention"),
    topics.MENTIONS_SCORED: ("text, author", "the replay window", "classify forwards the deletion here; the post "
                             "expires by retention"),
    topics.INCIDENTS: ("sample ids and URLs", "the latest state of each incident; a resolved one keeps its samples "
                       "for `TRIAGE_INCIDENT_SAMPLE_RETENTION_SECONDS` (14 d), then is re-published without them",
                       "re-published without the sample (classify for open incidents, `triage forget` for any)"),
    topics.RESPONSES: ("mention ids", "the longest SLA plus late reports", "expires by retention"),
    topics.ROUTER_PAGE_REQUESTS: ("text (group samples)", "consumed within seconds", "a copy of the deletion on "
                                  "every partition: the replica holding a group showing it drops the sample; the "
                                  "requests expire by retention"),
    topics.CLASSIFY_CRISIS_INPUT: ("text, author", "consumed within seconds", "a copy of the deletion on every "
                                   "partition: the brand's owner drops the sample from its open incidents; the "
                                   "copies expire by retention"),
    topics.PAGES: ("no post text", "audit trail for post-incident reviews", "nothing to remove"),
    topics.FEEDBACK: ("text, mention id", "a labelled dev set", "the console stops showing it; expires by "
                      "retention (`triage forget` lists it)"),
    topics.CLAIMS: ("mention ids, responder names", "who works on which item (a claim lives minutes)",
                    "`triage forget` tombstones the mention's key"),
    topics.PRESENCE: ("responder names, mention and incident ids", "who is looking at what now (seconds)",
                      "expires by retention (10 min)"),
    topics.TRIAGE_DECISIONS: ("group keys, responder names", "the latest decision of each held incident group",
                              "nothing to remove"),
    topics.SILENCES: ("no post text", "the latest version of each silence", "nothing to remove"),
    topics.MENTIONS_DLQ: ("original bytes", "time to notice and replay", "expires by retention (`triage forget` "
                          "lists it)"),
    topics.INGEST_CHECKPOINTS: ("no post text", "connector cursors", "nothing to remove"),
    topics.ERASURES: ("no personal data (digests)", "the proof that an erasure was done", "kept"),
    "triage-router-state-changelog": ("text (SLA clocks, group samples); deleted ids and handles",
                                      "live groups and SLA clocks; the router's deletion memory (`deleted:` "
                                      "keys, tombstoned when they leave the window)",
                                      "`sla:<mention id>` tombstoned (router, `triage forget`); groups re-written "
                                      "without the sample; the deletion is remembered here"),
    "triage-classify-deletions": ("deleted ids and handles", "classify's deletion memory survives a restart "
                                  "(tombstoned when a key leaves the window; never older than `mentions.raw`)",
                                  "is the deletion"),
    "triage-classify-__assignor-__leader": ("nothing", "Faust's assignment", "nothing to remove"),
    "triage-router-__assignor-__leader": ("nothing", "Faust's assignment", "nothing to remove"),
    "triage-classify-crisis-state-changelog": ("sample ids and URLs", "crisis detection's state per brand",
                                               "open incidents lose the sample, checkpointed at once"),
    topics.QUEUE_PREFIX + "<name>": ("text, author", "an inbox nobody drained over a holiday survives",
                                     "a MentionDeleted notice: inbox apps and the console remove the item"),
}


@dataclass(frozen=True)
class Place:
    """A place that is not a topic: a process's memory, rebuilt or bounded."""

    name: str
    kind: str
    retention: str
    holds: str
    why: str
    deletion: str


PLACES: tuple[Place, ...] = (
    Place("ingest dedupe window", "memory", "`TRIAGE_DEDUPE_WINDOW_SECONDS` (1 h)", "dedupe keys (ids)",
          "redeliveries within the window", "expires"),
    Place("classify deletion memory", "memory, checkpointed on `triage-classify-deletions`",
          "`TRIAGE_CLASSIFY_DELETION_WINDOW_SECONDS` (1 h)", "deleted ids and authors",
          "a late or replayed copy is dropped unscored, also after a restart", "is the deletion"),
    Place("router ledger and deletion memory", "memory; deletions checkpointed on the router's state topic",
          "`TRIAGE_DEDUPE_WINDOW_SECONDS` (1 h)", "routed versions, deleted ids",
          "replays are skipped; a deleted mention is never routed, also after a restart", "is the deletion"),
    Place("console views", "memory, rebuilt from the topics on start", "as the topics it reads",
          "text, author", "the responders' view", "removed from every view; later copies stay hidden"),
    Place("pages sent (PagerDuty, Opsgenie, Slack, Alertmanager, webhooks)", "third parties",
          "theirs", "masked text (`TRIAGE_MASK_PII`)", "on-call", "not recalled: that is why they are masked"),
)


def _retention(spec: topics.TopicSpec) -> str:
    if spec.configs.get("cleanup.policy") == "compact":
        return "compacted (latest per key)"
    if spec.configs.get("cleanup.policy") == "compact,delete":
        return "compacted, at most " + _retention(topics.TopicSpec(spec.name, spec.partitions,
                                                                   {"retention.ms": spec.configs["retention.ms"]}))
    if "retention.ms" not in spec.configs:
        return "broker default"
    ms = int(spec.configs["retention.ms"])
    if ms < 0:
        return "kept"
    days, hours = divmod(ms // 3_600_000, 24)
    return f"{days} d" if days and not hours else f"{ms // 3_600_000} h"


def rows() -> list[tuple[str, str, str, str, str, str]]:
    """(place, kind, retention, holds, why, what a deletion does) for every topic, store and view."""
    out = []
    queue_done = False
    for spec in topics.all_topic_specs():
        name = spec.name
        if name.startswith(topics.QUEUE_PREFIX):
            if queue_done:
                continue
            name, queue_done = topics.QUEUE_PREFIX + "<name>", True
        if name not in WHY:
            raise KeyError(f"topic {name!r} has no entry in services/common/retention.py WHY")
        holds, why, deletion = WHY[name]
        out.append((f"`{name}`", "topic", _retention(spec), holds, why, deletion))
    out += [(p.name, p.kind, p.retention, p.holds, p.why, p.deletion) for p in PLACES]
    return out


def table() -> str:
    lines = ["| place | kind | retention | holds | why | what a deletion does there |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows()]
    return "\n".join(lines)


def section(doc: str) -> str:
    """The generated part of `doc` (between the markers), or "" when the markers are missing."""
    if START not in doc or END not in doc:
        return ""
    return doc.split(START, 1)[1].split(END, 1)[0].strip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.retention")
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {DOC}")
    args = parser.parse_args(argv)
    if not args.write:
        print(table())
        return 0
    doc = DOC.read_text()
    if not section(doc) and START not in doc:
        print(f"{DOC}: no {START} marker", file=sys.stderr)
        return 1
    before, rest = doc.split(START, 1)
    after = rest.split(END, 1)[1]
    DOC.write_text(f"{before}{START}\n{table()}\n{END}{after}")
    print(f"wrote the retention table in {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
