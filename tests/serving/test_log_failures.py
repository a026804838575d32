"""When the prediction log cannot commit, the server says so: 503 with Retry-After, /readyz 503,
/metrics counts it, nothing is acknowledged unlogged, and it recovers without a restart.

Two real faults: a full filesystem (a tmpfs the test mounts, as root) and a database locked by
another connection's write transaction, which needs no privileges.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlsd.store.prediction_log import PredictionLog


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    assert match, name
    return float(match.group(1))


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem refuses (ENOSPC); returns it, to free the space later."""
    filler = directory / "filler"
    chunk = b"\0" * 65_536
    with filler.open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
        with contextlib.suppress(OSError):  # the last partial chunk
            while True:
                f.write(b"\0" * 512)
    probe = directory / "probe"
    with pytest.raises(OSError) as excinfo, probe.open("wb", buffering=0) as f:
        f.write(chunk)
    assert excinfo.value.errno == errno.ENOSPC
    probe.unlink(missing_ok=True)
    return filler


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the locked-database test covers the same path)")
    path.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    done = subprocess.run(mount, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _drive_until_503(http, rows, acknowledged: list[str], max_requests: int = 400):
    for _ in range(max_requests):
        r = http.post("/v1/predict", json={"inputs": rows})
        if r.status_code == 200:
            acknowledged.extend(p["request_id"] for p in r.json()["predictions"])
            continue
        return r
    raise AssertionError(f"the log never failed in {max_requests} requests")


def _check_failing_then_recovering(
    http, log: PredictionLog, rows, acknowledged, free_space, *, reason: str = "full"
) -> None:
    r = _drive_until_503(http, rows, acknowledged)
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    body = r.json()["error"]
    assert body["type"] == "log_unavailable"
    assert reason in body["message"], body["message"]
    assert "/" not in body["message"]  # no path of the database reaches the client
    again = http.post("/v1/predict", json={"inputs": rows})  # still no room for 200 rows
    assert again.status_code == 503

    ready = http.get("/readyz")
    assert ready.status_code == 503
    assert "cannot commit" in ready.json()["error"]["message"]
    text = http.get("/metrics").text
    assert _metric(text, "mlsd_log_write_failures_total") >= 2
    assert _metric(text, "mlsd_log_healthy") == 0

    free_space()
    # no restart: the readiness probe's own commit finds the space again
    assert http.get("/readyz").status_code == 200
    ok = http.post("/v1/predict", json={"inputs": rows[:2]})
    assert ok.status_code == 200, ok.text
    acknowledged.extend(p["request_id"] for p in ok.json()["predictions"])
    assert _metric(http.get("/metrics").text, "mlsd_log_healthy") == 1

    logged = set(log.read_predictions()["request_id"])
    missing = set(acknowledged) - logged
    assert not missing, f"{len(missing)} acknowledged predictions are not in the log"


def test_a_full_filesystem_gives_503_and_readyz_503_and_recovers(make_client, flights, tmp_path) -> None:
    with _tmpfs(tmp_path / "fs", "2m") as fs:
        log = PredictionLog(f"sqlite:///{fs / 'log.db'}")
        acknowledged: list[str] = []
        with make_client(log=log) as (http, _):
            rows = flights.rows[:200]
            first = http.post("/v1/predict", json={"inputs": rows})
            assert first.status_code == 200
            acknowledged.extend(p["request_id"] for p in first.json()["predictions"])
            filler = _fill(fs)
            _check_failing_then_recovering(http, log, rows, acknowledged, filler.unlink)


@contextlib.contextmanager
def _locked(log: PredictionLog) -> Iterator[Callable[[], None]]:
    """Another process's write transaction holds the database; yields the function that releases it.

    The writer's busy timeout is cut to 200 ms (on every checkout) so a commit gives up quickly.
    """

    @sa.event.listens_for(log._db.engine, "checkout")
    def _short_wait(dbapi_connection, _record, _proxy) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 200")

    holder = sqlite3.connect(log._db.engine.url.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    log._writer._drop_connection()  # its next batch checks out a connection with the short wait

    def release() -> None:
        if holder.in_transaction:
            holder.execute("ROLLBACK")

    try:
        yield release
    finally:
        release()
        holder.close()


def test_a_locked_database_gives_503_and_recovers_without_restart(make_client, flights, tmp_path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}")
    acknowledged: list[str] = []
    with make_client(log=log) as (http, _):
        rows = flights.rows[:200]
        first = http.post("/v1/predict", json={"inputs": rows})
        assert first.status_code == 200
        acknowledged.extend(p["request_id"] for p in first.json()["predictions"])
        with _locked(log) as release:
            _check_failing_then_recovering(http, log, rows, acknowledged, release, reason="locked")


def test_feedback_on_a_failing_log_is_503_and_records_nothing(make_client, flights, tmp_path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}")
    with make_client(log=log) as (http, _):
        answer = http.post("/v1/predict", json={"inputs": flights.rows[:3]}).json()
        ids = [p["request_id"] for p in answer["predictions"]]
        with _locked(log) as release:
            r = http.post("/v1/feedback", json={"request_id": ids[0], "outcome": True})
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            release()
            assert log.count_feedback() == 0
            assert http.post("/v1/feedback", json={"request_id": ids[0], "outcome": True}).status_code == 200
        assert log.count_feedback() == 1
