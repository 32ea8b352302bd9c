"""`triage console`: run the responder console (HTML pages + JSON API) over the pipeline's topics."""

from __future__ import annotations

import sys

from aiohttp import web

from services.common.exposure import start_refusal
from services.common.logging import configure_logging, get_logger
from services.console.app import build_app
from services.console.config import ConsoleSettings


def main(argv: list[str] | None = None) -> int:
    settings = ConsoleSettings()
    configure_logging(settings.log_level, settings.log_json, settings.mask_pii)
    refusal = start_refusal("console", settings.console_host, settings.missing_credentials(), settings.insecure_dev)
    if refusal:
        get_logger("console").error("console_refused_to_start", reason=refusal)
        return 2
    print(f"console on {settings.base_url()} (metrics at /metrics, API at /api/incidents), "
          f"Kafka {settings.kafka_bootstrap}", file=sys.stderr, flush=True)
    web.run_app(build_app(settings), host=settings.console_host, port=settings.console_port,
                print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
