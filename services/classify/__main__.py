"""`triage classify`: run the classify worker (Faust)."""

from __future__ import annotations

import sys

from services.common.logging import configure_logging


def main(argv: list[str] | None = None) -> int:
    from services.classify.app import ClassifyWorker, create_app
    from services.classify.config import ClassifySettings
    from services.classify.factory import build_scorer
    from services.common import topics
    from services.common.faust_app import run_worker

    settings = ClassifySettings()
    configure_logging(settings.log_level, settings.log_json, settings.mask_pii)
    scorer = build_scorer(settings)
    worker = ClassifyWorker(settings, scorer)
    app = create_app(settings, worker)
    run_worker(app, settings, settings.classify_metrics_port, f"classify worker: model {scorer.model_version}",
               topics=topics.specs_named(topics.MENTIONS_RAW, topics.CLASSIFY_CRISIS_INPUT, topics.MENTIONS_SCORED,
                                         topics.INCIDENTS, layout=settings.partition_layout()),
               producers=lambda: (worker.producer,), ready_gates=lambda: (worker.ready_gate(),))
    return 0


if __name__ == "__main__":
    sys.exit(main())
