"""Crisis detection over time (pure, no Kafka): volume spikes, outage clusters, viral complaints, complaint
surges and emerging issues (clusters of look-alike negative posts) -> incidents.

`CrisisEngine.observe(scored, now)` feeds one scored mention and returns the id of the open incident it
belongs to (or "") plus the incident updates to publish; `tick(now)` resolves incidents that went quiet.
The Faust layer (services/classify/crisis_agent.py) only moves mentions in and incidents out.
"""

from services.classify.crisis.config import (
    CrisisConfig,
    EmergingConfig,
    IncidentConfig,
    OutageConfig,
    SpikeConfig,
    ViralConfig,
)
from services.classify.crisis.engine import CrisisEngine, event_time

__all__ = ["CrisisConfig", "CrisisEngine", "EmergingConfig", "IncidentConfig", "OutageConfig", "SpikeConfig",
           "ViralConfig", "event_time"]
