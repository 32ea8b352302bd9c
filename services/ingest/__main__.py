"""`triage ingest`: run the ingest HTTP API."""

from __future__ import annotations

import asyncio
import sys

from services.common.exposure import start_refusal
from services.common.logging import configure_logging, get_logger
from services.ingest.app import build_app
from services.ingest.config import IngestSettings
from services.ingest.connections import serve


def main(argv: list[str] | None = None) -> int:
    settings = IngestSettings()
    configure_logging(settings.log_level, settings.log_json, settings.mask_pii)
    refusal = start_refusal("ingest", settings.ingest_host, settings.missing_credentials(), settings.insecure_dev)
    if refusal:
        get_logger("ingest").error("ingest_refused_to_start", reason=refusal)
        return 2
    print(f"ingest listening on http://{settings.ingest_host}:{settings.ingest_port} "
          f"(metrics at /metrics), Kafka {settings.kafka_bootstrap}", file=sys.stderr, flush=True)
    asyncio.run(serve(build_app(settings), settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
