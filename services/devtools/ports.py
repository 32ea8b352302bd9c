"""Free TCP ports on this machine, for the local broker, the services `make up` / `triage demo` start, the
benches and the tests (each starts its pieces on ports nothing else holds)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_or_free(port: int, host: str = "127.0.0.1") -> int:
    """`port` when nothing listens on it, else a free one (the demo keeps the usual ports when it can)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
            return port
        except OSError:
            pass
    return free_port(host)
