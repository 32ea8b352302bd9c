"""`triage topics create`: create the pipeline's topics with their partitions and configs."""

from __future__ import annotations

import argparse
import asyncio

from services.common.kafka import ensure_topics, wait_for_kafka
from services.common.settings import ServiceSettings
from services.common.topics import all_topic_specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage topics")
    parser.add_argument("action", choices=["create", "list"])
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args(argv)
    specs = all_topic_specs()
    if args.action == "list":
        for s in specs:
            print(f"{s.name}\tpartitions={s.partitions}\t{s.configs}")
        return 0
    settings = ServiceSettings()
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    security = settings.kafka_client_options()

    async def run() -> None:
        await wait_for_kafka(bootstrap, timeout=30, client_options=security)
        await ensure_topics(bootstrap, specs, settings.topic_replication_factor, client_options=security)

    asyncio.run(run())
    print(f"topics ready on {bootstrap}: {', '.join(s.name for s in specs)}")
    return 0
