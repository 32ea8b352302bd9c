"""`triage ingest`: run the ingest HTTP API."""

from __future__ import annotations

import sys

from aiohttp import web

from services.common.logging import configure_logging
from services.ingest.app import build_app, server_options
from services.ingest.config import IngestSettings


def main(argv: list[str] | None = None) -> int:
    settings = IngestSettings()
    configure_logging(settings.log_level, settings.log_json)
    print(f"ingest listening on http://{settings.ingest_host}:{settings.ingest_port} "
          f"(metrics at /metrics), Kafka {settings.kafka_bootstrap}", file=sys.stderr, flush=True)
    web.run_app(build_app(settings), host=settings.ingest_host, port=settings.ingest_port,
                print=None, access_log=None, **server_options(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
