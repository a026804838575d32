"""The served loop of ``mlsd simulate`` (docs/simulation.md): one window at a time, a real
``mlsd serve`` process answers the window's rows, outcomes are posted after their delay, the
window is measured against the frozen first model, the design's retrain triggers are applied
and a challenger goes through the design's canary; then the update policies are replayed
offline on the same rows. :mod:`mlsd._simulate` sets it up and writes the reports.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd._progress import Progress
from mlsd.errors import DataError, GateError, MlsdError

__all__ = ["STATE_REFRESH_S", "SimulatedLoop", "compare_policies"]

# how often the simulated servers re-read the shared state and judge the canary: a window's
# outcomes are posted and then judged within a few seconds, not a production minute
STATE_REFRESH_S = 0.5

# --- the served loop -------------------------------------------------------------------------


class _Server:
    """``mlsd serve FILE`` on a free local port, ready when ``/readyz`` answers 200."""

    def __init__(self, design: Path, env: dict[str, str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "mlsd.cli", "serve", str(design), "--host", "127.0.0.1"]
        # the server's own log goes to a file beside the designs: a pipe nobody reads would fill
        # up and stall the server, and its warnings (a failed state refresh) explain a stuck canary
        self.log_path = design.parent / "server.log"
        with self.log_path.open("a") as sink:
            sink.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} mlsd serve {design.name} on port {port}\n")
            sink.flush()
            self.process = subprocess.Popen(
                [*command, "--port", str(port)], stdout=sink, stderr=sink, text=True, env=env
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise MlsdError(
                    f"the simulated server did not start (its log: {self.log_path})",
                    field="serve",
                    received=tail,
                    expected="mlsd serve ready within 120 s",
                )
            time.sleep(0.3)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # drains its log before it exits
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class SimulatedLoop:
    """The simulated weeks: serve, post outcomes, measure, trigger, retrain, canary, promote."""

    def __init__(
        self,
        system: Any,
        files: dict[str, Path],
        spec: Any,
        prepared: Any,
        stream: pd.DataFrame,
        history: pd.DataFrame,
        progress: Progress,
    ) -> None:
        self.system, self.files, self.spec, self.progress = system, files, spec, progress
        self.design = system.design
        self.stream, self.history = stream, history
        self.client, self.labels = system.client_rows(prepared, stream)
        self.frozen, _, self.frozen_version = system.champion()
        self.env = {**os.environ, "MLSD_ADMIN_TOKEN": secrets.token_urlsafe(16)}
        self.events: list[dict[str, Any]] = []
        self.windows: list[dict[str, Any]] = []
        self.phase = "single"
        self.champion_since = spec.start  # simulated time the serving champion took over
        self.trained_on_until = spec.start  # the serving model's data: history + labels known then
        self._reference = self._reference_of(spec.start)
        self._pending = np.zeros(0, dtype=int)  # row positions whose outcome is not posted yet
        self._request_ids = np.full(len(stream), None, dtype=object)
        self._y: list[np.ndarray] = []
        self._served: list[np.ndarray] = []
        self._frozen: list[np.ndarray] = []
        self._events_seen = 0

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        server = _Server(self.files["single"], self.env)
        # naive UTC datetime64: compared with numpy, without a Timestamp per row
        when = pd.to_datetime(self.stream[self.design.data.time], utc=True).dt.tz_convert(None).to_numpy()
        windows = self.spec.windows()
        try:
            for k, (a, b) in enumerate(windows):
                server = self._window(k, a, b, when, server)
                w = self.windows[-1]
                self.progress.note(
                    f"simulation [{a:%Y-%m-%d}] window {k + 1}/{len(windows)}: {w['answered']:,} answered "
                    f"({self.phase}); {self.design.goals.metric} served {_fmt(w['served_metric'])}, "
                    f"frozen {_fmt(w['frozen_metric'])}; drifted share {_fmt(w['drifted_share'], 2)}"
                )
        finally:
            server.stop()

    def _window(self, k: int, a: pd.Timestamp, b: pd.Timestamp, when: np.ndarray, server: _Server) -> _Server:
        from mlsd.serving.replay import replay

        rows = np.flatnonzero((when >= a.to_datetime64()) & (when < b.to_datetime64()))
        sent = replay(server.url, self.client.iloc[rows], concurrency=self.spec.concurrency)
        if sent.ok < len(rows):
            # e.g. 422 for a value outside the range the build saw: the server refuses, as it would live
            failed = {code: n for code, n in sent.statuses.items() if code != "200"}
            self._event(
                k, b, "requests refused",
                f"{len(rows) - sent.ok} of {len(rows)} requests not answered (status: count {failed}); "
                f"first: {sent.errors[0][:240] if sent.errors else '-'}",
            )  # fmt: skip
        self._request_ids[rows] = sent.request_ids
        self._pending = np.concatenate([self._pending, rows])
        self._post_outcomes(server, when, b)
        if self.phase == "canary":
            server = self._judge_canary(k, b, server)
        measured = self._measure(k, a, b, rows)
        self.windows.append(measured)
        self._log_events(k, b)
        if self.phase == "single":
            server = self._maybe_retrain(k, b, measured, server)
        return server

    def _post_outcomes(self, server: _Server, when: np.ndarray, now: pd.Timestamp) -> None:
        from mlsd.serving.replay import post_outcomes

        due = (when[self._pending] + np.timedelta64(self.spec.label_delay)) <= now.to_datetime64()
        rows = self._pending[due]
        rows = rows[[rid is not None for rid in self._request_ids[rows]]]
        if len(rows):
            ok, errors = post_outcomes(
                server.url, list(self._request_ids[rows]), list(self.labels.iloc[rows])
            )
            if ok < len(rows):
                self.progress.note(f"simulation: {len(rows) - ok} outcomes not recorded: {errors[:2]}")
        self._pending = self._pending[~due]

    # -- the canary: judged by the server's own gate on the outcomes just posted ------------------
    def _judge_canary(self, k: int, now: pd.Timestamp, server: _Server) -> _Server:
        from mlsd.rollout.state import RolloutState

        time.sleep(3 * STATE_REFRESH_S)  # a few refreshes: the gate has read the outcomes
        with self.system.prediction_log() as log:
            stored = log.read_state(self.design.registry_name)
        state = RolloutState.from_dict(stored[1]) if stored is not None else None
        if state is None or not (state.rolled_back or state.complete):
            return server
        server.stop()
        self._log_events(k, now)  # the gate's own events, at this window
        if state.rolled_back:
            self._event(k, now, "canary rolled back", state.rolled_back)
        else:
            old, new = self.system.promote("challenger")
            self._event(k, now, "promote", f"canary complete: champion {old} -> {new}")
            self.champion_since = now
            self.trained_on_until = self._challenger_until
            self._reference = self._reference_of(self._challenger_until)
        self.phase = "single"
        return _Server(self.files["single"], self.env)

    def _start_canary(self, k: int, now: pd.Timestamp, server: _Server, until: pd.Timestamp) -> _Server:
        from mlsd.rollout.state import initial_state

        server.stop()
        from mlsd.system import System

        spec = System(self.files["canary"]).design.deployment
        fresh = initial_state(spec)
        fresh.step_started_at = dt.datetime.now(dt.UTC).isoformat()
        key = self.design.registry_name
        with self.system.prediction_log() as log:  # a new trial: the last one's state is history
            stored = log.read_state(key)
            log.write_state(key, fresh.to_dict(), expected_revision=None if stored is None else stored[0])
        self._challenger_until = until
        self.phase = "canary"
        return _Server(self.files["canary"], self.env)

    # -- re-training --------------------------------------------------------------------------
    def _maybe_retrain(self, k: int, now: pd.Timestamp, measured: dict[str, Any], server: _Server) -> _Server:
        from mlsd.monitoring.retrain_triggers import check_trigger, required_key

        if self.spec.plant_bad_challenger == k:
            return self._plant(k, now, server)
        spec = self.design.monitoring.retrain
        if spec is None:
            return server
        measurements = {
            "drift": {"drifted_share": measured["drifted_share"]},
            "performance": {
                "metric": self.design.goals.metric,
                "metric_value": measured["served_metric_labelled"],
            },
            "schedule": {"champion_age": (now - self.champion_since).to_pytimedelta()},
        }
        for trigger, values in measurements.items():
            key = required_key(trigger)
            if key is None or getattr(spec, key) is None:
                continue
            decision = check_trigger(spec, trigger, **values)
            if not decision.fired:
                continue
            try:
                run = self.system.retrain(trigger, decision=decision, data_until=self.spec.start)
            except GateError as exc:
                self._event(k, now, "retrain rejected", f"{decision.describe()}; {exc.message}")
                self._log_events(k, now)
                return server
            except DataError as exc:
                self._event(k, now, "retrain skipped", f"{decision.describe()}; {exc.message}")
                return server
            holdout = (run.summary or {}).get("holdout", {})
            self._log_events(k, now)
            self._event(
                k, now, "canary start",
                f"challenger version {run.build.registered_version} ({decision.describe()}; holdout "
                f"{holdout.get('metric')} {holdout.get('challenger', float('nan')):.4f} vs "
                f"{holdout.get('champion', float('nan')):.4f})",
            )  # fmt: skip
            return self._start_canary(k, now, server, now)
        return server

    def _plant(self, k: int, now: pd.Timestamp, server: _Server) -> _Server:
        """A challenger built on inverted labels, registered as if its offline gates had passed."""
        from mlsd.system import System

        bad = System(self.files["bad"], progress=self.progress)
        with self.progress.stage("planting a challenger trained on inverted labels"):
            result = bad.build(alias="challenger", data_until=now)
        version = int(result.registered_version)
        self._event(k, now, "planted", f"challenger version {version} trained on inverted labels")
        self._event(k, now, "canary start", f"challenger version {version} (planted)")
        return self._start_canary(k, now, server, self.trained_on_until)

    # -- measuring each window --------------------------------------------------------------------
    def _measure(self, k: int, a: pd.Timestamp, b: pd.Timestamp, rows: np.ndarray) -> dict[str, Any]:
        from mlsd.modeling.holdout import model_scores
        from mlsd.monitoring.drift import detect_drift

        design = self.design
        y = self.labels.iloc[rows].to_numpy()
        ids = [r for r in self._request_ids[rows] if r is not None]
        with self.system.prediction_log() as log:
            logged = log.read_predictions_by_id(ids).set_index("request_id")
        got = logged.reindex(self._request_ids[rows])
        served = got["score"].to_numpy(dtype=float)
        frame = self.stream.iloc[rows]
        inputs = frame[list(self.frozen.input_columns)]
        frozen = model_scores(
            self.frozen.pipeline, inputs, design.goals.task, list(self.frozen.classes) or None
        )
        answered = ~np.isnan(served)
        self._y.append(y[answered])
        self._served.append(served[answered])
        self._frozen.append(frozen[answered])
        labelled = answered & got["outcome"].notna().to_numpy()
        m = design.monitoring
        drift = detect_drift(
            self._reference, frame, method=m.drift, overrides=m.drift_overrides, correction=m.correction,
            alpha=m.alpha, column_thresholds=m.effect_thresholds, missing="skip",
        ) if len(frame) else None  # fmt: skip
        decisions = got["decision"].to_numpy()
        positive = self.frozen.positive_class
        return {
            "window": k,
            "start": a.isoformat(),
            "end": b.isoformat(),
            "rows": len(rows),
            "answered": int(answered.sum()),
            "variants": {str(v): int(n) for v, n in got["variant"].value_counts().items()},
            "served_metric": _metric(design, y[answered], served[answered]),
            "frozen_metric": _metric(design, y[answered], frozen[answered]),
            # what a monitoring window sees at its end: the rows whose outcome has arrived
            "served_metric_labelled": _metric(design, y[labelled], served[labelled]),
            "served_cost_per_1000": _cost(design, y[answered] == positive, decisions[answered] == positive),
            "frozen_cost_per_1000": _cost(
                design, y[answered] == positive, _decide(frozen[answered], self.frozen.threshold)
            ),
            "drifted_share": None if drift is None else float(drift.share_drifted),
            "phase": self.phase,
        }

    def _reference_of(self, until: pd.Timestamp) -> Any:
        """What the serving model learnt from: the history plus the stream labelled by ``until``."""
        return _reference(self.system, self._training_rows(until))

    def _training_rows(self, until: pd.Timestamp) -> pd.DataFrame:
        when = pd.to_datetime(self.stream[self.design.data.time], utc=True)
        known = self.stream[(when + pd.Timedelta(self.spec.label_delay) <= until).to_numpy()]
        return pd.concat([self.history, known]) if len(known) else self.history

    # -- events --------------------------------------------------------------------------------
    def _event(self, k: int, at: pd.Timestamp, kind: str, reason: str) -> None:
        self.events.append(
            {"window": k, "at": at.isoformat(), "kind": kind, "reason": reason, "actor": "simulate"}
        )
        self.progress.note(f"simulation [{at:%Y-%m-%d}] {kind}: {reason}")

    def _log_events(self, k: int, at: pd.Timestamp) -> None:
        """The log's new rollout events (canary advance, rollback, reload, retrain), at window k."""
        with self.system.prediction_log() as log:
            events = log.read_events()
        for row in events.iloc[self._events_seen :].itertuples():
            if row.kind in ("reload", "start"):
                continue  # the mechanics of restarting servers, not decisions
            self.events.append(
                {"window": k, "at": at.isoformat(), "kind": str(row.kind), "reason": str(row.reason),
                 "actor": str(row.actor)}
            )  # fmt: skip
        self._events_seen = len(events)

    def served_vs_frozen(self) -> dict[str, Any] | None:
        """The served model against the frozen one over every window, with a paired interval."""
        from mlsd.modeling.holdout import compare_on_holdout

        if not self._y:
            return None
        y, served, frozen = (np.concatenate(x) for x in (self._y, self._served, self._frozen))
        g = self.design.goals
        try:
            comparison = compare_on_holdout(
                y, served, frozen, metric=g.metric, task=g.task, n_resamples=self.design.models.bootstrap
            )
        except (ValueError, MlsdError):
            return None
        return comparison.to_dict()


# --- the policies, offline on the same rows ----------------------------------------------------


def compare_policies(
    system: Any,
    spec: Any,
    history: pd.DataFrame,
    stream: pd.DataFrame,
    frozen: Any,
    progress: Progress,
) -> list[Any]:
    from sklearn.base import clone

    from mlsd.modeling.holdout import model_scores
    from mlsd.modeling.update_policies import compare_update_policies
    from mlsd.monitoring.drift import detect_drift

    design = system.design
    g = design.goals
    columns = list(frozen.input_columns)
    classes = list(frozen.classes) or None
    m = design.monitoring

    def fit(frame: pd.DataFrame) -> Any:
        return clone(frozen.pipeline).fit(frame[columns], frame[g.target])

    def score(model: Any, frame: pd.DataFrame) -> np.ndarray:
        return model_scores(model, frame[columns], g.task, classes)

    def drift_share(train: pd.DataFrame, window: pd.DataFrame) -> float:
        result = detect_drift(
            _reference(system, train), window, method=m.drift, overrides=m.drift_overrides,
            correction=m.correction, alpha=m.alpha, column_thresholds=m.effect_thresholds, missing="skip",
        )  # fmt: skip
        return float(result.share_drifted)

    retrain = m.retrain
    bound = retrain.drifted_share_above if retrain and retrain.drifted_share_above is not None else 0.3
    windows = spec.windows()
    with progress.stage("update policies", total=len(windows) * len(spec.policies)) as advance:
        return compare_update_policies(
            history,
            stream,
            windows=windows,
            time_column=str(design.data.time),
            target=g.target,
            fit=fit,
            score=score,
            metric=g.metric,
            task=g.task,
            policies=spec.policies,
            label_delay=spec.label_delay,
            cost=(lambda y, s: _cost(design, y == frozen.positive_class, _decide(s, frozen.threshold)))
            if _has_costs(design)
            else None,
            drift_share=drift_share,
            drifted_share_above=bound,
            initial_model=frozen.pipeline,
            n_resamples=design.models.bootstrap,
            seed=design.models.seed,
            on_window=lambda _p, _i: advance(),
        )


def _reference(system: Any, frame: pd.DataFrame) -> Any:
    from mlsd._build import monitored_columns
    from mlsd.monitoring import ReferenceStatistics

    numeric, categorical = monitored_columns(system.design, frame)
    return ReferenceStatistics.from_frame(
        frame, numeric=numeric, categorical=categorical, seed=system.design.models.seed
    )


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _has_costs(design: Any) -> bool:
    return design.goals.task == "binary" and design.goals.costs is not None


def _decide(scores: np.ndarray, threshold: Any) -> np.ndarray:
    return scores >= float(threshold if threshold is not None else 0.5)


def _cost(design: Any, truth: np.ndarray, said: np.ndarray) -> float | None:
    """Cost per 1,000 rows of binary decisions (``goals.costs``): ``truth`` and ``said`` say
    where the outcome and the decision were the positive class. None without costs."""
    from mlsd.goals import CostMatrix

    if not _has_costs(design) or len(truth) == 0:
        return None
    costs = CostMatrix.from_spec(design.goals.costs)
    truth, said = np.asarray(truth, dtype=bool), np.asarray(said, dtype=bool)
    tp, fp = int((truth & said).sum()), int((~truth & said).sum())
    fn, tn = int((truth & ~said).sum()), int((~truth & ~said).sum())
    return float(costs.total(tn, fp, fn, tp) * 1000 / len(truth))


def _metric(design: Any, y: np.ndarray, scores: np.ndarray) -> float | None:
    from mlsd.goals.metrics import compute_metric

    if len(y) == 0:
        return None
    try:
        with np.errstate(all="ignore"):
            value = float(compute_metric(design.goals.metric, y, scores))
    except (ValueError, MlsdError):
        return None
    return value if np.isfinite(value) else None
