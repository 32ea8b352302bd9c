"""Alerting concepts shared by the router and the console (pure, no Kafka).

Like Alertmanager's `pkg/labels/`, `silence/` and `timeinterval/`, which both its `api/` and its
`dispatch/` use while neither imports the other: the router mutes pages and runs SLA clocks with these,
the console makes and shows silences with them, and neither service imports the other.

- `matchers.py`: label matchers, `name="value"`, `name!="v"`, `name=~"re"`, `name!~"re"`;
- `silences.py`: `Silence` (from the routing file or the console) and `parse_instant`;
- `silence_feed.py`: the silences on the compacted `silences` topic, folded into `SilenceFeed`;
- `timeintervals.py`: named time intervals (`time_intervals`) and business-time arithmetic;
- `durations.py`: `parse_duration` ("30s", "1h30m", "2d").
"""
