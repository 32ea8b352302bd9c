"""Fail closed: a service that other hosts can reach refuses to start without its credentials.

Alertmanager behind its web config, PagerDuty and Strimzi all treat a missing secret as a refusal,
never as an open door. Each service lists what it lacks (`missing` below: the env vars to set); when
it binds anything but a loopback address that list must be empty, unless `TRIAGE_INSECURE_DEV=1`
says this is a developer's machine (`make demo` and `make up` set it, nothing else does).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

INSECURE_DEV_ENV = "TRIAGE_INSECURE_DEV"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`; False for 0.0.0.0, ::, a name or any other address."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything


def start_refusal(service: str, host: str, missing: Sequence[str], insecure_dev: bool) -> str | None:
    """The one line a service prints before exiting, or None when it may start."""
    if not missing or insecure_dev or is_loopback(host):
        return None
    return (f"{service} refuses to start: it binds {host}, reachable from other hosts, without "
            f"{' and '.join(missing)}; set it, or bind 127.0.0.1, or set {INSECURE_DEV_ENV}=1 on a developer's "
            "machine")


def in_networks(address: str | None, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """True when `address` (a peer's IP) lies in one of `networks`; False for None or a non-IP."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks if net.version == ip.version)


def client_address(remote: str | None, forwarded_for: str | None,
                   trusted_proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The address of the client behind a request, as far as it can be trusted.

    `X-Forwarded-For` is read only when the peer itself is a trusted proxy, and then from the right:
    the first hop that is not a trusted proxy is the client (what sits left of it could be written by
    the client, so it is never believed). From any other peer the header is ignored.
    """
    peer = remote or "unknown"
    if not forwarded_for or not trusted_proxies or not in_networks(remote, trusted_proxies):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not in_networks(hop, trusted_proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage where an address belongs: trust nothing further left
    return hops[0] if hops else peer
