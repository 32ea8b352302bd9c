"""`make bench-scale`'s run, short: two classify replicas (processes) under one fresh group on the real
broker split the 6 partitions of `mentions.raw` between them and score every mention of a hot brand's
backlog exactly once. Correctness only; the speed figures are the benchmark's (bench/scale.py)."""

from __future__ import annotations

from pathlib import Path

from bench import scale
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs

# The repo's multilingual fixture, not ../shared/data: CI's clone may not sit next to the shared data.
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "parity_mentions.txt"


async def test_two_replicas_split_the_partitions_and_score_every_mention_once(kafka_bootstrap, tmp_path):
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    lines = [ln for ln in FIXTURE.read_text(encoding="utf-8").splitlines() if ln.strip()]
    texts = [f"{lines[i % len(lines)]} ({i})" for i in range(130)]
    backlog = scale.backlog_mentions(texts[:120], 120)
    warmup = scale.backlog_mentions(texts[120:], 10, prefix=scale.WARMUP_PREFIX)
    result = await scale.run_replicas(kafka_bootstrap, 2, backlog, warmup, tmp_path, precision="fp32",
                                      startup_timeout=240, drain_timeout=120, sample=0.5)
    assert not result.error, result.error
    assert set(result.partitions) == {"classify-0", "classify-1"}
    held = [p for ps in result.partitions.values() for p in ps]
    assert sorted(held) == list(range(6)) and all(result.partitions.values())   # disjoint, all covered
    assert not result.rebalanced
    assert result.missing == 0 and result.duplicates == 0
    assert set(result.scored) == {m.mention_id for m in backlog}
    assert result.seconds > 0 and result.lag and sum(result.lag[-1][1].values()) == 0
    assert 0 < result.replica_cores <= result.machine_cores + 0.05, (result.replica_cores, result.machine_cores)
