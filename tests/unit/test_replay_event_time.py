"""`triage replay --event-time --speed N`: history sent in created_at order with its spacing compressed N
times (a local HTTP endpoint stands in for ingest; the clock is virtual, so the test takes no wall time)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.ingest.replay import created_epoch, main, replay_event_time

T0 = 1_793_577_600.0


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[float, list[dict]]] = []
        self.now = 0.0   # the replay's virtual clock when the batch arrived


@pytest.fixture
def ingest() -> Iterator[tuple[str, Recorder]]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            objs = [json.loads(x) for x in body.splitlines() if x]
            rec.batches.append((rec.now, objs))
            out = json.dumps({"accepted": [o["external_id"] for o in objs], "duplicates": []}).encode()
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/mentions", rec
    finally:
        server.shutdown()


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def row(i: int, created: object) -> dict:
    return {"source": "x", "external_id": f"p{i}", "text": f"post {i}", "brands": ["acme"], "created_at": created}


def test_sends_in_created_at_order_with_spacing_compressed(tmp_path: Path, ingest):
    url, rec = ingest
    # File order is not time order; ISO strings, epoch seconds and epoch milliseconds mix.
    rows = [row(3, T0 + 60), row(1, "2026-11-02T00:00:10Z"), row(0, T0), row(2, (T0 + 20) * 1000),
            row(4, None), row(5, "yesterday")]
    path = write(tmp_path / "h.jsonl", rows)

    def clock() -> float:
        return rec.now

    def sleep(s: float) -> None:
        rec.now += s

    report = replay_event_time(path, url, speed=20, clock=clock, sleep=sleep)
    sent = [(round(at, 3), [o["external_id"] for o in objs]) for at, objs in rec.batches]
    # due = (created - first) / 20: 0, 0.5, 1.0, 3.0 seconds after the start
    assert sent == [(0.0, ["p0"]), (0.5, ["p1"]), (1.0, ["p2"]), (3.0, ["p3"])]
    assert report.accepted == 4 and report.event_span == 60.0
    assert [r.split(": ", 1)[1] for r in report.rejected] == ["created_at: required for an event-time replay"] * 2


def test_a_burst_goes_out_in_batches_at_its_time(tmp_path: Path, ingest):
    url, rec = ingest
    rows = [row(i, T0 + i * 0.1) for i in range(50)] + [row(100, T0 + 600)]
    path = write(tmp_path / "b.jsonl", rows)

    def sleep(s: float) -> None:
        rec.now += s

    replay_event_time(path, url, speed=60, batch_size=20, clock=lambda: rec.now, sleep=sleep)
    sizes = [(round(at, 2), len(objs)) for at, objs in rec.batches]
    assert sum(n for _, n in sizes) == 51 and max(n for _, n in sizes) <= 20
    assert sizes[-1] == (10.0, 1)          # 600 s of history later at 60x: 10 s after the start
    assert all(at < 0.1 for at, _ in sizes[:-1])


def test_created_epoch_units():
    assert created_epoch(T0) == T0 and created_epoch(T0 * 1000) == T0
    assert created_epoch("2026-11-02T00:00:00+00:00") == T0 and created_epoch(str(T0)) == T0
    assert created_epoch(True) is None and created_epoch("soon") is None and created_epoch(float("nan")) is None


def test_cli_rejects_a_negative_speed(tmp_path: Path, capsys):
    path = write(tmp_path / "x.jsonl", [row(0, T0)])
    assert main([str(path), "--event-time", "--speed", "-1"]) == 2
    assert "--speed" in capsys.readouterr().err
