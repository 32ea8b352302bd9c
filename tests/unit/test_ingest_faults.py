"""Server faults at ingest: a JSON 500 logged once per cause, not a traceback per request; aiohttp's own
error logs rate-limited; pipelined valid requests on one connection each answered."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

from aiohttp import web

from services.ingest import faults
from services.ingest.app import build_app
from services.ingest.brands import BrandMatcher
from services.ingest.config import IngestSettings
from services.ingest.connections import IngestRunner


class AckingProducer:
    """Stands in for a started AIOKafkaProducer: every send is acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        self.sent.append((topic, key))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


async def _serve(app: web.Application, settings: IngestSettings) -> tuple[web.AppRunner, int]:
    runner = IngestRunner(app, settings)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


def test_unexpected_exception_is_a_json_500_logged_once_per_cause(monkeypatch):
    reports: list[bool] = []
    real = faults.FAULTS.report
    monkeypatch.setattr(faults.FAULTS, "report", lambda where, exc: reports.append(real(where, exc)) or True)

    async def main() -> list[bytes]:
        settings = IngestSettings(idle_timeout_seconds=1.0)
        app = build_app(settings, producer=AckingProducer(), matcher=BrandMatcher([]))

        async def boom(_: web.Request) -> web.Response:
            raise RuntimeError("a bug of ours")

        app.router.add_post("/boom", boom)
        runner, port = await _serve(app, settings)
        try:
            req = b"POST /boom HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            return [await asyncio.to_thread(_exchange, port, req) for _ in range(5)]
        finally:
            await runner.cleanup()

    answers = asyncio.run(main())
    for raw in answers:
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 500") and "error" in json.loads(body)
    assert reports == [True, False, False, False, False]  # logged once, then counted and suppressed


def test_pipelined_valid_requests_are_each_answered_in_order():
    async def main() -> tuple[bytes, AckingProducer]:
        settings = IngestSettings(idle_timeout_seconds=1.0)
        producer = AckingProducer()
        runner, port = await _serve(build_app(settings, producer=producer, matcher=BrandMatcher([])), settings)
        try:
            data = b""
            for i in range(3):
                body = json.dumps({"source": "x", "external_id": f"pipe-{i}", "text": "hi"}).encode()
                data += (b"POST /v1/mentions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body)) + body
            return await asyncio.to_thread(_exchange, port, data), producer
        finally:
            await runner.cleanup()

    raw, producer = asyncio.run(main())
    assert raw.count(b"HTTP/1.1 202") == 3
    assert [raw.index(f"x:pipe-{i}".encode()) for i in range(3)] == sorted(raw.index(f"x:pipe-{i}".encode())
                                                                          for i in range(3))
    assert [key for _t, key in producer.sent] == [b"x:pipe-0", b"x:pipe-1", b"x:pipe-2"]


def test_aiohttp_error_logs_are_rate_limited_per_cause():
    t = [0.0]
    flt = faults.RateLimitFilter(interval=60, clock=lambda: t[0])

    def rec(msg: str, exc: type[BaseException] | None = None) -> logging.LogRecord:
        return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, msg, None,
                                 (exc, exc(), None) if exc else None)

    assert flt.filter(rec("Error handling request", ValueError))
    assert not any(flt.filter(rec("Error handling request", ValueError)) for _ in range(50))
    assert flt.filter(rec("Error handling request", KeyError))
    t[0] = 61
    assert flt.filter(rec("Error handling request", ValueError))


def test_dedupe_window_metrics_fall_to_zero_after_the_window_expires():
    async def main() -> tuple[str, str]:
        settings = IngestSettings(idle_timeout_seconds=1.0, dedupe_window_seconds=0.5)
        runner, port = await _serve(build_app(settings, producer=AckingProducer(), matcher=BrandMatcher([])),
                                    settings)
        try:
            body = "\n".join(json.dumps({"source": "x", "external_id": f"win-{i}", "text": "hi"})
                             for i in range(200)).encode()
            req = (b"POST /v1/mentions HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                   b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
            metrics = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            assert b" 202 " in await asyncio.to_thread(_exchange, port, req)
            during = (await asyncio.to_thread(_exchange, port, metrics)).decode()
            await asyncio.sleep(0.7)
            after = (await asyncio.to_thread(_exchange, port, metrics)).decode()
            return during, after
        finally:
            await runner.cleanup()

    def gauge(page: str, name: str) -> float:
        return next(float(line.split()[1]) for line in page.splitlines() if line.startswith(name + " "))

    during, after = asyncio.run(main())
    assert gauge(during, "triage_ingest_dedupe_entries") == 200
    assert gauge(during, "triage_ingest_dedupe_bytes") > 200 * 100
    assert gauge(after, "triage_ingest_dedupe_entries") == 0 and gauge(after, "triage_ingest_dedupe_bytes") == 0


def test_a_body_that_does_not_decode_as_its_content_encoding_is_400_not_500():
    async def main() -> bytes:
        settings = IngestSettings(idle_timeout_seconds=1.0)
        runner, port = await _serve(build_app(settings, producer=AckingProducer(), matcher=BrandMatcher([])),
                                    settings)
        try:
            body = b"not gzip at all"
            req = (b"POST /v1/mentions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Encoding: gzip\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
            return await asyncio.to_thread(_exchange, port, req)
        finally:
            await runner.cleanup()

    head, _, body = asyncio.run(main()).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert json.loads(body)["errors"] == [{"field": "$", "reason": "Can not decode content-encoding: gzip"}]
