"""The router's durable state: incident groups and SLA clocks on a compacted, partitioned topic.

Keys are `group:<group key>`, `sla:<mention id>` and `deleted:<key>` (deletions remembered, deletion_log.py);
values are JSON, an empty value deletes (a tombstone, which compaction removes). Each record goes to the
partition its *owning key* hashes to (the group key, co-partitioned with the page requests; the mention id,
co-partitioned with `mentions.scored` and `responses`), so the replica that owns partition p of those topics
reads partition p of this one when it is assigned p, before it handles p's first message: a restart or a
rebalance neither re-pages an incident already paged nor forgets one still open. The log itself is
services/common/state_log.py.
"""

from __future__ import annotations

from services.common.state_log import StateLog

__all__ = ["StateLog", "state_topic"]


def state_topic(app_id: str) -> str:
    return f"{app_id}-state-changelog"
