"""`triage route-check FILE [k=v ...] [--at TIME]`: validate a routing file (the project's, or a verbatim
Alertmanager configuration); with labels, show which routes and receivers a mention hits, whether it is paged
as an incident or delivered per mention, its SLA, and whether a silence would mute its page at that time.
The last line is what `amtool config routes test` prints (the receivers, comma-joined), and
`--verify.receivers=a,b` makes the exit status 1 when they differ, as amtool does. `--tree` prints the
routing tree like `amtool config routes show`."""

from __future__ import annotations

import argparse
import sys
import time

from services.common.alerting.silences import parse_instant
from services.router import routing_file as routing
from services.router.tree import Route


def _dur(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{seconds:g}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage route-check", description=__doc__)
    parser.add_argument("file")
    parser.add_argument("labels", nargs="*", help='sample labels, e.g. priority=P1 intent=outage_report brand=acme')
    parser.add_argument("--at", help="evaluate time intervals and silences at this ISO 8601 time (default: now)")
    parser.add_argument("--tree", action="store_true", help="print the routing tree (amtool config routes show)")
    parser.add_argument("--verify.receivers", dest="verify_receivers", default=None,
                        help="expected receivers, comma-joined: exit status 1 when the labels resolve otherwise")
    args = parser.parse_intermixed_args(argv)
    try:
        tree = routing.load(args.file)
    except routing.RoutingConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {args.file}: {len(tree.receivers)} receivers, queues: {', '.join(tree.queues()) or '-'}, "
          f"{len(tree.time_intervals)} time intervals, {len(tree.silences)} silences, "
          f"{len(tree.inhibit_rules)} inhibit rules")
    for notice in tree.notices:
        print(f"note: {notice}")
    if args.tree:
        print("Routing tree:")
        _print_tree(tree.root, "", True)
    if not args.labels:
        return 0
    labels = {}
    for item in args.labels:
        if "=" not in item:
            print(f"bad label {item!r}: expected name=value", file=sys.stderr)
            return 2
        k, v = item.split("=", 1)
        labels[k] = v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v
    try:
        now = parse_instant(args.at) if args.at else time.time()
    except ValueError as exc:
        print(f"bad --at: {exc}", file=sys.stderr)
        return 2
    prio = labels.get("priority", "")
    routes = tree.routes_for(labels, now)
    for route in routes:
        matchers = ", ".join(str(m) for m in route.matchers) or "(root: matches everything)"
        cfg = tree.receivers.get(route.receiver)
        kind = cfg.kind if cfg is not None else "null"
        print(f"{route.path} (line {route.line}) -> {route.receiver} ({kind})   [{matchers}]")
        if cfg is None:
            print("    sends nothing (a receiver without integrations)")
            continue
        if not route.in_time(now):
            print("    muted at that time (when_muted: stay): the mention stays on this route and nothing is sent")
            continue
        if kind != "kafka_queue" and tree.is_paging(route):
            by = "incident id, else " + (",".join(route.group_by) or "brand")
            print(f"    paged as an incident: grouped by {by}; group_wait {_dur(route.group_wait)}, "
                  f"group_interval {_dur(route.group_interval)}, repeat_interval {_dur(route.repeat_interval)}")
            if route.triage or route.triage_below_confidence:
                which = "" if route.triage else f" (incidents of confidence under {route.triage_below_confidence:g})"
                notice = f"; notice to {route.triage_notify}" if route.triage_notify else ""
                print(f"    held for triage{which}: pages on a person's \"page now\" (console: Triage), not after a "
                      f"\"dismiss\", by itself after {_dur(route.triage_timeout)}{notice}")
            silence = tree.silenced_by(labels, now)
            if silence is not None:
                until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(silence.ends_at))
                print(f"    muted by a silence until {until}: {silence.comment}")
        else:
            print("    delivered per mention")
        if prio in route.sla:
            bt = f" of {route.sla_time_interval.name}" if route.sla_time_interval else ""
            esc = f", escalates to {route.escalate_to}" if route.escalate_to else ""
            print(f"    first response due in {_dur(route.sla[prio])}{bt}{esc}")
    skipped = [r for r in _timed_routes(tree.root) if r.matches(labels) and not r.in_time(now)]
    for r in skipped:
        if r.when_muted == "fall_through":
            print(f"    (skipped {r.path} (line {r.line}) -> {r.receiver}: outside its time intervals at that time)")
    resolved = ",".join(r.receiver for r in routes)
    print(resolved)
    if args.verify_receivers is not None and args.verify_receivers != resolved:
        print("WARNING: Expected receivers did not match resolved receivers.")
        return 1
    return 0


def _print_tree(route: Route, prefix: str, last: bool) -> None:
    """One line per route like amtool's: `{matchers}  continue: true  receiver: NAME`."""
    slug = "{" + ",".join(str(m) for m in route.matchers) + "}" if route.matchers else "default-route"
    if route.continue_:
        slug += "  continue: true"
    slug += f"  receiver: {route.receiver}"
    print(f"{prefix}{'└── ' if last else '├── '}{slug}")
    child_prefix = prefix + ("    " if last else "│   ")
    for i, child in enumerate(route.routes):
        _print_tree(child, child_prefix, i == len(route.routes) - 1)


def _timed_routes(route: Route) -> list[Route]:
    out = [route] if route.active_time_intervals or route.mute_time_intervals else []
    for child in route.routes:
        out += _timed_routes(child)
    return out
