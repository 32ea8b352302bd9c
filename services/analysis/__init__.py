"""Offline analysis: commands that run pieces of several services in one process over files.

`triage backtest` (backtest.py) reads a file in ingest's schema through ingest's own normaliser and brand
matcher, scores it with classify's Scorer and replays classify's crisis detection in event time: what would
have paged. Like services/devtools and the `triage` dispatcher it sits above the services and may import
them; no service imports it (tools/check_imports.py).
"""
