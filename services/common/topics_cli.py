"""`triage topics`: create the pipeline's topics with their partitions and configs, list them, and grow a
stage's partitions on a live cluster.

    triage topics create | list                                  counts from TRIAGE_CLASSIFY_PARTITIONS and
                                                                 TRIAGE_ROUTER_PARTITIONS (default 6 each)
    triage topics grow --stage router --partitions 12 [--dry-run]
                                                                 the procedure of docs/scaling.md: refuses while
                                                                 the stage runs or has a backlog, grows its
                                                                 co-partitioned topics, re-keys its state
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.common.kafka import ensure_topics, wait_for_kafka
from services.common.partition_growth import STAGES, GrowthRefused, grow, plan_growth
from services.common.settings import ServiceSettings
from services.common.topics import all_topic_specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage topics")
    parser.add_argument("action", choices=["create", "list", "grow"])
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--stage", choices=STAGES, help="grow: whose topics (classify or router)")
    parser.add_argument("--partitions", type=int, help="grow: the new partition count of the stage's topics")
    parser.add_argument("--app-id", default=None, help="grow: the stage's Faust app id, if not the default "
                                                       "(triage-classify, triage-router)")
    parser.add_argument("--dry-run", action="store_true", help="grow: check and print the plan, change nothing")
    args = parser.parse_args(argv)
    settings = ServiceSettings()
    specs = all_topic_specs(layout=settings.partition_layout())
    if args.action == "list":
        for s in specs:
            print(f"{s.name}\tpartitions={s.partitions}\t{s.configs}")
        return 0
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    security = settings.kafka_client_options()
    if args.action == "grow":
        if args.stage is None or args.partitions is None or args.partitions < 1:
            parser.error("grow needs --stage classify|router and --partitions N (N >= 1)")
        return _grow(bootstrap, security, args.stage, args.partitions, args.app_id, args.dry_run)

    async def run() -> None:
        await wait_for_kafka(bootstrap, timeout=30, client_options=security)
        await ensure_topics(bootstrap, specs, settings.topic_replication_factor, client_options=security)

    asyncio.run(run())
    print(f"topics ready on {bootstrap}: {', '.join(s.name for s in specs)}")
    return 0


def _grow(bootstrap: str, security: dict[str, object], stage: str, partitions: int, app_id: str | None,
          dry_run: bool) -> int:
    plan = plan_growth("router" if stage == "router" else "classify", app_id)
    try:
        report = asyncio.run(grow(bootstrap, plan, partitions, dry_run=dry_run, client_options=security))
    except GrowthRefused as exc:
        print(f"triage topics grow: refused, nothing changed: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    setting = f"TRIAGE_{stage.upper()}_PARTITIONS={partitions}"
    if dry_run:
        print(f"dry run: nothing changed; the preconditions hold for growing {stage} to {partitions}")
    else:
        print(f"next: set {setting} for every service (deploy/k8s/base/config/partitions.env, then "
              f"`make manifests`) and start {stage} again; a replica still on the old count refuses to start")
    return 0
