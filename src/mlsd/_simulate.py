"""``mlsd simulate``: event time replayed forward through the real server, log and registry.

The loop a production system runs, compressed into minutes (docs/simulation.md):

1. the champion is built as of ``start`` (the design's rows before it: ``run_build(data_until=)``),
   in a workspace of its own under ``<workspace>/simulations/``, so the design's own champion,
   log and reports are never touched;
2. each window of ``step`` (a week), in event-time order, the window's rows are sent to a real
   ``mlsd serve`` process as single-row requests; their outcomes are posted to ``/v1/feedback``
   once ``label_delay`` has passed since their event time (at the end of a later window when the
   delay is long);
3. at the end of each window the loop measures what was served and what the frozen first model
   would have answered on the same rows (metric and cost), measures drift against the data the
   serving model was trained on, and applies ``monitoring.retrain``'s triggers: a trigger that
   fires runs ``mlsd retrain`` (the challenger is registered only if it beats the champion on
   the newest labelled traffic);
4. a registered challenger is served with the design's canary (``deployment``: its steps, gate
   and rollback; a default canary when the design serves ``single``): the server's own gate
   advances it on the feedback or rolls it back; a completed canary is promoted;
5. ``--plant-bad-challenger N`` registers, in window N, a challenger built on inverted labels
   (a label-pipeline bug no offline gate sees, since the labels it is judged on are inverted
   too): the canary must roll it back;
6. afterwards, the update policies (never, every 4 weeks, every week, on drift) are replayed
   offline on the same rows (:mod:`mlsd.modeling.update_policies`).

It writes ``reports/simulation.json`` and ``reports/simulation.html`` in the simulation's
workspace: the timeline of both models' metric and cost per window with every event marked,
and the policies compared.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from mlsd._progress import QUIET, Progress
from mlsd._simulate_loop import STATE_REFRESH_S, SimulatedLoop, compare_policies
from mlsd.errors import DataError, DesignError

__all__ = ["SimulationResult", "SimulationSpec", "run_simulation"]

# for a design that serves one model: a canary that waits for outcomes before each step
_DEFAULT_CANARY = {
    "strategy": "canary", "steps": [10, 50, 100], "step_min_requests": 500, "step_min_labelled": 100,
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SimulationSpec:
    """What ``mlsd simulate`` replays and how (its command-line options)."""

    start: pd.Timestamp
    end: pd.Timestamp
    step: dt.timedelta = dt.timedelta(weeks=1)
    label_delay: dt.timedelta = dt.timedelta(days=1)
    sample: float = 1.0  # the share of each window's rows sent (a uniform, seeded sample)
    policies: tuple[str, ...] = ("never", "every_4w", "every_1w", "on_drift")
    plant_bad_challenger: int | None = None  # the window in which a bad challenger is planted
    concurrency: int = 16
    seed: int = 0

    def windows(self) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        edges = pd.date_range(self.start, self.end, freq=pd.Timedelta(self.step), inclusive="left")
        return [(a, min(a + pd.Timedelta(self.step), self.end)) for a in edges]


@dataclasses.dataclass
class SimulationResult:
    """The timeline, the events, the policy comparison, and where the reports are."""

    workspace: Path
    metric: str
    windows: list[dict[str, Any]]
    events: list[dict[str, Any]]
    served_vs_frozen: dict[str, Any] | None
    policies: list[dict[str, Any]]
    report_path: Path | None = None
    json_path: Path | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "workspace": str(self.workspace),
            "metric": self.metric,
            "windows": self.windows,
            "events": self.events,
            "served_vs_frozen": self.served_vs_frozen,
            "policies": self.policies,
            "report": str(self.report_path) if self.report_path else None,
            "seconds": round(self.seconds, 1),
        }


def check_spec(design: Any, spec: SimulationSpec) -> None:
    """Refuse what the loop cannot run, before any data is read."""
    from mlsd.modeling.update_policies import parse_policy

    if design.data.time is None:
        raise DesignError(
            "a simulation replays event time: the design needs data.time",
            field="data.time",
            received=None,
            expected="the column that says when each row happened",
        )
    if not spec.start < spec.end:
        raise DesignError(
            "the simulation must end after it starts",
            field="--end",
            received=f"{spec.start:%Y-%m-%d} .. {spec.end:%Y-%m-%d}",
            expected="--start earlier than --end",
        )
    if not 0 < spec.sample <= 1:
        raise DesignError(
            "a share of the rows", field="--sample", received=spec.sample, expected="0 < sample <= 1"
        )
    for p in spec.policies:
        parse_policy(p)
    if spec.plant_bad_challenger is not None:
        if design.goals.task != "binary" or not design.data.label:
            raise DesignError(
                "a planted bad challenger inverts the design's label expression",
                field="--plant-bad-challenger",
                received=spec.plant_bad_challenger,
                expected="a binary design with data.label",
            )
        if not 0 <= spec.plant_bad_challenger < len(spec.windows()):
            raise DesignError(
                "no such window",
                field="--plant-bad-challenger",
                received=spec.plant_bad_challenger,
                expected=f"a window index from 0 to {len(spec.windows()) - 1}",
            )


def run_simulation(
    design_path: Path, spec: SimulationSpec, *, progress: Progress = QUIET
) -> SimulationResult:
    """Run the loop of the module docstring; the result is also written as JSON and HTML."""
    from mlsd.design import load_design
    from mlsd.system import System

    began = time.perf_counter()
    original = load_design(design_path)
    check_spec(original, spec)
    prepared = System(original, progress=progress).prepare_data()
    time_column = str(original.data.time)
    when = pd.to_datetime(prepared.frame[time_column], utc=True)
    history_start = when.min()
    if not history_start < spec.start:
        raise DataError(
            "no rows before the simulation starts to build the first model on",
            field="--start",
            received=f"{spec.start:%Y-%m-%d}",
            expected=f"a date after the data's first row ({history_start:%Y-%m-%d})",
        )
    stream = prepared.frame[((when >= spec.start) & (when < spec.end)).to_numpy()]
    if spec.sample < 1:
        stream = stream.sample(frac=spec.sample, random_state=spec.seed)
    stream = stream.sort_values(time_column, kind="stable")
    history = prepared.frame[(when < spec.start).to_numpy()]
    workspace = _fresh_workspace(original, spec, progress)
    files = _write_designs(design_path, spec, workspace, first=history_start)
    system = System(files["single"], progress=progress)
    progress.note(
        f"simulation: {len(history):,} rows before {spec.start:%Y-%m-%d} build the first model; "
        f"{len(stream):,} rows replayed in {len(spec.windows())} windows of {spec.step}"
    )
    with progress.stage(f"building the first champion as of {spec.start:%Y-%m-%d}"):
        system.build(data_until=spec.start)
    loop = SimulatedLoop(system, files, spec, prepared, stream, history, progress)
    loop.run()
    with progress.stage("comparing update policies on the same rows"):
        policies = compare_policies(system, spec, history, stream, loop.frozen, progress)
    result = SimulationResult(
        workspace=system.workspace,
        metric=original.goals.metric,
        windows=loop.windows,
        events=loop.events,
        served_vs_frozen=loop.served_vs_frozen(),
        policies=[p.to_dict() for p in policies],
        seconds=time.perf_counter() - began,
    )
    _write_reports(system, result, original, spec)
    return result


# --- the workspace and the designs it serves ---------------------------------------------------


def _fresh_workspace(design: Any, spec: SimulationSpec, progress: Progress) -> Path:
    """``<workspace>/simulations/<start>-<end>``; an earlier run of the same period is moved aside."""
    folder = design.workspace_dir() / "simulations" / f"{spec.start:%Y%m%d}-{spec.end:%Y%m%d}"
    if folder.exists():
        kept = folder.with_name(f"{folder.name}.{time.strftime('%Y%m%dT%H%M%S')}")
        folder.rename(kept)
        progress.note(f"simulation: the earlier run of this period was moved to {kept}")
    folder.mkdir(parents=True)
    return folder


def _write_designs(path: Path, spec: SimulationSpec, folder: Path, *, first: pd.Timestamp) -> dict[str, Path]:
    """The design as the simulation serves it, one file per deployment: ``single`` while one model
    serves, ``canary`` while a challenger is on trial, ``bad`` (inverted labels) when planted.
    The files share the design's name, so they share one workspace (``folder/.mlsd/<name>``)."""
    from ruamel.yaml import YAML

    from mlsd._design_file import read_design_text

    yaml = YAML(typ="safe", pure=True)  # YAML 1.2 as load_design reads it: `on:` stays a string
    yaml.default_flow_style = False
    raw = yaml.load(read_design_text(Path(path)))
    raw.pop("workspace", None)
    data = raw.setdefault("data", {})
    _absolute_sources(data, Path(path).resolve().parent)
    # the first model's split: the period before start, its last fifths to choose and to test
    span = spec.start - first
    data["split"] = {
        "by": "time",
        "valid_from": (spec.start - span * 0.4).strftime("%Y-%m-%d"),
        "test_from": (spec.start - span * 0.2).strftime("%Y-%m-%d"),
    }
    deployment = dict(raw.get("deployment") or {})
    deployment.pop("log_url", None)  # the simulation's own SQLite log, never the design's
    rollout_keys, canary_keys = _rollout_keys()
    canary = {k: v for k, v in deployment.items() if k not in rollout_keys}
    if deployment.get("strategy") == "canary":
        canary.update({k: v for k, v in deployment.items() if k in canary_keys})
    else:
        canary.update(_DEFAULT_CANARY)
    canary["strategy"] = "canary"
    canary["state_refresh_s"] = STATE_REFRESH_S
    single = {k: v for k, v in deployment.items() if k not in rollout_keys}
    single.update(strategy="single", state_refresh_s=STATE_REFRESH_S)
    files = {}
    for name, dep in (("single", single), ("canary", canary)):
        files[name] = folder / f"{name}.yaml"
        with files[name].open("w") as out:
            yaml.dump({**raw, "deployment": dep}, out)
    if spec.plant_bad_challenger is not None:
        bad = {**raw, "data": {**data, "label": f"not ({data['label']})"}, "deployment": single}
        files["bad"] = folder / "bad.yaml"
        with files["bad"].open("w") as out:
            yaml.dump(bad, out)
    return files


def _rollout_keys() -> tuple[set[str], set[str]]:
    """The deployment keys of some strategy (dropped from ``single``), and those canary reads."""
    from mlsd._deployment_checks import ROLLOUT_KEYS

    every = {*ROLLOUT_KEYS, "strategy", "state_refresh_s"}
    return every, {k for k, strategies in ROLLOUT_KEYS.items() if "canary" in strategies}


def _absolute_sources(data: dict[str, Any], base: Path) -> None:
    """File sources relative to the design file, made absolute for the copies elsewhere."""

    def fix(source: Any) -> Any:
        uri = source if isinstance(source, str) else (source or {}).get("uri")
        if not isinstance(uri, str) or ":" in uri.split("/")[0] or Path(uri).is_absolute():
            return source
        absolute = str((base / uri).resolve())
        return absolute if isinstance(source, str) else {**source, "uri": absolute}

    if "source" in data:
        data["source"] = fix(data["source"])
    for join in data.get("join") or []:
        if isinstance(join, dict) and "source" in join:
            join["source"] = fix(join["source"])


def _write_reports(system: Any, result: SimulationResult, original: Any, spec: SimulationSpec) -> None:
    from mlsd.report.simulation import render_simulation_report
    from mlsd.store import write_json_atomic

    reports = system.workspace / "reports"
    result.json_path = reports / "simulation.json"
    write_json_atomic(result.json_path, result.to_dict())
    result.report_path = render_simulation_report(result.to_dict(), reports / "simulation.html")
    _document_updates(original, result, spec)


def _document_updates(design: Any, result: SimulationResult, spec: SimulationSpec) -> None:
    """Segment 5 of the design's own document gains "experiments and updates" (when it has one)."""
    from collections import Counter

    from mlsd.report import DesignDocument, render_design_document
    from mlsd.store.files import private_files

    reports = design.workspace_dir() / "reports"
    saved = reports / "design.json"
    if not saved.is_file() or result.report_path is None:
        return
    document = DesignDocument.load(saved)
    document.monitoring.updates = {
        "report": os.path.relpath(result.report_path, reports),
        "period": f"{spec.start:%Y-%m-%d} to {spec.end:%Y-%m-%d}",
        "windows": len(result.windows),
        "metric": result.metric,
        "served_vs_frozen": result.served_vs_frozen,
        "policies": [{k: p[k] for k in ("policy", "trainings", "metric", "gain_vs_never", "cost_per_1000")}
                     for p in result.policies],
        "event_counts": dict(Counter(e["kind"] for e in result.events)),
    }  # fmt: skip
    with private_files(design.workspace_dir()):
        document.save(saved)
        render_design_document(document, reports / "design.html")
