"""Ingest connection handling (issue 17): a valid request pipelined before garbage gets its own answer
(and the garbage a 400 that does not quote it), one client's concurrent connections are capped (429,
counted, logged once), and headers trickled byte by byte do not hold a connection past the timeout."""

from __future__ import annotations

import asyncio
import json
import socket
import time

from aiohttp import web
from prometheus_client import REGISTRY
from test_ingest_faults import AckingProducer

from services.ingest.app import build_app
from services.ingest.brands import BrandMatcher
from services.ingest.config import IngestSettings
from services.ingest.connections import ConnectionLimiter, IngestRunner


async def _serve(settings: IngestSettings, producer: AckingProducer) -> tuple[web.AppRunner, int]:
    runner = IngestRunner(build_app(settings, producer=producer, matcher=BrandMatcher([])), settings)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def _post(body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST /v1/mentions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(body)) + body


def test_a_valid_request_pipelined_before_garbage_gets_its_own_answer():
    body = json.dumps({"source": "x", "external_id": "pipe-then-junk", "text": "SECRET-BODY-TEXT"}).encode()

    async def main() -> tuple[bytes, AckingProducer]:
        settings = IngestSettings(idle_timeout_seconds=1.0)
        producer = AckingProducer()
        runner, port = await _serve(settings, producer)
        try:
            def exchange() -> bytes:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(_post(body) + b"GARBAGE \x00\x01 not http\r\n\r\n")
                    return _read_all(sock)
            return await asyncio.to_thread(exchange), producer
        finally:
            await runner.cleanup()

    raw, producer = asyncio.run(main())
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 202"), raw
    assert b'"accepted": ["x:pipe-then-junk"]' in rest
    assert [key for _t, key in producer.sent] == [b"x:pipe-then-junk"]
    # The garbage gets its own 400, after the 202, and it does not quote the valid request's body.
    garbage_answer = rest[rest.index(b"HTTP/1.", 1):]
    assert garbage_answer.startswith(b"HTTP/1.0 400") or garbage_answer.startswith(b"HTTP/1.1 400"), raw
    assert b"SECRET-BODY-TEXT" not in garbage_answer


def test_connections_past_the_per_client_limit_are_refused_with_429_and_counted():
    refused = REGISTRY.get_sample_value("triage_ingest_connections_refused_total",
                                        {"reason": "per_client_limit"}) or 0.0

    async def main() -> tuple[bytes, bytes, int]:
        settings = IngestSettings(idle_timeout_seconds=5.0, max_connections_per_client=2)
        runner, port = await _serve(settings, AckingProducer())
        try:
            def scenario() -> tuple[bytes, bytes, int]:
                held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
                started = time.monotonic()
                with socket.create_connection(("127.0.0.1", port), timeout=5) as third:
                    third.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    over = _read_all(third)  # answered and closed at once, not after the idle timeout
                waited = int(time.monotonic() - started)
                held[0].close()
                time.sleep(0.2)  # the server sees the close
                with socket.create_connection(("127.0.0.1", port), timeout=5) as again:
                    again.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    ok = _read_all(again)
                held[1].close()
                return over, ok, waited
            return await asyncio.to_thread(scenario)
        finally:
            await runner.cleanup()

    over, ok, waited = asyncio.run(main())
    head, _, body = over.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429") and b"Retry-After: " in head and waited < 3, over
    assert "too many concurrent connections" in json.loads(body)["error"]
    assert ok.startswith(b"HTTP/1.1 200"), ok  # a freed slot is usable again
    after = REGISTRY.get_sample_value("triage_ingest_connections_refused_total", {"reason": "per_client_limit"})
    assert after == refused + 1


def test_headers_trickled_byte_by_byte_are_cut_off_at_the_idle_timeout():
    async def main() -> float:
        settings = IngestSettings(idle_timeout_seconds=1.0)
        runner, port = await _serve(settings, AckingProducer())
        try:
            def trickle() -> float:
                started = time.monotonic()
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    try:
                        for byte in b"POST /v1/mentions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                            sock.sendall(bytes([byte]))
                            time.sleep(0.1)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    _read_all(sock)
                return time.monotonic() - started
            return await asyncio.to_thread(trickle)
        finally:
            await runner.cleanup()

    assert asyncio.run(main()) < 4  # 13 s of trickling, closed after about 1 s


def test_limiter_counts_per_client_and_logs_refusals_once_per_interval(capsys):
    t = [0.0]
    lim = ConnectionLimiter(2, log_interval=60, clock=lambda: t[0])
    assert lim.open("10.0.0.1") and lim.open("10.0.0.1") and lim.open("10.0.0.2")
    assert not lim.open("10.0.0.1") and not lim.open("10.0.0.1")
    assert (lim.count("10.0.0.1"), lim.total()) == (2, 3)
    lim.close("10.0.0.1")
    assert lim.open("10.0.0.1")
    for c in ("10.0.0.1", "10.0.0.2", "10.0.0.2"):
        lim.close(c)
    assert lim.total() == 1 and lim.count("10.0.0.2") == 0
    assert ConnectionLimiter(0).open("x")  # 0 = unlimited
    logged = capsys.readouterr()
    assert (logged.out + logged.err).count("connections_refused") == 1  # the second refusal was only counted
