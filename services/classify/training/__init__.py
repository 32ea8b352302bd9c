"""Offline model code, never imported by the live worker: fitting the heads and fine-tuning the adapter
(`train.py`, `finetune.py`; `triage train`), the evaluation tables (`evaluate.py`; `triage eval`), the
labelled data sets (`datasets.py`, `intent_sources.py`) and the console's corrections as a data set
(`feedback_set.py`; `triage feedback export`). Its outputs land in services/classify/artifacts/, which the
worker loads."""
