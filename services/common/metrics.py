"""Metrics every service shares, and the /metrics HTTP endpoint (with a worker's probes beside it).

Names follow `triage_<subsystem>_<name>_<unit>`; labels are bounded (service,
topic, stage, outcome, reason class), never mention ids or handles.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Info, make_wsgi_app

MESSAGES_IN = Counter(
    "triage_messages_in_total", "Messages consumed or received, per service and topic", ["service", "topic"]
)
MESSAGES_OUT = Counter("triage_messages_out_total", "Messages produced, per service and topic", ["service", "topic"])
MESSAGES_FAILED = Counter(
    "triage_messages_failed_total",
    "Messages a stage could not process (each also goes to the DLQ or is rejected with a 4xx)",
    ["service", "stage", "reason"],
)
DEAD_LETTERS = Counter("triage_dead_letters_total", "Messages written to mentions.dlq, per stage", ["service", "stage"])
# Buckets span a fast path (tens of ms) to a backed-up pipeline (minutes).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
BUILD_INFO = Info("triage_build", "Version of the running service")




class ProbeAnswerLike(Protocol):
    @property
    def status(self) -> int: ...
    @property
    def body(self) -> str: ...


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every few seconds would flood the log


def metrics_app(probes: Mapping[str, Callable[[], ProbeAnswerLike]] | None = None) -> Callable[..., Iterable[bytes]]:
    """WSGI app: `probes` paths answer their probe (200 or 503, plain text); any other path is /metrics."""
    metrics = make_wsgi_app()
    routes = dict(probes or {})

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        probe = routes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        answer = probe()
        body = answer.body.encode()
        status = "200 OK" if answer.status == 200 else f"{answer.status} Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store")])
        return [body]

    return app


def serve_metrics(port: int, host: str = "127.0.0.1",
                  probes: Mapping[str, Callable[[], ProbeAnswerLike]] | None = None) -> WSGIServer:
    """Expose the default registry on http://host:port/metrics, and `probes` (path -> answer) beside it,
    from a daemon thread; returns the server (`shutdown()` stops it)."""
    server = make_server(host, port, metrics_app(probes), _ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name=f"metrics-{port}", daemon=True).start()
    return server
