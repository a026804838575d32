"""Connection limits of `mlsd serve`: plain uvicorn (as before) vs mlsd's bounded server
(httptools since 2026-12-03, h11 before).

    .venv/bin/python bench/serve_limits.py

For each server, run in its own process on 127.0.0.1 with a small real model: its RSS idle and
after 20 concurrent requests with 20 MB of headers (one header, or 1 KB lines); how many of 300
stalled connections (connected, nothing sent) are still open 5 s after the read timeout; and
requests/s of /v1/predict (one row, 8 concurrent clients): the bounds must cost no throughput.
docs/serving-security.md reports what this printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

READ_TIMEOUT_S = 10.0
_SERVER = r"""
import sys, numpy as np, pandas as pd, uvicorn
from sklearn.linear_model import LogisticRegression
from mlsd.data import infer_schema
from mlsd.serving import ServeSettings, create_app
from mlsd.serving.server import bind_socket, uvicorn_config
from mlsd.store import PackagedModel
from mlsd.store.prediction_log import PredictionLog

mode, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
X = pd.DataFrame({"x": rng.normal(size=500), "z": rng.normal(size=500)})
model = PackagedModel(pipeline=LogisticRegression().fit(X, X["x"] > 0), task="binary", threshold=0.5,
                      input_columns=["x", "z"], schema=infer_schema(X).to_dict())
settings = ServeSettings(model=model, model_name="m", model_version=1, log=PredictionLog(log),
                         read_timeout_s=float(sys.argv[4]))
app = create_app(settings)
if mode == "plain":  # what `mlsd serve` ran before: uvicorn.run(app, host, port)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
else:
    sock = bind_socket("127.0.0.1", port)
    uvicorn.Server(uvicorn_config(app, settings, log_level="error")).run(sockets=[sock])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def _huge_header(port: int, size: int = 20 * 1024 * 1024, *, lines: bool = False) -> None:
    """One request with ``size`` bytes of headers: one header, or (``lines``) 1 KB header lines."""
    block = (b"X-H: " + b"a" * 1000 + b"\r\n") * 64 if lines else b"a" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (b"" if lines else b"X-Big: "))
            for _ in range(size // len(block)):
                s.sendall(block)
            s.sendall(b"\r\n" if lines else b"\r\n\r\n")
            s.recv(1024)
        except OSError:
            pass


async def _throughput(base: str, n: int = 2000, concurrency: int = 8) -> float:
    body = {"inputs": {"x": 0.1, "z": -0.2}}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        queue = iter(range(n))

        async def worker() -> None:
            for _ in queue:
                r = await client.post("/v1/predict", json=body)
                assert r.status_code == 200, r.text

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - start)


def measure(mode: str) -> dict[str, float]:
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = f"sqlite:///{tmp}/log.db"
        proc = subprocess.Popen([sys.executable, "-c", _SERVER, mode, str(port), log, str(READ_TIMEOUT_S)])
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
            rps = asyncio.run(_throughput(base))
            time.sleep(1)
            idle = _rss_mib(proc.pid)
            with ThreadPoolExecutor(20) as pool:  # at once; half one 20 MB header, half 1 KB lines
                list(pool.map(lambda i: _huge_header(port, lines=i % 2 == 1), range(20)))
            time.sleep(1)
            after = _rss_mib(proc.pid)
            stalled = [socket.create_connection(("127.0.0.1", port), timeout=1) for _ in range(300)]
            time.sleep(READ_TIMEOUT_S + 5)
            still_open = 0
            for s in stalled:
                try:
                    s.setblocking(False)
                    still_open += s.recv(1) != b""
                except BlockingIOError:
                    still_open += 1  # nothing to read and not closed
                except OSError:
                    pass
                s.close()
            return {
                "predict_rps": round(rps),
                "rss_idle_mib": round(idle, 1),
                "rss_after_20x20MB_headers_mib": round(after, 1),
                "stalled_open_after_timeout": still_open,
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    for mode in ("plain", "mlsd"):
        print(json.dumps({"server": mode, **measure(mode)}), flush=True)
