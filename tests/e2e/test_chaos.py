"""The chaos suite's short variant (issue 11): one kill -9 each of classify, router and the broker.

~500 unique mentions through ingest, classify and router as separate processes on a private broker (the
suite kills it), an outage burst and a second brand's outage opening two incidents, and a PagerDuty-shaped
receiver answering 500 for 20 s over the first trigger. The invariants are checked on what a
read_committed consumer sees; `make chaos` runs the full scenario (2,000 mentions) three times.
"""

from __future__ import annotations

from pathlib import Path

from services.devtools.chaos import SHORT, run_scenario


def test_short_chaos_run_loses_nothing_duplicates_nothing_and_pages_each_incident_once(kafka_broker_factory,
                                                                                        tmp_path: Path):
    broker = kafka_broker_factory()
    result = run_scenario(SHORT, tmp_path, broker)
    print(result.table)
    assert result.report["acknowledged"] == SHORT.mentions, result.table
    assert not result.failures, result.table + "\nfailed:\n  " + "\n  ".join(result.failures)
