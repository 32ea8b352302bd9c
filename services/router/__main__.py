"""`triage router`: run the router worker (Faust)."""

from __future__ import annotations

import sys

from services.common.logging import configure_logging


def main(argv: list[str] | None = None) -> int:
    from services.common import topics
    from services.common.faust_app import run_worker
    from services.router import routing_file as routing
    from services.router.agents import create_app
    from services.router.app import RouterWorker
    from services.router.config import RouterSettings

    settings = RouterSettings()
    configure_logging(settings.log_level, settings.log_json, settings.mask_pii)
    try:
        tree = routing.load(settings.routes_file)
    except routing.RoutingConfigError as exc:
        print(f"router: invalid routing file: {exc}", file=sys.stderr)
        return 2
    worker = RouterWorker(settings, tree)
    app = create_app(settings, worker)
    layout = settings.partition_layout()
    run_worker(app, settings, settings.router_metrics_port, f"router: routes {settings.routes_file}",
               topics=[*topics.specs_named(topics.MENTIONS_SCORED, topics.RESPONSES,
                                           topics.ROUTER_PAGE_REQUESTS, topics.TRIAGE_DECISIONS, topics.INCIDENTS,
                                           topics.SILENCES, layout=layout),
                       topics.router_state_spec(settings.router_app_id, settings.router_partitions)],
               producers=lambda: (worker.producer,))
    return 0


if __name__ == "__main__":
    sys.exit(main())
