"""`mlsd serve --workers 2` end to end: real server processes on 127.0.0.1, the tiny design.

Which worker answered is read from the kernel: the server-side socket of a client's connection
(``/proc/net/tcp``) belongs to one worker's file descriptors. Every test sends a bounded number
of requests and stops the server itself (SIGTERM) or kills one worker (SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from mlsd.cli import app
from support import mlsd_cli, mlsd_server, tiny_design

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serve-workers")]

ADMIN_TOKEN = "workers-test-admin-token"
CANARY = {"strategy": "canary", "steps": [20, 100], "step_min_requests": 100000, "state_refresh_s": 0.3}


def _write(folder: Path, name: str, deployment: dict[str, Any], **params: Any) -> Path:
    design = tiny_design()
    design["deployment"] = deployment
    if params:  # another model on the same inputs (a challenger must read the champion's)
        design["models"]["candidates"] = [{"name": "lr", "type": "logistic_regression", "params": params}]
    path = folder / name
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def designs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One workspace: the tiny champion, a challenger (another C) under ``challenger``, and
    a design file per strategy served (the same ``name:``, so the same registry)."""
    folder = tmp_path_factory.mktemp("workers")
    single = _write(folder, "single.yaml", {"strategy": "single"})
    done = mlsd_cli("build", str(single))
    assert done.returncode == 0, done.stdout + done.stderr
    challenger = _write(folder, "challenger.yaml", CANARY, C=0.05)
    done = mlsd_cli("build", str(challenger), "--alias", "challenger")
    assert done.returncode == 0, done.stdout + done.stderr
    return {"single": single, "canary": _write(folder, "canary.yaml", CANARY)}


def _rows(design: Path, n: int) -> pd.DataFrame:
    from mlsd.system import System

    rows, _ = System(design).replay_rows("test")
    return pd.concat([rows] * (n // len(rows) + 1), ignore_index=True).head(n)


def _workers(parent: int) -> set[int]:
    """The parent's child processes (its workers)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                found.add(int(stat.parent.name))
    return found


def _owner(server_port: int, client_port: int, pids: set[int]) -> int | None:
    """Which of ``pids`` holds the server side of the connection from ``client_port``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == server_port and int(f[2].split(":")[1], 16) == client_port:
            inodes.add(f"socket:[{f[9]}]")
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return pid
    return None


def _request(
    url: str, pids: set[int], method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int | None, int, Any]:
    """One request on a new connection: (the worker that answered, status, JSON body)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        answer = conn.getresponse()
        data = json.loads(answer.read())
        # answered on a keep-alive connection: the worker still holds it
        worker = _owner(int(port), conn.sock.getsockname()[1], pids)
        return worker, answer.status, data
    finally:
        conn.close()


def _on_each_worker(
    url: str, pids: set[int], *args: Any, every: list[Any] | None = None, **kwargs: Any
) -> dict[int, Any]:
    """The same request on new connections until every worker answered it (a restarted worker
    may still be loading: at most 60 s and 2,000 requests): each worker's first answer. ``every``
    gets all the answers (a prediction sent until both workers answered is logged each time)."""
    answers: dict[int, Any] = {}
    deadline = time.monotonic() + 60
    for _ in range(2000):
        if time.monotonic() > deadline:
            break
        worker, status, data = _request(url, pids, *args, **kwargs)
        assert status == 200, data
        if every is not None:
            every.append(data)
        if worker is not None:
            answers.setdefault(worker, data)
        if set(answers) == pids:
            return answers
    raise AssertionError(f"not every worker answered: {sorted(answers)} of {sorted(pids)}")


def _logged(log_url: str) -> pd.DataFrame:
    from mlsd.store import PredictionLog

    return PredictionLog(log_url).read_predictions()


def _replay_in_thread(url: str, rows: pd.DataFrame) -> tuple[threading.Thread, dict[str, Any]]:
    from mlsd.serving.replay import replay_async

    holder: dict[str, Any] = {}

    def run() -> None:
        holder["result"] = asyncio.run(replay_async(url, rows, concurrency=8, timeout=10))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, holder


def _until(predicate: Any, what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def _predictions_total(url: str) -> float:
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        text = httpx.get(f"{url}/metrics", timeout=5).text
        return sum(
            float(ln.rsplit(" ", 1)[1])
            for ln in text.splitlines()
            if ln.startswith("mlsd_predictions_total{")
        )
    return 0.0


def test_workers_must_be_at_least_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "design.yaml"), "--workers", "0"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "Invalid value for '--workers'" in output and "greater than or equal to 1" in output, output


def test_a_port_in_use_is_refused_before_any_worker_starts(designs: dict[str, Path]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = mlsd_cli("serve", str(designs["single"]), "--port", str(port), "--workers", "2", timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_two_workers_answer_and_every_answer_is_logged_once(designs: dict[str, Path], tmp_path: Path) -> None:
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    design = designs["single"]
    with mlsd_server(design, "--workers", "2", "--log-url", log_url) as (proc, url):
        pids = _workers(proc.pid)
        assert len(pids) == 2, pids
        row = json.loads(_rows(design, 1).to_json(orient="records", date_format="iso"))[0]
        answered: list[Any] = []
        _on_each_worker(url, pids, "POST", "/v1/predict", {"inputs": row}, every=answered)
        thread, holder = _replay_in_thread(url, _rows(design, 400))
        thread.join(120)
        # a second server on the port is refused while the workers hold it
        port = url.rsplit(":", 1)[1]
        second = mlsd_cli("serve", str(design), "--port", port, "--workers", "2", timeout=120)
        # every worker's counter summed, whichever worker answers the scrape
        totals = {_predictions_total(url) for _ in range(8)}
    assert proc.returncode == 0, proc.stderr.read()
    result = holder["result"]
    assert result.ok == 400, result.statuses
    assert second.returncode == 2 and "already in use" in second.stderr, second.stderr
    acknowledged = [a["predictions"][0]["request_id"] for a in answered] + result.acknowledged
    logged = _logged(log_url)
    assert logged["request_id"].is_unique
    assert sorted(logged["request_id"]) == sorted(acknowledged)
    assert totals == {float(len(acknowledged))}, totals  # any worker's scrape: the sum of both


def test_sigterm_drains_every_worker_mid_load(designs: dict[str, Path], tmp_path: Path) -> None:
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    with mlsd_server(designs["single"], "--workers", "2", "--log-url", log_url) as (proc, url):
        thread, holder = _replay_in_thread(url, _rows(designs["single"], 4000))
        _until(lambda: _predictions_total(url) >= 200, "200 answers")
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        thread.join(120)
    stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr
    result = holder["result"]
    assert 200 <= result.ok < 4000, result.statuses  # stopped mid-replay
    logged = _logged(log_url)
    assert logged["request_id"].is_unique
    missing = set(result.acknowledged) - set(logged["request_id"])
    assert not missing, f"{len(missing)} answered predictions are not in the log"
    assert "Traceback" not in stderr


def test_a_killed_worker_is_restarted_and_no_answer_is_lost(designs: dict[str, Path], tmp_path: Path) -> None:
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    design = designs["single"]
    with mlsd_server(design, "--workers", "2", "--log-url", log_url) as (proc, url):
        before = _workers(proc.pid)
        thread, holder = _replay_in_thread(url, _rows(design, 3000))
        _until(lambda: _predictions_total(url) >= 200, "200 answers")
        victim = min(before)
        os.kill(victim, signal.SIGKILL)  # mid-load: its writer may be inside a transaction

        def restarted() -> set[int] | None:
            pids = _workers(proc.pid)
            return pids if len(pids) == 2 and victim not in pids else None

        after = _until(restarted, "a restart")
        thread.join(120)
        row = json.loads(_rows(design, 1).to_json(orient="records", date_format="iso"))[0]
        answered: list[Any] = []  # the new one serves
        _on_each_worker(url, after, "POST", "/v1/predict", {"inputs": row}, every=answered)
    stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr
    assert f"(pid {victim}) was killed by SIGKILL unexpectedly; restarting it" in stderr, stderr
    result = holder["result"]
    assert result.ok >= 200, result.statuses
    acknowledged = [a["predictions"][0]["request_id"] for a in answered] + result.acknowledged
    logged = _logged(log_url)
    assert logged["request_id"].is_unique
    missing = set(acknowledged) - set(logged["request_id"])
    assert not missing, f"{len(missing)} answered predictions are missing from the log"


def test_both_workers_route_by_one_canary_state(
    designs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", ADMIN_TOKEN)
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    with mlsd_server(designs["canary"], "--workers", "2", "--log-url", log_url) as (proc, url):
        pids = _workers(proc.pid)
        states = _on_each_worker(url, pids, "GET", "/v1/admin/state", token=ADMIN_TOKEN)
        first = [(s["revision"], s["state"]) for s in states.values()]
        assert first[0] == first[1] and first[0][1]["canary_step"] == 0, first
        # one worker rolls the canary back; the other reads it from the log at its next refresh
        worker, status, body = _request(url, pids, "POST", "/v1/admin/rollback", {}, token=ADMIN_TOKEN)
        assert status == 200 and body["rolled_back"] == "canary", body
        others = pids - {worker}

        def rolled_back_everywhere() -> dict[int, Any] | None:
            seen = _on_each_worker(url, pids, "GET", "/v1/admin/state", token=ADMIN_TOKEN)
            return seen if all(s["rolled_back"] for s in seen.values()) else None

        seen = _until(rolled_back_everywhere, "the rollback reaching every worker")
        row = json.loads(_rows(designs["canary"], 1).to_json(orient="records", date_format="iso"))[0]
        after = _on_each_worker(url, pids, "POST", "/v1/predict", {"inputs": row})
    assert proc.returncode == 0, proc.stderr.read()
    assert others and len({(s["revision"], json.dumps(s["state"])) for s in seen.values()}) == 1, seen
    assert all(a["predictions"][0]["variant"] == "champion" for a in after.values()), after
    from mlsd.store import PredictionLog

    # one rollback event: the other worker took the state from the log, it did not roll back again
    assert list(PredictionLog(log_url).read_events()["kind"]).count("rollback") == 1
    logged = _logged(log_url)  # every prediction came after the rollback: the champion answered all
    assert len(logged) >= 2 and set(logged["variant"]) == {"champion"}, logged["variant"].value_counts()


def test_workers_that_keep_dying_stop_the_server(designs: dict[str, Path], tmp_path: Path) -> None:
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    with mlsd_server(designs["single"], "--workers", "2", "--log-url", log_url) as (proc, url):
        # both serve first: a worker dying before the first time all served stops the server at once
        _on_each_worker(url, _workers(proc.pid), "GET", "/healthz")
        killed: set[int] = set()
        for _ in range(6):  # one more than the 5 restarts allowed within 60 s
            pids = _until(lambda: _workers(proc.pid) - killed, "a live worker")
            victim = min(pids)
            os.kill(victim, signal.SIGKILL)
            killed.add(victim)
        proc.wait(60)
    stderr = " ".join(proc.stderr.read().split())
    assert proc.returncode == 1, stderr
    assert "after 5 restarts within 60 s: the workers keep dying, so the server stops" in stderr, stderr
    assert stderr.count("unexpectedly; restarting it") == 5, stderr
