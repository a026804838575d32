"""``mlsd serve --workers N``: N server processes on one port, supervised by the parent.

Each worker is a whole server as ``mlsd serve`` runs one (its event loop, micro-batcher, scoring
threads, prediction-log writer and, for strategy shadow, its shadow process); what they share
lives where replicas already share it:

- **the port**: every worker binds its own listening socket with SO_REUSEPORT, and the kernel
  hashes each new connection to one of them. An inherited socket (one accept queue) would leave
  the split to whichever worker wakes first, and asyncio accepts up to the backlog per wake-up,
  so the keep-alive connections a client opens at once mostly land on one worker. The parent
  first binds the port as a single server does (a port in use is one line, exit 2), then keeps
  it bound without listening, so no other program can take it while a worker restarts, and a
  second server started on the same port is refused (its own check binds without SO_REUSEPORT);
- **the rollout state** (weights, canary step, rollbacks, bandit rewards): in the prediction
  log's database, read every ``state_refresh_s`` and written by compare-and-set, exactly as
  for replicas on one PostgreSQL; on SQLite the workers are processes on one WAL file, each
  commit waits up to SQLite's busy timeout (10 s) for the others';
- **the metrics**: prometheus_client's multiprocess mode, in a folder the parent creates and
  removes; any worker's ``/metrics`` sums every worker's counters and histograms
  (:func:`mlsd.serving.metrics.use_multiprocess`).

The parent loads no model and starts no thread: workers are forked from it (imports shared,
nothing to re-import) and each loads its own model. SIGTERM or SIGINT to the parent stops every
worker gracefully (uvicorn stops accepting, answers what is in flight, the lifespan drains the
log: every answered prediction is committed); a worker ignores SIGINT itself, since Ctrl-C
reaches the whole process group and a second signal would make uvicorn skip that drain. A
worker that exits on its own is reported and restarted; more than ``max_restarts`` restarts
within ``restart_window_s`` stop the server with exit 1. A worker that fails with an error
while starting stops the server with that error (another start would fail alike), and so does
any worker dying before the first time all of them served.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

import uvicorn

from mlsd.errors import MlsdError, ServingError
from mlsd.serving.metrics import use_multiprocess
from mlsd.serving.server import bind_socket, serving_info, uvicorn_config
from mlsd.serving.settings import ServeSettings

__all__ = ["WorkerFailure", "hold_port", "run_workers"]

#: what a worker builds: the settings and the app (``settings_for`` then ``create_app``)
Build = Callable[[], tuple[ServeSettings, Any]]
_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
_POLL_S = 0.5
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class WorkerFailure(ServingError):
    """The workers could not be kept running: they keep dying, or one did not stop when asked.
    Exit 1: the design is fine, the server is not."""

    exit_code = 1


class _StartError(MlsdError):
    """A worker's start error as the worker printed it, with its exit code (2: misuse, as
    ``mlsd serve`` without workers)."""

    def __init__(self, text: str, exit_code: int) -> None:
        self.text, self.exit_code = text, exit_code
        super().__init__(text)

    def __str__(self) -> str:
        return self.text


def hold_port(host: str, port: int) -> socket.socket:
    """The port checked as a single server checks it, then held (bound, not listening, SO_REUSEPORT)
    for the workers' own sockets; a port in use is a :class:`ServingError`."""
    bind_socket(host, port).close()  # refused if anything has the port, SO_REUSEPORT or not
    return bind_socket(host, port, reuse_port=True, listen=False)


def _worker_exit(code: int | None) -> str:
    if code is None:
        return "is running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


class _WorkerServer(uvicorn.Server):
    """uvicorn that says when it serves, and stops on SIGTERM only (see the module)."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self._on_ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGINT:  # the parent got it too and sends SIGTERM: one drain, not a forced exit
            return
        self.should_exit = True  # not re-raised after the drain: a stopped worker exits 0


def _die_with_parent(parent: int) -> None:
    """SIGTERM (a graceful drain) to this worker when the parent dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl: nobody supervises this worker
        os._exit(1)


def _worker(
    index: int, build: Build, host: str, port: int, metrics_dir: str, parent: int, conn: Connection
) -> None:
    """One worker, in a forked child: build the app, bind, serve until SIGTERM."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)  # the parent's handlers do not apply here
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # a pending SIGTERM now ends it
    _die_with_parent(parent)
    try:
        use_multiprocess(metrics_dir)
        settings, app = build()
        sock = bind_socket(host, port, reuse_port=True)
    except MlsdError as exc:
        conn.send(("error", (str(exc), exc.exit_code)))
        sys.exit(exc.exit_code)
    conn.send(("built", serving_info(settings)))
    server = _WorkerServer(uvicorn_config(app, settings), on_ready=lambda: conn.send(("ready", os.getpid())))
    with sock:
        server.run(sockets=[sock])
    sys.exit(0 if server.started else 3)


@dataclass
class _Worker:
    index: int
    process: Any  # multiprocessing's fork Process
    conn: Connection
    ready: bool = False
    info: dict[str, Any] = field(default_factory=dict)


class _Supervisor:
    def __init__(
        self,
        n: int,
        build: Build,
        host: str,
        port: int,
        *,
        max_restarts: int,
        restart_window_s: float,
        stop_timeout_s: float,
        say: Callable[[str], None],
    ) -> None:
        self.n, self.build, self.host, self.port = n, build, host, port
        self.max_restarts, self.window_s, self.stop_timeout_s = max_restarts, restart_window_s, stop_timeout_s
        self.say = say
        self.context = mp.get_context("fork")
        self.workers: dict[int, _Worker] = {}
        self.restarts: deque[float] = deque()
        self.stopping: str | None = None  # the signal's name once asked to stop
        self.metrics_dir = tempfile.mkdtemp(prefix="mlsd-metrics-")

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.stopping = signal.Signals(sig).name

    def _start(self, index: int) -> None:
        ours, theirs = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_worker,
            args=(index, self.build, self.host, self.port, self.metrics_dir, os.getpid(), theirs),
            name=f"mlsd-serve-worker-{index}",
        )
        # blocked across the fork: a SIGTERM to the young worker waits until it restored the
        # default handler, rather than reaching the parent's handler it inherited (and being lost)
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        theirs.close()
        self.workers[index] = _Worker(index, process, ours)

    def _messages(self, worker: _Worker) -> _StartError | None:
        """Read what ``worker`` said; its start error, if it sent one."""
        with contextlib.suppress(EOFError, OSError):
            while worker.conn.poll():
                kind, value = worker.conn.recv()
                if kind == "error":
                    return _StartError(*value)
                if kind == "built":
                    worker.info = value
                elif kind == "ready":
                    worker.ready = True
        return None

    def run(self, on_ready: Callable[[dict[str, Any]], None]) -> None:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        try:
            for index in range(self.n):
                self._start(index)
            self._supervise(on_ready)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _supervise(self, on_ready: Callable[[dict[str, Any]], None]) -> None:
        announced = False
        while self.stopping is None:
            handles: list[Any] = [w.conn for w in self.workers.values()]
            handles += [w.process.sentinel for w in self.workers.values()]
            wait(handles, timeout=_POLL_S)
            for worker in list(self.workers.values()):
                was_ready = worker.ready
                problem = self._messages(worker)
                if problem is not None:
                    worker.process.join()
                    raise problem
                if worker.process.exitcode is None or self.stopping is not None:
                    continue
                self._messages(worker)  # what it said before it exited
                how = _worker_exit(worker.process.exitcode)
                if not (announced or was_ready or worker.ready):  # the first start failed
                    raise WorkerFailure(
                        f"worker {worker.index} {how} before it served (its output is above)",
                        field="workers",
                        received=worker.process.exitcode,
                        expected="workers that start",
                    )
                self._restart(worker, how)
            if not announced and all(w.ready for w in self.workers.values()):
                announced = True
                on_ready(next(iter(self.workers.values())).info)

    def _restart(self, worker: _Worker, how: str) -> None:
        now = time.monotonic()
        while self.restarts and now - self.restarts[0] > self.window_s:
            self.restarts.popleft()
        pid = worker.process.pid
        if len(self.restarts) >= self.max_restarts:
            raise WorkerFailure(
                f"worker {worker.index} (pid {pid}) {how}, after {len(self.restarts)} restarts within "
                f"{self.window_s:g} s: the workers keep dying, so the server stops",
                field="workers",
                received=len(self.restarts) + 1,
                expected=f"at most {self.max_restarts} restarts within {self.window_s:g} s",
            )
        self.restarts.append(now)
        worker.conn.close()
        self.say(
            f"worker {worker.index} (pid {pid}) {how} unexpectedly; restarting it "
            f"({len(self.restarts)} of at most {self.max_restarts} restarts within {self.window_s:g} s)"
        )
        self._start(worker.index)

    def _stop_all(self) -> None:
        """SIGTERM to every live worker (each drains its log), SIGKILL after ``stop_timeout_s``."""
        live = [w for w in self.workers.values() if w.process.exitcode is None]
        for worker in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for worker in live:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                self.say(
                    f"worker {worker.index} (pid {worker.process.pid}) did not stop within "
                    f"{self.stop_timeout_s:g} s; killing it (what it had not committed is lost)"
                )
                worker.process.kill()
                worker.process.join()
        for worker in self.workers.values():
            worker.conn.close()

    def unclean(self) -> list[str]:
        """The workers that did not stop cleanly when asked (one still starting may die of the
        SIGTERM: it had answered nothing)."""
        return [
            f"worker {w.index} {_worker_exit(w.process.exitcode)}"
            for w in self.workers.values()
            if w.process.exitcode not in (0, None) and (w.ready or w.process.exitcode != -signal.SIGTERM)
        ]


def run_workers(
    n: int,
    build: Build,
    host: str,
    port: int,
    *,
    on_ready: Callable[[dict[str, Any]], None],
    say: Callable[[str], None],
    max_restarts: int = 5,
    restart_window_s: float = 60.0,
    stop_timeout_s: float = 60.0,
) -> None:
    """Serve with ``n`` workers until SIGTERM or SIGINT, on a port :func:`hold_port` holds.

    ``on_ready`` gets the first worker's model name and version once every worker serves;
    ``say`` reports restarts. Raises :class:`ServingError` when a worker cannot start (its error),
    :class:`WorkerFailure` when workers keep dying or one did not stop cleanly.
    """
    supervisor = _Supervisor(
        n,
        build,
        host,
        port,
        max_restarts=max_restarts,
        restart_window_s=restart_window_s,
        stop_timeout_s=stop_timeout_s,
        say=say,
    )
    supervisor.run(on_ready)
    unclean = supervisor.unclean()
    if unclean:
        raise WorkerFailure(
            "not every worker stopped cleanly: " + "; ".join(unclean),
            field="workers",
            received=unclean,
            expected="every worker drained and exited 0",
        )
