"""`triage classify`: run the classify worker (Faust)."""

from __future__ import annotations

import sys

from services.common.logging import configure_logging


def main(argv: list[str] | None = None) -> int:
    import faust

    from services.classify.app import ClassifyWorker, create_app
    from services.classify.config import ClassifySettings
    from services.classify.factory import build_scorer
    from services.common.metrics import serve_metrics

    settings = ClassifySettings()
    configure_logging(settings.log_level, settings.log_json)
    scorer = build_scorer(settings)
    worker = ClassifyWorker(settings, scorer)
    app = create_app(settings, worker)
    serve_metrics(settings.classify_metrics_port, settings.metrics_host)
    print(f"classify worker: model {scorer.model_version}, metrics on "
          f"http://{settings.metrics_host}:{settings.classify_metrics_port}/metrics", file=sys.stderr, flush=True)
    faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
