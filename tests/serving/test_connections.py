"""Bounded connections against the real server (`mlsd.serving.server`) on 127.0.0.1.

Stalled connections (nothing sent, headers trickled byte by byte, a body that stops) are closed
once ``read_timeout_s`` has passed while normal requests keep working; an oversized head is
refused and the connection closed without the server buffering it; past
``max_concurrent_connections`` a new connection gets 503. The RSS figure: 20 concurrent requests
with 20 MB of headers leave the resident memory of the process (the server runs in a thread here)
within 10 % of idle. ``bench/serve_limits.py`` measures the server alone, before and after.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from mlsd.serving import ServeSettings, create_app
from mlsd.serving.server import bind_socket, uvicorn_config
from mlsd.store.prediction_log import PredictionLog

READ_TIMEOUT_S = 1.5
WAIT_S = READ_TIMEOUT_S + 10  # generous: the test checks that they close, not how fast


@contextlib.contextmanager
def _server(flights: Any, tmp_path: Path, **overrides: Any) -> Iterator[tuple[str, int]]:
    settings = ServeSettings(
        model=flights.model,
        model_name="m",
        model_version=1,
        log=PredictionLog(f"sqlite:///{tmp_path / 'log.db'}"),
        read_timeout_s=READ_TIMEOUT_S,
        **overrides,
    )
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
        assert not thread.is_alive()


def _open(port: int, first: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    if first:
        s.sendall(first)
    return s


def _read_until_closed(s: socket.socket) -> bytes | None:
    """Everything the server sent before closing, or None if it was still open after WAIT_S."""
    chunks = []
    try:
        while chunk := s.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return b"".join(chunks)


HEAD = b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def test_stalled_and_slow_connections_are_closed_while_requests_work(flights, tmp_path) -> None:
    with _server(flights, tmp_path) as (_, port):
        idle = [_open(port) for _ in range(30)]  # connect and send nothing
        partial = [_open(port, HEAD) for _ in range(10)]  # headers never finished
        body = [  # headers done, the body stops after 10 of 100 bytes
            _open(port, HEAD + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"inputs":')
            for _ in range(10)
        ]
        trickle = _open(port, HEAD)
        stop = threading.Event()

        def slowloris() -> None:  # one header line every 0.2 s: never idle, never done
            with contextlib.suppress(OSError):
                for i in range(200):
                    if stop.wait(0.2):
                        return
                    trickle.sendall(b"X-Slow-%d: x\r\n" % i)

        sender = threading.Thread(target=slowloris, daemon=True)
        sender.start()
        # while 51 connections hang, normal requests are answered
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for row in flights.rows[:5]:
                assert client.post("/v1/predict", json={"inputs": row}).status_code == 200
            assert client.get("/healthz").status_code == 200
        results = {
            "idle": [_read_until_closed(s) for s in idle],
            "partial": [_read_until_closed(s) for s in partial],
            "body": [_read_until_closed(s) for s in body],
            "slowloris": [_read_until_closed(trickle)],
        }
        stop.set()
        sender.join(timeout=5)
        for s in [*idle, *partial, *body, trickle]:
            s.close()
        assert {k: sum(r is None for r in v) for k, v in results.items()} == {
            "idle": 0,
            "partial": 0,
            "body": 0,
            "slowloris": 0,
        }, "connections still open after the read timeout"
        assert all(r == b"" for r in results["idle"])  # nothing was asked: closed silently
        assert all(r.startswith(b"HTTP/1.1 408 ") for r in results["partial"] + results["slowloris"])
        # and the server still answers afterwards
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200


def _send_huge_header(port: int, size: int, *, lines: bool = False) -> bytes | None:
    """A request with ``size`` bytes of headers (one header, or ``lines`` of 1 KB), sent in
    64 KiB blocks (the client holds one block, not 20 MB); what the server answered before closing."""
    block = (b"X-H: " + b"a" * 1000 + b"\r\n") * 64 if lines else b"a" * 65536
    s = _open(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (b"" if lines else b"X-Big: "))
    with s:
        try:
            for _ in range(size // len(block)):
                s.sendall(block)
            s.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed by the server mid-send: what we want
        return _read_until_closed(s)


def _rss_kib() -> int:
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def test_huge_headers_are_refused_without_growing_the_server(flights, tmp_path) -> None:
    mb20 = 20 * 1024 * 1024
    with _server(flights, tmp_path, max_header_bytes=16_384) as (_, port):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        answer = _send_huge_header(port, mb20)
        assert answer is not None and answer.startswith(b"HTTP/1.1 431 ")
        assert b'"type": "request_header_fields_too_large"' in answer  # the error schema
        idle = _rss_kib()
        with ThreadPoolExecutor(20) as pool:  # 20 at once: half one header, half 1 KB lines
            answers = list(pool.map(lambda i: _send_huge_header(port, mb20, lines=i % 2 == 1), range(20)))
        after = _rss_kib()
        print(f"server RSS: idle {idle / 1024:.1f} MiB, after 20 x 20 MB headers {after / 1024:.1f} MiB")
        assert all(a is not None and a.startswith(b"HTTP/1.1 431 ") for a in answers)
        assert after <= idle * 1.10
        # a head under the limit is served
        ok = httpx.get(f"{base}/healthz", headers={"x-big": "a" * 8000}, timeout=10)
        assert ok.status_code == 200


def test_an_oversized_head_is_closed_and_normal_requests_continue(flights, tmp_path) -> None:
    with _server(flights, tmp_path, max_header_bytes=4096) as (_, port):
        answer = _send_huge_header(port, 1024 * 1024)
        assert answer is not None and answer.startswith(b"HTTP/1.1 431 ")
        long_line = _open(port, b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\n")
        with long_line:
            assert (_read_until_closed(long_line) or b"").startswith(b"HTTP/1.1 431 ")
        garbage = _open(port, b"NOT HTTP AT ALL\r\n\r\n")
        with garbage:
            assert (_read_until_closed(garbage) or b"").startswith(b"HTTP/1.1 400 ")
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"x-ok": "a" * 1000}, timeout=10)
        assert r.status_code == 200


def test_a_whole_head_past_the_bound_in_one_read_is_refused(flights, tmp_path) -> None:
    """A complete head of 5 KB sent at once: the parser finishes it in one read, its size decides."""
    with _server(flights, tmp_path, max_header_bytes=4096) as (_, port):
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
        with _open(port, head) as s:
            answer = _read_until_closed(s) or b""
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        near = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Ok: " + b"a" * 3900 + b"\r\n\r\n"
        with _open(port, near) as s:
            assert s.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_connections_past_the_cap_get_503(flights, tmp_path) -> None:
    with _server(flights, tmp_path, max_concurrent_connections=5) as (_, port):
        held = [_open(port) for _ in range(5)]
        time.sleep(0.2)  # let the server accept them (not a timing assertion)
        extra = _open(port)
        with extra:
            answer = _read_until_closed(extra)
        assert answer is not None and answer.startswith(b"HTTP/1.1 503 ")
        for s in held:
            s.close()
        deadline = time.monotonic() + 10
        while True:  # once they are gone, the server takes connections again
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
