"""Free TCP ports on this machine, for the local broker, the services `make up` / `triage demo` start, the
benches and the tests (each starts its pieces on ports nothing else holds)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Ports handed out by this process: never twice, though the service they were for may not have bound yet.
_handed_out: set[int] = set()
_rng = random.SystemRandom()
_LOWEST = 10_000


def _ephemeral_low(default: int = 32_768) -> int:
    """The first port of the kernel's ephemeral range, from which it picks the source port of every outgoing
    connection (and the port of a bind to 0)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default
    return low


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, for a server that binds it a moment later.

    Drawn at random below the kernel's ephemeral range: a port the OS picks (a bind to 0) comes from that range,
    where any client's outgoing connection may take it as its source port before the server binds it (a CI run:
    a router replica died with "Address already in use" on the port it was given). Never the same port twice in
    one process. Falls back to the OS's pick where no such range exists."""
    high = min(_ephemeral_low(), 65_536) - 1
    if high - _LOWEST >= 1_000:
        for _ in range(200):
            port = _rng.randint(_LOWEST, high)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    _handed_out.add(port)
    return port


def port_or_free(port: int, host: str = "127.0.0.1") -> int:
    """`port` when nothing listens on it, else a free one (the demo keeps the usual ports when it can)."""
    return port if _bindable(host, port) else free_port(host)
