"""The ``mlsd`` command: a thin layer over :class:`mlsd.System`.

Exit codes: 0 success, 1 a failed gate (leakage check, no candidate passing), 2 misuse (bad
design file, missing column, unreadable data). Errors print as one line, never a traceback.
The serving commands (``serve``, ``replay``) are in :mod:`mlsd._cli_serve`, the log and labelling
commands (``log``, ``label``) in :mod:`mlsd._cli_log`; this module registers them on the one app,
in the order ``--help`` lists them.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mlsd import _cli_log, _cli_serve
from mlsd._cli_base import DesignPath, LogUrl, RichProgress, app, err, fail, out, system_of
from mlsd._cli_tables import print_experiment, print_monitor, print_tradeoff
from mlsd.errors import DesignError, MlsdError

__all__ = ["RichProgress", "app", "main"]


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Name of the system; a folder of that name is created.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to create the folder.")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite an existing design.yaml.")] = False,
) -> None:
    """Scaffold a commented design.yaml with the five segments (runs as is on bundled data)."""
    import re

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", name):
        fail(
            MlsdError(
                "not a valid system name",
                field="NAME",
                received=name,
                expected="letters, digits, _ . - starting with a letter",
            )
        )
    target = directory / name / "design.yaml"
    if target.exists() and not force:
        fail(
            MlsdError(
                "a design already exists there",
                field="NAME",
                received=str(target),
                expected="a new name, or --force to overwrite",
            )
        )
    text = resources.files("mlsd").joinpath("templates/design.yaml.tmpl").read_text(encoding="utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.format(name=name), encoding="utf-8")
    out.print(f"wrote [bold]{escape(str(target))}[/]; next: [cyan]mlsd validate {escape(str(target))}[/]")


@app.command()
def validate(
    design: DesignPath,
    data: Annotated[bool, typer.Option(help="Also load the data and check every named column.")] = True,
) -> None:
    """Check a design file: keys, types, values, and (with --data) that named columns exist."""
    try:
        system = system_of(design)
        prepared = system.validate(check_data=data)
    except MlsdError as exc:
        fail(exc)
    d = system.design
    line = f"[green]✓[/] {escape(str(design))}: {d.name} ({d.goals.task}, metric {d.goals.metric}, "
    line += f"{len(d.models.candidates)} candidates)"
    if prepared is not None:
        line += f"; data: {len(prepared.frame):,} labelled rows, {len(prepared.input_columns)} input columns"
    out.print(line, highlight=False, soft_wrap=True)


@app.command()
def build(
    design: DesignPath,
    alias: Annotated[
        str,
        typer.Option(
            help="Register the winner under this alias; another than champion (e.g. challenger) "
            "leaves the champion and its monitoring reference in place."
        ),
    ] = "champion",
) -> None:
    """Build segments 1-4 offline: data, split, leakage checks, features, candidates, decision, registry."""
    try:
        with RichProgress(err) as progress:
            result = system_of(design, progress).build(alias=alias)
    except MlsdError as exc:
        fail(exc)
    doc = result.document
    out.print(
        f"[bold green]{escape(result.alias)}[/]: {escape(result.winner)} "
        f"(version {result.registered_version}) in {result.seconds:.0f} s",
        highlight=False,
    )
    if result.alias != "champion":
        out.print(
            f"registered as [bold]{escape(result.alias)}[/]; the champion and its monitoring reference "
            f"are unchanged (promote with [cyan]mlsd promote {escape(str(design))} --alias "
            f"{escape(result.alias)}[/])",
            highlight=False,
            soft_wrap=True,
        )
    _print_tradeoff(doc)
    out.print(f"design document: [bold]{escape(str(result.report_path))}[/]", highlight=False)


@app.command()
def promote(
    design: DesignPath,
    alias: Annotated[str, typer.Option(help="The alias whose version becomes the champion.")] = "challenger",
    log_url: LogUrl = None,
) -> None:
    """Make the version behind --alias the champion (servers pick it up within state_refresh_s)."""
    try:
        old, new = system_of(design).promote(alias, log_url=log_url)
    except MlsdError as exc:
        fail(exc)
    before = f"version {old}" if old is not None else "none"
    out.print(
        f"[bold green]champion[/]: version {new} (was {before}), promoted from {escape(alias)}; event logged",
        highlight=False,
    )


@app.command()
def rollback(design: DesignPath, log_url: LogUrl = None) -> None:
    """Point the champion back at the previous champion (the one before the last promote or build)."""
    try:
        old, new = system_of(design).rollback(log_url=log_url)
    except MlsdError as exc:
        fail(exc)
    out.print(
        f"[bold yellow]champion[/]: rolled back from version {old} to version {new}; event logged",
        highlight=False,
    )


@app.command()
def retrain(
    design: DesignPath,
    trigger: Annotated[
        str,
        typer.Option(
            help="manual (always), or the monitoring.retrain rule to check: drift, performance, schedule."
        ),
    ] = "manual",
    log_url: LogUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was done as JSON on stdout.")] = False,
) -> None:
    """Build a challenger on the training data plus the labelled traffic when the trigger fires;
    register it only if it beats the champion on the newest labelled traffic (exit 1 if not)."""
    import json

    try:
        with RichProgress(err) as progress:
            run = system_of(design, progress).retrain(trigger, log_url=log_url)
    except MlsdError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(run.to_dict(), default=str) + "\n")
        return
    if not run.decision.fired:
        out.print(f"no retraining: {escape(run.decision.describe())}", highlight=False)
        return
    holdout = (run.summary or {}).get("holdout", {})
    out.print(
        f"[bold green]challenger[/]: {escape(run.build.winner)} (version {run.build.registered_version}) "
        f"after {escape(run.decision.describe())}; on the newest {holdout.get('n_rows', 0):,} labelled rows "
        f"{holdout.get('metric')} {holdout.get('challenger', float('nan')):.4f} vs the champion's "
        f"{holdout.get('champion', float('nan')):.4f}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"design document: [bold]{escape(str(run.build.report_path))}[/]", highlight=False)


@app.command()
def simulate(
    design: DesignPath,
    start: Annotated[
        str,
        typer.Option(help="The simulated period's first day; the first model trains on what came before."),
    ],
    end: Annotated[str, typer.Option(help="The day after the simulated period.")],
    step: Annotated[
        str, typer.Option(help="Window length: rows sent, outcomes posted, triggers checked per window.")
    ] = "1w",
    label_delay: Annotated[
        str, typer.Option(help="How long after its event time an outcome arrives.")
    ] = "1d",
    sample: Annotated[
        float, typer.Option(help="Share of each window's rows sent (a seeded uniform sample).")
    ] = 1.0,
    policies: Annotated[
        str, typer.Option(help="Update policies compared offline: never, on_drift, every_<duration>.")
    ] = "never,every_4w,every_1w,on_drift",
    plant_bad_challenger: Annotated[
        int | None,
        typer.Option(help="In this window (0-based), register a challenger trained on inverted labels."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the simulation as JSON on stdout.")] = False,
) -> None:
    """Replay event time forward through a real server, log and registry: predictions, delayed
    outcomes, monitoring, re-training on the design's triggers, canary, promotion or rollback;
    then compare update policies on the same rows (docs/simulation.md)."""
    import json

    from mlsd._simulate import SimulationSpec, run_simulation
    from mlsd.design import parse_duration

    try:
        spec = SimulationSpec(
            start=_utc_day(start, "--start"),
            end=_utc_day(end, "--end"),
            step=_duration(step, "--step", parse_duration),
            label_delay=_duration(label_delay, "--label-delay", parse_duration),
            sample=sample,
            policies=tuple(p.strip() for p in policies.split(",") if p.strip()),
            plant_bad_challenger=plant_bad_challenger,
        )
        with RichProgress(err) as progress:
            result = run_simulation(Path(design), spec, progress=progress)
    except MlsdError as exc:
        fail(exc)
    data = result.to_dict()
    if as_json:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
        return
    c = data["served_vs_frozen"]
    if c:
        out.print(
            f"served vs frozen: {c['metric']} {c['challenger']:.4f} vs {c['champion']:.4f}, gain "
            f"{c['gain']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}] over {c['n_rows']:,} predictions",
            highlight=False,
        )
    for e in data["events"]:
        out.print(
            f"  {e['at'][:10]} {escape(e['kind'])}: {escape(e['reason'])}", highlight=False, soft_wrap=True
        )
    for p in data["policies"]:
        gain = p["gain_vs_never"]
        out.print(
            f"policy {p['policy']}: {p['trainings']} trainings, {data['metric']} {p['metric']:.4f}"
            + (f" (gain {gain['gain']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}])" if gain else "")
            + (f", cost per 1,000 {p['cost_per_1000']:.1f}" if p["cost_per_1000"] is not None else ""),
            highlight=False,
        )
    out.print(f"report: [bold]{escape(str(result.report_path))}[/]", highlight=False)


def _utc_day(text: str, field: str) -> Any:
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise DesignError("not a date", field=field, received=text, expected="e.g. 2013-05-01") from exc
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _duration(text: str, field: str, parse: Any) -> Any:
    try:
        return parse(text)
    except ValueError as exc:
        raise DesignError(str(exc), field=field, received=text, expected="e.g. 1d, 1w") from exc


@app.command()
def report(design: DesignPath) -> None:
    """Write reports/design.html, the design document, from the last build's measurements."""
    try:
        path = system_of(design).report()
    except MlsdError as exc:
        fail(exc)
    out.print(f"design document: [bold]{escape(str(path))}[/]", highlight=False)


@app.command()
def models(design: DesignPath) -> None:
    """List the registered versions of the design's model and their aliases."""
    try:
        system = system_of(design)
        versions = system.models()
    except MlsdError as exc:
        fail(exc)
    table = Table(title=escape(f"{system.design.registry_name} in {system.workspace / 'mlflow.db'}"))
    for col in ("version", "aliases", "created", "run", "metrics"):
        table.add_column(col)
    metric = system.design.goals.metric
    shown = (f"valid_{metric}", f"test_{metric}", "threshold", "test_cost_per_1000", "p99_latency_ms")
    for v in versions:
        values = v.metrics or {}
        metrics = ", ".join(f"{k} {values[k]:.3f}" for k in shown if k in values)
        table.add_row(
            str(v.version),
            ", ".join(v.aliases) or "-",
            str(v.created_at)[:19],
            str(v.run_id)[:8],
            escape(metrics) or "-",
        )
    out.print(table)


app.command()(_cli_serve.serve)
app.command()(_cli_serve.replay)


@app.command()
def monitor(
    design: DesignPath,
    window: Annotated[
        str | None, typer.Option(help="Window size, e.g. 1d or 1w (default: monitoring.window).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this time (event time), e.g. 2013-11-01.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (event time).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Watch the logged traffic: drift, data quality, performance, SLOs per window; exit 1 on an alert."""
    try:
        with RichProgress(err) as progress, progress.stage("reading the log and computing the windows"):
            run = system_of(design).monitor(window=window, since=since, until=until)
    except MlsdError as exc:
        fail(exc)
    result = run.result
    for warning in result.warnings:  # before the table: every window below depends on it
        err.print(f"[bold yellow]warning[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(result.to_json() + "\n")
    else:
        _print_monitor(result)
        out.print(
            f"monitoring report: [bold]{escape(str(run.html_path))}[/] (JSON: {escape(run.json_path.name)})",
            highlight=False,
        )
    for alert in result.alerts:
        err.print(
            f"[bold red]alert[/] {escape(f'{alert.name}: {alert.message}')}", highlight=False, soft_wrap=True
        )
    if result.fired:
        raise typer.Exit(1)


@app.command()
def experiment(
    design: DesignPath,
    since: Annotated[str | None, typer.Option(help="From this time (event time), e.g. 2013-11-01.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (event time).")] = None,
    plan: Annotated[
        bool,
        typer.Option("--plan", help="Also the sample each metric needs and the MDE of the sample logged."),
    ] = False,
    mde: Annotated[
        float | None,
        typer.Option(
            help="The improvement to plan for, relative to the baseline (implies --plan), e.g. 0.05 = 5%."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Analyse the experiment in the prediction log: lifts with CIs, SRM, Bayesian and sequential
    read-outs (docs/experiments.md); exit 1 on a sample-ratio mismatch."""
    try:
        with RichProgress(err) as progress, progress.stage("reading the log and comparing the variants"):
            run = system_of(design).experiment(since=since, until=until, plan=plan, mde=mde)
    except MlsdError as exc:
        fail(exc)
    result = run.result
    for warning in result.warnings:
        err.print(f"[bold yellow]warning[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(result.to_json() + "\n")
    else:
        print_experiment(out, result)
        out.print(
            f"experiment report: [bold]{escape(str(run.html_path))}[/] (JSON: {escape(run.json_path.name)})",
            highlight=False,
        )
    if result.srm_detected:  # every comparison is suspect: make a script notice
        raise typer.Exit(1)


def _print_tradeoff(doc) -> None:
    """The build's trade-off table on this command's console (:func:`mlsd._cli_tables.print_tradeoff`)."""
    print_tradeoff(out, doc)


def _print_monitor(result) -> None:
    """The monitor's tables on this command's console (:func:`mlsd._cli_tables.print_monitor`)."""
    print_monitor(out, result)


app.command()(_cli_log.label)
app.command("log")(_cli_log.log_command)


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # MLflow probes for git; stay silent
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
