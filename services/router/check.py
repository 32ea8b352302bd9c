"""`triage route-check FILE`: validate a routing file; with labels, show which routes and receivers a
mention hits (like `amtool config routes test`)."""

from __future__ import annotations

import argparse
import sys

from services.router import tree as routing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage route-check", description=__doc__)
    parser.add_argument("file")
    parser.add_argument("labels", nargs="*", help='sample labels, e.g. priority=P1 intent=outage_report')
    args = parser.parse_args(argv)
    try:
        tree = routing.load(args.file)
    except routing.RoutingConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {args.file}: {len(tree.receivers)} receivers, queues: {', '.join(tree.queues()) or '-'}")
    if args.labels:
        labels = {}
        for item in args.labels:
            if "=" not in item:
                print(f"bad label {item!r}: expected name=value", file=sys.stderr)
                return 2
            k, v = item.split("=", 1)
            labels[k] = v
        for route in tree.match(labels):
            matchers = ", ".join(str(m) for m in route.matchers) or "(root: matches everything)"
            print(f"{route.path} (line {route.line}) -> {route.receiver}   [{matchers}]")
    return 0
