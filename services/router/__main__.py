"""`triage router`: run the router worker (Faust)."""

from __future__ import annotations

import sys

from services.common.logging import configure_logging


def main(argv: list[str] | None = None) -> int:
    import faust

    from services.common.metrics import serve_metrics
    from services.router import tree as routing
    from services.router.app import RouterWorker, create_app
    from services.router.config import RouterSettings

    settings = RouterSettings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        tree = routing.load(settings.routes_file)
    except routing.RoutingConfigError as exc:
        print(f"router: invalid routing file: {exc}", file=sys.stderr)
        return 2
    worker = RouterWorker(settings, tree)
    app = create_app(settings, worker)
    serve_metrics(settings.router_metrics_port, settings.metrics_host)
    print(f"router: routes {settings.routes_file}, metrics on "
          f"http://{settings.metrics_host}:{settings.router_metrics_port}/metrics", file=sys.stderr, flush=True)
    faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
