"""`free_port` (services/devtools/ports.py): ports for servers the tests, benches and `make up` start."""

from __future__ import annotations

import socket

from services.devtools.ports import _ephemeral_low, free_port, port_or_free


def test_free_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    # Outgoing connections take their source port from the ephemeral range: a port handed out there can be taken
    # before the server binds it ("Address already in use" in a CI run).
    low = _ephemeral_low()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(p < low for p in ports), (low, ports)
    for p in ports[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", p))


def test_port_or_free_keeps_a_free_port_and_moves_off_a_taken_one() -> None:
    wanted = free_port()
    assert port_or_free(wanted) == wanted
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", wanted))
        held.listen()
        other = port_or_free(wanted)
    assert other != wanted
