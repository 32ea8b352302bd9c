"""The routing file: YAML loader with line numbers, durations, the `_parse_*` validators and their errors.

`load(path)` / `loads(text)` turn a routing file (format in tree.py and ROUTING.md) into a
`tree.RoutingTree`; every problem is a `RoutingConfigError` naming the line and the key.

A verbatim Alertmanager configuration loads too: `global`, `templates`, top-level `mute_time_intervals`,
routes with `match` / `match_re` / `matchers`, `group_by: ['...']`, inhibit rules with
`source_match(_re)` / `target_match(_re)`, and receivers with `*_configs` (am_receivers.py). It is
refused for what Alertmanager refuses (config/config.go, timeinterval/timeinterval.go), with
Alertmanager's reason; what loads but cannot act as in Alertmanager is listed in `RoutingTree.notices`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from services.common.alerting.durations import parse_duration
from services.common.alerting.matchers import (
    Matcher,
    MatcherError,
    is_classic_label_name,
    is_valid_label_name,
    parse_matchers,
)
from services.common.alerting.silences import Silence, parse_instant
from services.common.alerting.timeintervals import IntervalEntry, IntervalError, TimeInterval
from services.common.errors import TriageError
from services.router import am_receivers
from services.router.inhibition import InhibitRule
from services.router.registry import COMMON_OPTIONS, RECEIVER_KINDS, REGISTRY, ReceiverConfig, ReceiverKind
from services.router.tree import FALL_THROUGH, STAY, Route, RoutingTree

DEFAULT_SLA = {"P1": 15 * 60.0, "P2": 3600.0, "P3": 86400.0}


class RoutingConfigError(TriageError, ValueError):
    """A routing file problem, naming the line and key."""

    def __init__(self, source: str, line: int | None, key: str, reason: str):
        self.line, self.key, self.reason = line, key, reason
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {key}: {reason}")


class _LineDict(dict):  # type: ignore[type-arg]
    """A mapping that remembers the 1-based line of each key."""

    lines: dict[str, int]
    line: int


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    d = _LineDict()
    d.lines = {}
    d.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in d:
            raise yaml.MarkedYAMLError("while constructing a mapping", node.start_mark,
                                       f"duplicate key {key!r}", key_node.start_mark)
        d[key] = loader.construct_object(value_node, deep=True)
        d.lines[str(key)] = key_node.start_mark.line + 1
    return d


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)  # type: ignore[arg-type]


DEFAULT_TRIAGE_TIMEOUT = 600.0  # a held page goes out on its own after 10 min unless a person handled it
_ROUTE_KEYS = {"receiver", "matchers", "match", "match_re", "continue", "routes", "group_by", "group_wait",
               "group_interval", "repeat_interval", "sla", "active_time_intervals", "mute_time_intervals",
               "quiet_period", "escalate_to", "sla_time_interval", "when_muted", "triage", "triage_timeout",
               "triage_notify", "triage_below_confidence"}
_TOP_KEYS = {"route", "receivers", "sla", "time_intervals", "mute_time_intervals", "inhibit_rules", "silences",
             "global", "templates"}


def load(path: str | Path) -> RoutingTree:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutingConfigError(str(p), None, "file", f"cannot read: {exc.strerror}") from None
    return loads(text, str(p))


def loads(text: str, source: str = "<routing>") -> RoutingTree:
    try:
        doc = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise RoutingConfigError(source, line, "yaml", f"{exc.problem}") from None
    except yaml.YAMLError as exc:
        raise RoutingConfigError(source, None, "yaml", str(exc)) from None
    if not isinstance(doc, _LineDict):
        raise RoutingConfigError(source, 1, "$", "expected a mapping with `route` and `receivers`")
    for key in doc:
        if key not in _TOP_KEYS:
            raise RoutingConfigError(source, doc.lines[key], str(key), "unknown top-level key")
    notices: list[str] = []
    glob = doc.get("global") or _LineDict()
    if not isinstance(glob, dict):
        raise RoutingConfigError(source, _line(doc, "global"), "global", "expected a mapping")
    if "templates" in doc:
        notices.append(f"{source}:{_line(doc, 'templates')}: templates: not used: the project renders its own "
                       "messages (services/router/render.py)")
    receivers, null_receivers, project_kinds = _parse_receivers(doc, source, glob, notices)
    notices[:0] = am_receivers.global_notices(glob, source, _line(doc, "global"))
    intervals = _parse_time_intervals(doc, source)
    if "route" not in doc:
        raise RoutingConfigError(source, doc.line, "route", "missing (the root route is required)")
    default_sla = dict(DEFAULT_SLA)
    if "sla" in doc:
        default_sla.update(_parse_sla(doc["sla"], doc, "sla", source))
    route_doc = doc["route"]
    if isinstance(route_doc, _LineDict):
        if route_doc.get("continue") is True:
            raise RoutingConfigError(source, _line(route_doc, "continue"), "route.continue",
                                     "cannot have continue in root route")
        for k in ("match", "match_re", "matchers"):
            if route_doc.get(k):
                raise RoutingConfigError(source, _line(route_doc, k), f"route.{k}",
                                         "root route must not have any matchers")
    # A verbatim Alertmanager file (no receiver of the project's own kinds) keeps Alertmanager's semantics.
    slack = frozenset(name for name, cfg in receivers.items() if cfg.kind == "slack")
    root = _parse_route(route_doc, doc, "route", source, "root", set(receivers) | null_receivers,
                        inherited={"group_by": [], "group_wait": 30.0, "group_interval": 300.0,
                                   "repeat_interval": 4 * 3600.0, "sla": default_sla, "quiet_period": 900.0,
                                   "escalate_to": "", "sla_time_interval": None, "triage": False,
                                   "triage_timeout": DEFAULT_TRIAGE_TIMEOUT, "triage_notify": "",
                                   "triage_below_confidence": 0.0,
                                   "when_muted": FALL_THROUGH if project_kinds else STAY},
                        intervals=intervals, slack=slack)
    for k in ("active_time_intervals", "mute_time_intervals"):
        if k in route_doc:
            raise RoutingConfigError(source, _line(route_doc, k), f"route.{k}",
                                     "the root route must always match (put time intervals on child routes)")
    return RoutingTree(root, receivers, source, intervals, _parse_silences(doc, source),
                       _parse_inhibit_rules(doc, source), notices, null_receivers)


def _mapping_items(doc: _LineDict, name: str, allowed: tuple[str, ...], source: str,
                   shape: str = "expected a mapping", named: bool = False) -> Iterator[tuple[str, _LineDict]]:
    """(key, item) for each entry of the top-level list `name`, each a mapping with only `allowed` keys
    (and, if `named`, a string `name`)."""
    items = doc.get(name, [])
    if not isinstance(items, list):
        raise RoutingConfigError(source, _line(doc, name), name, "expected a list")
    for i, item in enumerate(items):
        key = f"{name}[{i}]"
        if not isinstance(item, _LineDict) or (named and not isinstance(item.get("name"), str)):
            raise RoutingConfigError(source, _line(doc, name), key, shape)
        for k in item:
            if k not in allowed:
                raise RoutingConfigError(source, item.lines[k], f"{key}.{k}", "unknown key")
        yield key, item


def _parse_time_intervals(doc: _LineDict, source: str) -> dict[str, TimeInterval]:
    """`time_intervals` and Alertmanager's older top-level `mute_time_intervals` (same format, one namespace)."""
    out: dict[str, TimeInterval] = {}
    items = [(k, i, "mute time interval") for k, i in _mapping_items(
        doc, "mute_time_intervals", ("name", "time_intervals"), source, "expected {name, time_intervals}", named=True)]
    items += [(k, i, "time interval") for k, i in _mapping_items(
        doc, "time_intervals", ("name", "time_intervals"), source, "expected {name, time_intervals}", named=True)]
    for key, item, what in items:
        name = item["name"]
        if name in out:
            raise RoutingConfigError(source, _line(item, "name"), f"{key}.name", f"{what} {name!r} is not unique")
        entries = item.get("time_intervals")
        if not isinstance(entries, list) or not entries:
            raise RoutingConfigError(source, _line(item, "time_intervals"), f"{key}.time_intervals",
                                     "expected a non-empty list")
        parsed = []
        for j, e in enumerate(entries):
            try:
                parsed.append(IntervalEntry.parse(e))
            except IntervalError as exc:
                line = _line(e, exc.key.split(".")[0]) if isinstance(e, _LineDict) else _line(item, "time_intervals")
                sub = f".{exc.key}" if exc.key else ""
                raise RoutingConfigError(source, line, f"{key}.time_intervals[{j}]{sub}", str(exc)) from None
        out[name] = TimeInterval(name, tuple(parsed))
    return out


def _matcher_list(node: _LineDict, k: str, key: str, source: str, required: bool = True) -> tuple[Matcher, ...]:
    raw = node.get(k, [])
    if not isinstance(raw, list) or (required and not raw):
        raise RoutingConfigError(source, _line(node, k), f"{key}.{k}", "expected a non-empty list of matchers")
    out: list[Matcher] = []
    for i, m in enumerate(raw):
        try:
            out += parse_matchers(str(m))  # like Alertmanager, one entry may hold several: 'a="b", c=~"d"'
        except MatcherError as exc:
            raise RoutingConfigError(source, _line(node, k), f"{key}.{k}[{i}]", str(exc)) from None
    return tuple(out)


def _match_maps(node: _LineDict, key: str, source: str, prefix: str = "") -> list[Matcher]:
    """Alertmanager's deprecated `match` (equality) and `match_re` (regex) maps, as dispatch/route.go reads them."""
    out: list[Matcher] = []
    for k, op in ((f"{prefix}match", "="), (f"{prefix}match_re", "=~")):
        raw = node.get(k)
        if raw is None:
            continue
        if not isinstance(raw, dict):
            raise RoutingConfigError(source, _line(node, k), f"{key}.{k}", "expected a mapping of label: value")
        for name, value in raw.items():
            line = _line(raw, str(name))
            if not isinstance(name, str) or not is_classic_label_name(name):
                raise RoutingConfigError(source, line, f"{key}.{k}.{name}", f"invalid label name {str(name)!r}")
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise RoutingConfigError(source, line, f"{key}.{k}.{name}", "expected a string")
            try:
                out.append(Matcher.new(op, name, str(value)))
            except MatcherError as exc:
                raise RoutingConfigError(source, line, f"{key}.{k}.{name}", str(exc)) from None
    return out


def _parse_silences(doc: _LineDict, source: str) -> list[Silence]:
    out = []
    allowed = ("matchers", "starts_at", "ends_at", "comment", "created_by")
    for key, item in _mapping_items(doc, "silences", allowed, source):
        matchers = _matcher_list(item, "matchers", key, source)
        times = []
        for k in ("starts_at", "ends_at"):
            if k not in item:
                raise RoutingConfigError(source, item.line, f"{key}.{k}", "required")
            try:
                times.append(parse_instant(item[k]))
            except ValueError as exc:
                raise RoutingConfigError(source, _line(item, k), f"{key}.{k}", str(exc)) from None
        if times[1] <= times[0]:
            raise RoutingConfigError(source, _line(item, "ends_at"), f"{key}.ends_at", "must be after starts_at")
        out.append(Silence(matchers, times[0], times[1], str(item.get("comment", "")),
                           str(item.get("created_by", ""))))
    return out


def _parse_inhibit_rules(doc: _LineDict, source: str) -> list[InhibitRule]:
    out = []
    allowed = ("name", "source_matchers", "target_matchers", "source_match", "source_match_re", "target_match",
               "target_match_re", "equal")
    for key, item in _mapping_items(doc, "inhibit_rules", allowed, source):
        equal = item.get("equal", [])
        if not isinstance(equal, list) or not all(isinstance(x, str) for x in equal):
            raise RoutingConfigError(source, _line(item, "equal"), f"{key}.equal", "expected a list of labels")
        for label in equal:
            if not is_valid_label_name(label):
                raise RoutingConfigError(source, _line(item, "equal"), f"{key}.equal",
                                         f"invalid label name {label!r} in equal list")
        sides = []
        for side in ("source", "target"):
            ms = _match_maps(item, key, source, f"{side}_")
            # The project's own files must name `*_matchers`; Alertmanager's forms may stand alone.
            required = not any(f"{side}_{k}" in item for k in ("match", "match_re"))
            sides.append(tuple(ms) + _matcher_list(item, f"{side}_matchers", key, source, required=required))
        out.append(InhibitRule(sides[0], sides[1], tuple(equal), item.line))
    return out


def _line(parent: Any, key: str) -> int:
    return parent.lines.get(key, getattr(parent, "line", 0))


def _parse_sla(value: Any, parent: _LineDict, key: str, source: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise RoutingConfigError(source, _line(parent, key), key, "expected a mapping like {P1: 15m, P2: 1h}")
    out = {}
    for prio, dur in value.items():
        if prio not in ("P1", "P2", "P3", "P4"):
            raise RoutingConfigError(source, _line(value, prio), f"{key}.{prio}", "priority must be P1..P4")
        try:
            out[prio] = parse_duration(dur)
        except ValueError as exc:
            raise RoutingConfigError(source, _line(value, prio), f"{key}.{prio}", str(exc)) from None
    return out


def _parse_receivers(doc: _LineDict, source: str, glob: dict[str, Any],
                     notices: list[str]) -> tuple[dict[str, ReceiverConfig], set[str], bool]:
    """(receivers, the names of null receivers, whether any receiver is of the project's own kinds)."""
    items = doc.get("receivers")
    if not isinstance(items, list) or not items:
        raise RoutingConfigError(source, _line(doc, "receivers"), "receivers", "expected a non-empty list")
    out: dict[str, ReceiverConfig] = {}
    nulls: set[str] = set()
    project_kinds = False
    for i, item in enumerate(items):
        key = f"receivers[{i}]"
        if not isinstance(item, _LineDict):
            raise RoutingConfigError(source, _line(doc, "receivers"), key, "expected a mapping with `name`")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise RoutingConfigError(source, item.line, f"{key}.name", "missing or not a string")
        if name in out or name in nulls:
            raise RoutingConfigError(source, _line(item, "name"), f"{key}.name",
                                     f"notification config name {name!r} is not unique")
        kinds = [k for k in item if k != "name"]
        if all(k in am_receivers.AM_RECEIVER_KEYS for k in kinds):
            try:
                mapped = am_receivers.map_receiver(name, item, glob)
            except am_receivers.ReceiverMappingError as exc:
                raise RoutingConfigError(source, _line(exc.node, exc.key) if exc.node is not None else item.line,
                                         f"{key}.{exc.path}" if exc.path else key, str(exc)) from None
            notices += [f"{source}:{_line(n.node, n.key) if n.node is not None else item.line}: {key}"
                        f"{'.' + n.path if n.path else ''}: {n.reason}" for n in mapped.notices]
            if mapped.kind is None:
                nulls.add(name)
            else:
                out[name] = ReceiverConfig(name, mapped.kind, mapped.options, item.line)
            continue
        project_kinds = True
        unknown = [k for k in kinds if k not in RECEIVER_KINDS]
        if unknown:
            raise RoutingConfigError(source, _line(item, unknown[0]), f"{key}.{unknown[0]}",
                                     f"unknown receiver type; expected one of {', '.join(RECEIVER_KINDS)}")
        if len(kinds) != 1:
            raise RoutingConfigError(source, item.line, key, "a receiver has exactly one type "
                                     f"({', '.join(RECEIVER_KINDS)})")
        kind = kinds[0]
        opts = item[kind] or {}
        if not isinstance(opts, dict):
            raise RoutingConfigError(source, _line(item, kind), f"{key}.{kind}", "expected a mapping of options")
        _check_receiver_options(kind, opts, item, f"{key}.{kind}", source)
        out[name] = ReceiverConfig(name, kind, dict(opts), item.line)
    return out, nulls, project_kinds


def _check_receiver_options(kind: str, opts: dict[str, Any], item: _LineDict, key: str, source: str) -> None:
    entry = REGISTRY[ReceiverKind(kind)]
    for k in opts:
        if k not in (*entry.required, *entry.optional, *COMMON_OPTIONS):
            known = ", ".join((*entry.required, *entry.optional, *COMMON_OPTIONS))
            raise RoutingConfigError(source, _line(opts, str(k)), f"{key}.{k}", f"unknown option; expected {known}")
    for r in entry.required:
        if opts.get(r) in (None, ""):
            raise RoutingConfigError(source, _line(item, kind), f"{key}.{r}", "required")
    if kind == "kafka_queue":
        from services.common.topics import queue_topic

        try:
            queue_topic(str(opts["queue"]))
        except ValueError as exc:
            raise RoutingConfigError(source, _line(opts, "queue"), f"{key}.queue", str(exc)) from None
    for k in ("url",):
        if k in opts and not re.match(r"^https?://", str(opts[k])):
            raise RoutingConfigError(source, _line(opts, k), f"{key}.{k}", "must be an http(s) URL")
    if "heartbeat" in opts:
        try:
            every = parse_duration(opts["heartbeat"])
        except ValueError as exc:
            raise RoutingConfigError(source, _line(opts, "heartbeat"), f"{key}.heartbeat", str(exc)) from None
        if every <= 0:
            raise RoutingConfigError(source, _line(opts, "heartbeat"), f"{key}.heartbeat", "must be positive")
    if "rate_per_minute" in opts:
        rate = opts["rate_per_minute"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
            raise RoutingConfigError(source, _line(opts, "rate_per_minute"), f"{key}.rate_per_minute",
                                     "expected a number of requests per minute (0: no limit)")


def _parse_route(node: Any, parent: _LineDict, key: str, source: str, path: str,
                 receivers: set[str], inherited: dict[str, Any],
                 intervals: dict[str, TimeInterval], slack: frozenset[str] = frozenset()) -> Route:
    if not isinstance(node, _LineDict):
        raise RoutingConfigError(source, _line(parent, key) if isinstance(parent, _LineDict) else None, key,
                                 "expected a mapping")
    for k in node:
        if k not in _ROUTE_KEYS:
            raise RoutingConfigError(source, node.lines[k], f"{key}.{k}", "unknown route key")
    receiver = node.get("receiver", inherited.get("receiver"))
    if not receiver:
        raise RoutingConfigError(source, node.line, f"{key}.receiver", "missing (and nothing to inherit)")
    if receiver not in receivers:
        raise RoutingConfigError(source, _line(node, "receiver"), f"{key}.receiver",
                                 f"unknown receiver {receiver!r}; defined: {', '.join(sorted(receivers))}")
    if not isinstance(node.get("matchers", []), list):
        raise RoutingConfigError(source, _line(node, "matchers"), f"{key}.matchers", "expected a list of strings")
    matchers = _match_maps(node, key, source) + list(_matcher_list(node, "matchers", key, source, required=False))
    values = dict(inherited)
    values["receiver"] = receiver
    for dk in ("group_wait", "group_interval", "repeat_interval", "quiet_period", "triage_timeout"):
        if dk in node:
            try:
                values[dk] = parse_duration(node[dk])
            except ValueError as exc:
                raise RoutingConfigError(source, _line(node, dk), f"{key}.{dk}", str(exc)) from None
            if dk in ("group_interval", "repeat_interval", "triage_timeout") and values[dk] == 0:
                raise RoutingConfigError(source, _line(node, dk), f"{key}.{dk}", f"{dk} cannot be zero")
    if "triage" in node:
        if not isinstance(node["triage"], bool):
            raise RoutingConfigError(source, _line(node, "triage"), f"{key}.triage", "expected true or false")
        values["triage"] = node["triage"]
    if "triage_notify" in node:
        # Our extension, like `triage`: the Slack receiver that gets the "page now / dismiss?" notice of a hold.
        if node["triage_notify"] not in slack:
            raise RoutingConfigError(source, _line(node, "triage_notify"), f"{key}.triage_notify",
                                     f"expected the name of a slack receiver; slack receivers: "
                                     f"{', '.join(sorted(slack)) or 'none'}")
        values["triage_notify"] = node["triage_notify"]
    if "triage_below_confidence" in node:
        floor = node["triage_below_confidence"]
        if isinstance(floor, bool) or not isinstance(floor, int | float) or not 0 < floor <= 1:
            raise RoutingConfigError(source, _line(node, "triage_below_confidence"), f"{key}.triage_below_confidence",
                                     "expected a confidence above 0 and at most 1 (e.g. 0.5)")
        values["triage_below_confidence"] = float(floor)
    if "group_by" in node:
        values["group_by"] = _group_by(node, key, source)
    if "when_muted" in node:
        if node["when_muted"] not in (FALL_THROUGH, STAY):
            raise RoutingConfigError(source, _line(node, "when_muted"), f"{key}.when_muted",
                                     f"expected {FALL_THROUGH} (the next sibling is tried) or {STAY} "
                                     "(Alertmanager: the mention stays on the muted route, nothing is sent)")
        values["when_muted"] = node["when_muted"]
    if "sla" in node:
        values["sla"] = {**inherited["sla"], **_parse_sla(node["sla"], node, f"{key}.sla", source)}
    if "escalate_to" in node:
        if node["escalate_to"] not in receivers:
            raise RoutingConfigError(source, _line(node, "escalate_to"), f"{key}.escalate_to",
                                     f"unknown receiver {node['escalate_to']!r}; "
                                     f"defined: {', '.join(sorted(receivers))}")
        values["escalate_to"] = node["escalate_to"]
    if "sla_time_interval" in node:
        values["sla_time_interval"] = _interval_refs([node["sla_time_interval"]], node, "sla_time_interval", key,
                                                     source, intervals)[0]
    timed = {}
    for tk in ("active_time_intervals", "mute_time_intervals"):
        raw = node.get(tk, [])
        if not isinstance(raw, list):
            raise RoutingConfigError(source, _line(node, tk), f"{key}.{tk}", "expected a list of time interval names")
        timed[tk] = _interval_refs(raw, node, tk, key, source, intervals)
    cont = node.get("continue", False)
    if not isinstance(cont, bool):
        raise RoutingConfigError(source, _line(node, "continue"), f"{key}.continue", "expected true or false")
    route = Route(receiver=receiver, matchers=matchers, continue_=cont, group_by=values["group_by"],
                  group_wait=values["group_wait"], group_interval=values["group_interval"],
                  repeat_interval=values["repeat_interval"], sla=values["sla"], path=path, line=node.line,
                  active_time_intervals=timed["active_time_intervals"],
                  mute_time_intervals=timed["mute_time_intervals"], quiet_period=values["quiet_period"],
                  escalate_to=values["escalate_to"], sla_time_interval=values["sla_time_interval"],
                  when_muted=values["when_muted"], triage=values["triage"],
                  triage_timeout=values["triage_timeout"], triage_notify=values["triage_notify"],
                  triage_below_confidence=values["triage_below_confidence"])
    children = node.get("routes", [])
    if not isinstance(children, list):
        raise RoutingConfigError(source, _line(node, "routes"), f"{key}.routes", "expected a list of routes")
    for i, child in enumerate(children):
        route.routes.append(_parse_route(child, node, f"{key}.routes[{i}]", source, f"{path}/{i}", receivers,
                                         values, intervals, slack))
    return route


def _group_by(node: _LineDict, key: str, source: str) -> list[str]:
    """Alertmanager's rules (config.go Route.UnmarshalYAML): `...` alone groups by every label."""
    raw, line = node["group_by"], _line(node, "group_by")
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise RoutingConfigError(source, line, f"{key}.group_by", "expected a list of labels")
    for label in raw:
        if label != "..." and not is_valid_label_name(label):
            raise RoutingConfigError(source, line, f"{key}.group_by", f"invalid label name {label!r} in group_by list")
    if "..." in raw and len(raw) > 1:
        raise RoutingConfigError(source, line, f"{key}.group_by",
                                 "cannot have wildcard group_by (`...`) and other labels at the same time")
    seen: set[str] = set()
    for label in raw:
        if label in seen:
            raise RoutingConfigError(source, line, f"{key}.group_by", f"duplicated label {label!r} in group_by")
        seen.add(label)
    return list(raw)


def _interval_refs(names: list[Any], node: _LineDict, k: str, key: str, source: str,
                   intervals: dict[str, TimeInterval]) -> list[TimeInterval]:
    out = []
    for n in names:
        if n not in intervals:
            raise RoutingConfigError(source, _line(node, k), f"{key}.{k}",
                                     f"unknown time interval {n!r}; defined: {', '.join(sorted(intervals)) or 'none'}")
        out.append(intervals[n])
    return out
