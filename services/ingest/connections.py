"""Connection handling of the ingest HTTP server: what one client may hold open, and how requests on
one connection are read.

- **Per-client connections.** `ConnectionLimiter` (pure) counts the open connections of each peer
  address; past `max_connections_per_client` a new connection is answered 429 at once (JSON body,
  `Retry-After`, `Connection: close`), counted in `triage_ingest_connections_refused_total` and logged
  at most once a minute per cause, then closed, so a client opening sockets it never uses (slowloris)
  holds at most that many. The peer is the TCP peer. A peer in `trusted_proxies` (the ingress
  controller) carries many clients' requests, so it gets `max_connections_per_proxy` instead; the
  clients behind it are told apart per request (X-Forwarded-For, believed only from those peers) by
  the rate limit in app.py, since a connection has no headers yet when it is counted.
- **Header-read and idle timeout.** aiohttp's keep-alive timer (`idle_timeout_seconds`) closes a
  connection whose request headers are not complete that long after connecting or after the last
  response, however slowly the bytes trickle in (see `server_options`).
- **Malformed HTTP.** aiohttp answers bytes it cannot parse as HTTP with a 400 that quoted them,
  and it parses everything one read delivered at once, so a valid request pipelined in the same read
  before the garbage is dropped with it (never processed, never produced) and its body was quoted
  back. The 400 is now JSON, quotes nothing, and says that nothing of that read was processed, so a
  client that pipelines knows to resend its requests one at a time. (Parsing one request per read,
  aiohttp's queue bound at 1, answered the valid request first, but wedged about 1 keep-alive
  request in 600 until the idle timeout: not worth it for a practice clients do not use.)

`IngestRunner` is `web.AppRunner` with these applied; `serve()` runs it until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest

from services.common.exposure import in_networks
from services.common.logging import get_logger
from services.ingest import metrics as m
from services.ingest.config import IngestSettings

log = get_logger("ingest")

def server_options(settings: IngestSettings) -> dict[str, Any]:
    """aiohttp server settings (for `web.AppRunner`): idle connections and requests whose headers never
    complete are closed after `idle_timeout_seconds`; header lines and counts are bounded."""
    return {"keepalive_timeout": settings.idle_timeout_seconds, "max_line_size": 8190, "max_field_size": 8190,
            "max_headers": 64, "lingering_time": 2.0}


class ConnectionLimiter:
    """Open connections per client (pure); `limit` 0 = unlimited. Refusals are logged at most once per
    `log_interval` seconds, with how many were refused since the last line."""

    def __init__(self, limit: int, log_interval: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 trusted_proxies: Sequence[IPv4Network | IPv6Network] = (), proxy_limit: int = 0):
        self.limit = limit
        self.trusted_proxies = list(trusted_proxies)
        self.proxy_limit = proxy_limit
        self.log_interval = log_interval
        self._clock = clock
        self._open: dict[str, int] = {}
        self._refused_since_log = 0
        self._last_log: float | None = None

    def limit_for(self, client: str) -> int:
        """The connections `client` may hold: a trusted proxy's limit for a proxy, else the per-client one."""
        return self.proxy_limit if in_networks(client, self.trusted_proxies) else self.limit

    def open(self, client: str) -> bool:
        """Counts a new connection of `client`; False (and not counted) when it is over the limit."""
        n = self._open.get(client, 0)
        limit = self.limit_for(client)
        if limit and n >= limit:
            self._refused(client, limit)
            return False
        self._open[client] = n + 1
        return True

    def close(self, client: str) -> None:
        n = self._open.get(client, 0) - 1
        if n > 0:
            self._open[client] = n
        else:
            self._open.pop(client, None)

    def count(self, client: str) -> int:
        return self._open.get(client, 0)

    def total(self) -> int:
        return sum(self._open.values())

    def _refused(self, client: str, limit: int) -> None:
        m.CONNECTIONS_REFUSED.labels("per_client_limit").inc()
        self._refused_since_log += 1
        now = self._clock()
        if self._last_log is None or now - self._last_log >= self.log_interval:
            # The address is the operator's to see (it is what to block); never a token or a body.
            log.warning("connections_refused", reason="per_client_limit", client=client, limit=limit,
                        refused=self._refused_since_log)
            self._last_log = now
            self._refused_since_log = 0


def _client_of(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "local")


def _refusal(limit: int, retry_after: int) -> bytes:
    body = json.dumps({"error": f"too many concurrent connections from this client (limit {limit}); "
                                "reuse a connection or retry later"}).encode()
    head = (f"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            f"\r\nRetry-After: {retry_after}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


MALFORMED_HTTP = ("malformed HTTP request; nothing received with it on this connection was processed "
                  "(requests pipelined before it included): resend them one at a time, on a new connection")


class IngestRequestHandler(web_protocol.RequestHandler):
    """aiohttp's per-connection protocol, answering unparseable HTTP with a JSON 400 that quotes nothing."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        answer = super().handle_error(request, status, exc, message)  # logs (rate-limited) as aiohttp does
        if status != 400 or not isinstance(exc, HttpProcessingError):
            return answer
        m.MENTIONS_REJECTED.labels("malformed_http").inc()
        reason = type(exc).__name__  # the parser's message quotes the bytes: not sent back, nor kept
        resp = web.json_response({"error": MALFORMED_HTTP, "errors": [{"field": "$", "reason": reason}]},
                                 status=400)
        resp.force_close()
        return resp


class ConnectionLimitedServer(web.Server):
    """aiohttp's low-level server with `IngestRequestHandler`, refusing a client's connections past
    `limiter.limit`."""

    def __init__(self, limiter: ConnectionLimiter, *args: Any, retry_after: int = 1, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.limiter = limiter
        self.retry_after = retry_after
        self._handler_options = kwargs
        self._clients: dict[web_protocol.RequestHandler, str] = {}

    def __call__(self) -> web_protocol.RequestHandler:
        options = {k: v for k, v in self._handler_options.items() if k not in ("loop", "handler_cancellation",
                                                                                "request_factory")}
        return IngestRequestHandler(self, loop=asyncio.get_running_loop(), **options)

    def connection_made(self, handler: web_protocol.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        client = _client_of(transport)
        if not self.limiter.open(client):
            # Answer before reading anything (the request is never parsed), half-close, and drop the socket
            # a moment later: the client reads a 429 rather than a reset.
            transport.pause_reading()
            transport.write(_refusal(self.limiter.limit_for(client), self.retry_after))
            if transport.can_write_eof():
                transport.write_eof()
            asyncio.get_running_loop().call_later(1.0, handler.force_close)
            return
        self._clients[handler] = client
        m.CONNECTIONS_OPEN.set(self.limiter.total())

    def connection_lost(self, handler: web_protocol.RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        client = self._clients.pop(handler, None)
        if client is not None:
            self.limiter.close(client)
            m.CONNECTIONS_OPEN.set(self.limiter.total())


class IngestRunner(web.AppRunner):
    """`web.AppRunner` with the ingest server's connection handling (timeouts, malformed HTTP, per-client
    limit)."""

    def __init__(self, app: web.Application, settings: IngestSettings, **kwargs: Any):
        super().__init__(app, **{**server_options(settings), **kwargs})
        self.limiter = ConnectionLimiter(settings.max_connections_per_client, trusted_proxies=settings.trusted_proxies,
                                         proxy_limit=settings.max_connections_per_proxy)
        self._retry_after = settings.retry_after_seconds

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()  # starts the app; the same handler, with the runner's options
        return ConnectionLimitedServer(self.limiter, base.request_handler, request_factory=base.request_factory,
                                       handler_cancellation=base.handler_cancellation,
                                       retry_after=self._retry_after, **self._kwargs)


async def serve(app: web.Application, settings: IngestSettings) -> None:
    """Runs `app` on `ingest_host:ingest_port` until SIGINT or SIGTERM, then shuts down gracefully."""
    runner = IngestRunner(app, settings, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, settings.ingest_host, settings.ingest_port).start()
        await stop.wait()
    finally:
        await runner.cleanup()
