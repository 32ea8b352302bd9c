"""The generator-score scenarios of `make eval-crisis` (bench/eval_crisis.py) as tests: each crisis is found
within 60 s by the expected detector, and the calm and quiet-brand streams open nothing; the campaign
(complaints quadruple with the rest) opens nothing but a complaint surge.

Each stream runs only as many simulated days as its crisis needs (the full week is `make eval-crisis`)."""

from __future__ import annotations

import pytest

from bench.eval_crisis import build, replay
from services.classify.crisis import CrisisConfig
from services.common.codec import pb

# scenario -> simulated days (the crisis's day + 1)
DAYS = {"outage": 3, "viral": 4, "volume-spike": 6, "campaign": 5, "quiet-brand": 2, "calm-week": 3}


@pytest.mark.parametrize("name", list(DAYS))
def test_generator_scenario(name: str):
    sc = build(name, seed=7, days=DAYS[name])
    r = replay(sc, CrisisConfig())
    false = r["false"]
    assert isinstance(false, list)
    assert not false, [f"{pb.IncidentKind.Name(i.kind)} {'; '.join(i.reasons)}" for i in false]
    if sc.kind:
        ttd = r["ttd"]
        assert ttd is not None, f"no {pb.IncidentKind.Name(sc.kind)} for {sc.brand}"
        assert isinstance(ttd, float) and ttd <= 60
