"""The ``mlsd`` command: a thin layer over :class:`mlsd.System`.

Exit codes: 0 success, 1 a failed gate (leakage check, no candidate passing), 2 misuse (bad
design file, missing column, unreadable data). Errors print as one line, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlsd._cli_tables import num as _num
from mlsd._cli_tables import print_experiment, print_monitor, print_tradeoff
from mlsd.errors import DesignError, MlsdError

__all__ = ["app", "main"]

app = typer.Typer(
    name="mlsd",
    help="An ML system design, executable: design.yaml -> data, features, models, registry, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Wide enough for the trade-off table when output goes to a file or CI log rather than a terminal.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DesignPath = Annotated[Path, typer.Argument(help="The design file (design.yaml).", show_default=False)]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"mlsd {version('mlsd')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """An ML system design, executable: design.yaml -> data, features, models, registry, report."""


class RichProgress:
    """Draws each build stage as a line with a spinner, a bar where steps are known, and its time.

    Without a terminal (CI logs, files) each stage prints one line when it starts and one when it
    ends, so a long build still shows where it is.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live = console.is_terminal
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.completed}/{task.total}", style="dim"),
            TimeElapsedColumn(),
            console=console,
            disable=not self._live,
        )

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[], None]]:
        start = time.perf_counter()
        if not self._live:
            self.console.print(f"… {escape(name)}", highlight=False)
        task = self._progress.add_task(escape(name), total=total or 1)
        yield lambda: self._progress.advance(task)
        self._progress.update(task, completed=total or 1, description=f"[green]✓[/] {escape(name)}")
        if not self._live:
            self.console.print(
                f"[green]✓[/] {escape(name)} ({time.perf_counter() - start:.1f} s)", highlight=False
            )

    def note(self, message: str) -> None:
        # notes carry data and design text ("leakage [duplicate_rows] ..."): never read as markup
        self.console.print(f"  [dim]·[/] {escape(message)}", highlight=False)


def _fail(exc: MlsdError) -> None:
    err.print(f"[bold red]error[/]: {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _system(path: Path, progress: RichProgress | None = None):
    from mlsd.system import System

    return System(path, progress=progress)


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Name of the system; a folder of that name is created.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to create the folder.")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite an existing design.yaml.")] = False,
) -> None:
    """Scaffold a commented design.yaml with the five segments (runs as is on bundled data)."""
    import re

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", name):
        _fail(
            MlsdError(
                "not a valid system name",
                field="NAME",
                received=name,
                expected="letters, digits, _ . - starting with a letter",
            )
        )
    target = directory / name / "design.yaml"
    if target.exists() and not force:
        _fail(
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
        system = _system(design)
        prepared = system.validate(check_data=data)
    except MlsdError as exc:
        _fail(exc)
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
            result = _system(design, progress).build(alias=alias)
    except MlsdError as exc:
        _fail(exc)
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


LogUrl = Annotated[
    str | None,
    typer.Option(
        help="SQLAlchemy URL of the prediction log the event is written to (default: deployment.log_url)."
    ),
]


@app.command()
def promote(
    design: DesignPath,
    alias: Annotated[str, typer.Option(help="The alias whose version becomes the champion.")] = "challenger",
    log_url: LogUrl = None,
) -> None:
    """Make the version behind --alias the champion (servers pick it up within state_refresh_s)."""
    try:
        old, new = _system(design).promote(alias, log_url=log_url)
    except MlsdError as exc:
        _fail(exc)
    before = f"version {old}" if old is not None else "none"
    out.print(
        f"[bold green]champion[/]: version {new} (was {before}), promoted from {escape(alias)}; event logged",
        highlight=False,
    )


@app.command()
def rollback(design: DesignPath, log_url: LogUrl = None) -> None:
    """Point the champion back at the previous champion (the one before the last promote or build)."""
    try:
        old, new = _system(design).rollback(log_url=log_url)
    except MlsdError as exc:
        _fail(exc)
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
            run = _system(design, progress).retrain(trigger, log_url=log_url)
    except MlsdError as exc:
        _fail(exc)
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
        _fail(exc)
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
        path = _system(design).report()
    except MlsdError as exc:
        _fail(exc)
    out.print(f"design document: [bold]{escape(str(path))}[/]", highlight=False)


@app.command()
def models(design: DesignPath) -> None:
    """List the registered versions of the design's model and their aliases."""
    try:
        system = _system(design)
        versions = system.models()
    except MlsdError as exc:
        _fail(exc)
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


@app.command()
def serve(
    design: DesignPath,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default: deployment.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: deployment.port).")] = None,
    log_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the prediction log (default: deployment.log_url).")
    ] = None,
    shadow_cpus: Annotated[
        str | None,
        typer.Option(
            help="Cores the shadow's scoring process may run on, e.g. 1 or 2,3 (strategy shadow; "
            "default: the server's). Give cores the server does not use to keep the shadow off them."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes on the port, each a whole server; they share the rollout state "
            "through the prediction log (docs/serving-workers.md).",
        ),
    ] = 1,
) -> None:
    """Serve the champion over HTTP: /v1/predict, /v1/feedback, /healthz, /readyz, /metrics, /docs."""
    from mlsd.serving import create_app, settings_for
    from mlsd.serving.server import bind_socket, serving_info
    from mlsd.serving.server import serve as run_server
    from mlsd.serving.shadow import parse_cpus

    try:
        system = _system(design)
        dep = system.design.deployment
        bound, port = host or dep.host, port or dep.port
        cpus = parse_cpus(shadow_cpus) if shadow_cpus is not None else None
        # bound first, before the model loads and before anything says it serves: a port in use
        # is one line and exit 2, and no other server can take the port meanwhile
        if workers > 1:
            from mlsd.serving.workers import hold_port

            sock = hold_port(bound, port)
        else:
            sock = bind_socket(bound, port)
    except MlsdError as exc:
        _fail(exc)

    def build() -> Any:
        settings = settings_for(system, log_url=log_url, host=bound, shadow_cpus=cpus)
        return settings, create_app(settings)

    def banner(info: dict[str, Any]) -> None:
        shown, log = (f"[{bound}]" if ":" in bound else bound), info["log_url"]
        err.print(
            f"serving [bold]{escape(info['model_name'])}[/] version {info['model_version']} on "
            f"{escape(f'http://{shown}:{port} (docs at /docs; log {log}; ')}"
            f"feedback auth: {info['feedback_auth']}{f'; {workers} workers' * (workers > 1)})",
            highlight=False,
        )

    if workers > 1:
        from mlsd.serving.workers import run_workers

        with sock:
            try:
                run_workers(
                    workers,
                    build,
                    bound,
                    port or dep.port,
                    on_ready=banner,
                    say=lambda m: err.print(escape(m), highlight=False),
                )
            except MlsdError as exc:
                _fail(exc)
        return
    try:
        settings, app_ = build()
    except MlsdError as exc:
        sock.close()
        _fail(exc)
    banner(serving_info(settings))
    with sock:
        run_server(app_, settings, sock)


@app.command()
def replay(
    design: DesignPath,
    split: Annotated[str, typer.Option(help="Which split's rows to send: train, valid or test.")] = "test",
    url: Annotated[str | None, typer.Option(help="Server URL (default: deployment host and port).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at most.")] = 8,
    rate: Annotated[float | None, typer.Option(min=0.001, help="Rows per second at most.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Send only the first N rows.")] = None,
    feedback: Annotated[bool, typer.Option(help="Post each row's true label as feedback.")] = False,
) -> None:
    """Send a split's rows, in time order, to a running server; print throughput and latency."""
    from mlsd.serving.replay import replay as run_replay

    try:
        system = _system(design)
        dep = system.design.deployment
        base_url = url or f"http://{dep.host}:{dep.port}"
        _require_ready(base_url, design)  # before the data loads: a missing server fails at once
        rows, labels = system.replay_rows(split)
    except MlsdError as exc:
        _fail(exc)
    if limit is not None:
        rows, labels = rows.head(limit), labels.head(limit)
    err.print(
        escape(f"replaying {len(rows):,} {split} rows to {base_url} (concurrency {concurrency})"),
        highlight=False,
    )
    progress = Progress(
        TextColumn("replay"),
        BarColumn(bar_width=32),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    try:
        with progress:
            task = progress.add_task("replay", total=len(rows))
            result = run_replay(
                base_url,
                rows,
                labels=labels.tolist() if feedback else None,
                feedback_token=os.environ.get(dep.feedback_token_env) or None,
                concurrency=concurrency,
                rate=rate,
                on_done=lambda k: progress.advance(task, k),
            )
    except MlsdError as exc:
        _fail(exc)
    summary = result.to_dict()
    lat = summary["latency_ms"]
    table = Table(title="replay", title_style="bold")
    for col in ("sent", "ok", "failed", "feedback ok", "seconds", "rows/s", "p50 ms", "p90 ms", "p99 ms"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{result.sent:,}",
        f"{result.ok:,}",
        f"{result.sent - result.ok:,}",
        f"{result.feedback_ok:,}/{result.feedback_sent:,}" if feedback else "-",
        f"{result.seconds:.1f}",
        f"{result.throughput_rps:,.0f}",
        *(_num(lat[k], 2) for k in ("p50", "p90", "p99")),
    )
    out.print(table)
    if result.ok < result.sent:
        for line in result.errors[:5]:
            err.print(f"  [red]·[/] {escape(str(line))}", highlight=False)
        err.print(
            f"[bold red]{result.sent - result.ok} of {result.sent} requests failed[/] "
            + escape(f"(status counts {summary['statuses']})"),
            highlight=False,
        )
        raise typer.Exit(1)


def _require_ready(base_url: str, design: Path) -> None:
    """Fail fast, before sending anything, when no ready mlsd server answers at ``base_url``."""
    import httpx

    try:
        response = httpx.get(f"{base_url}/readyz", timeout=5)
    except httpx.HTTPError as exc:
        _fail(
            MlsdError(
                f"no server answers there ({type(exc).__name__})",
                field="--url",
                received=base_url,
                expected=f"a running server: start one with `mlsd serve {design}`",
            )
        )
    if response.status_code != 200:
        _fail(
            MlsdError(
                "the server is not ready",
                field="--url",
                received=f"{base_url}/readyz -> {response.status_code}",
                expected="200 from /readyz (the model loaded and the log writer running)",
            )
        )


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
            run = _system(design).monitor(window=window, since=since, until=until)
    except MlsdError as exc:
        _fail(exc)
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
            run = _system(design).experiment(since=since, until=until, plan=plan, mde=mde)
    except MlsdError as exc:
        _fail(exc)
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


@app.command()
def label(
    design: DesignPath,
    next_n: Annotated[
        int | None, typer.Option("--next", min=1, help="Queue this many items to annotate (default: batch).")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="uncertainty | margin | entropy | committee (default: the design's).")
    ] = None,
    diverse: Annotated[
        bool | None, typer.Option("--diverse/--no-diverse", help="Spread the batch over the feature space.")
    ] = None,
    from_log: Annotated[
        bool, typer.Option("--from-log", help="Pick from the logged predictions without feedback.")
    ] = False,
    export: Annotated[
        Path | None, typer.Option(help="Write the items still to annotate to this .csv or Parquet file.")
    ] = None,
    import_path: Annotated[
        Path | None, typer.Option("--import", help="Merge the answers of this .csv or Parquet file.")
    ] = None,
    log_url: LogUrl = None,
) -> None:
    """Active learning: queue the items to annotate next, export them, import the answers
    (docs/active-learning.md); the next build uses the answers as labels."""
    from mlsd import _labelling

    try:
        system = _system(design)
        if import_path is not None:
            stored, fed = _labelling.import_answers(system, import_path, log_url=log_url)
            out.print(f"imported {stored:,} answers ({fed:,} also as feedback in the log)", highlight=False)
        if next_n is not None or (import_path is None and export is None):
            run = _labelling.label_next(
                system, next_n, strategy=strategy, diverse=diverse, from_log=from_log, log_url=log_url
            )
            out.print(
                f"queued {run.queued:,} of {len(run.picked):,} items picked by {run.strategy}"
                f"{' + diverse' * run.diverse} from {run.pool_size:,} unlabelled ({run.source})",
                highlight=False,
            )
        if export is not None:
            with _labelling.open_queue(system, log_url) as queue:
                n = queue.export(export)
            out.print(f"exported {n:,} items to annotate to [bold]{escape(str(export))}[/]", highlight=False)
    except MlsdError as exc:
        _fail(exc)


@app.command("log")
def log_command(
    design: DesignPath,
    export: Annotated[
        Path | None, typer.Option(help="Write the period's predictions to this Parquet file.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this time (event time), e.g. 2013-11-01.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (event time).")] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="A uniform sample of this many predictions of the period (read in chunks, bounded "
            "memory): to --export, else as CSV on stdout.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 0,
    review: Annotated[
        bool,
        typer.Option(
            "--review",
            help="The review queue: predictions the model abstained on (models.abstain), with their inputs "
            "and reasons; to --export (.csv, .json or Parquet), else to stdout in --format.",
        ),
    ] = False,
    output_format: Annotated[
        str, typer.Option("--format", help="stdout format of --review: csv or json.")
    ] = "csv",
) -> None:
    """Show what the prediction log holds; with --export, write a period of it to Parquet; with
    --sample N, a uniform sample of N of its predictions."""
    try:
        system = _system(design)
        if system.design.deployment.log_url is None and not (system.workspace / "predictions.db").exists():
            # reading must not create an empty log as a side effect
            _fail(
                MlsdError(
                    "no prediction log yet for this design",
                    field="log",
                    received=str(system.workspace / "predictions.db"),
                    expected=f"a log written by `mlsd serve {design}`",
                )
            )
        if output_format != "csv" and not review:
            raise MlsdError(
                "--format chooses the stdout format of --review",
                field="--format",
                received=output_format,
                expected="--review --format json, or no --format",
            )
        log = system.prediction_log()
        if review:
            _log_review(system, log, export, since, until, output_format)
            return
        if sample is not None:
            _log_sample(system, log, sample, seed, export, since, until)
            return
        if export is not None:
            n = system.export_log(export, since=since, until=until)
            out.print(f"exported {n:,} predictions to [bold]{escape(str(export))}[/]", highlight=False)
            return
        out.print(
            f"{escape(str(log.url))}: {log.count_predictions():,} predictions, "
            f"{log.count_feedback():,} with feedback",
            highlight=False,
        )
    except MlsdError as exc:
        _fail(exc)


def _log_review(system, log, export: Path | None, since, until, output_format: str) -> None:
    """``mlsd log --review``: the abstained predictions queued for review (docs/abstention.md)."""
    from mlsd.store.files import private_files
    from mlsd.system import _timestamp

    if output_format not in ("csv", "json"):
        raise MlsdError(
            "unknown output format", field="--format", received=output_format, expected="csv or json"
        )
    frame = log.read_review_queue(_timestamp(since, "since"), _timestamp(until, "until"))
    what = f"{len(frame):,} prediction{'s' * (len(frame) != 1)} in the review queue"
    kind = (export.suffix.lstrip(".").lower() if export is not None else output_format) or "parquet"
    if export is None:
        text = (
            frame.to_json(orient="records", date_format="iso") + "\n"
            if kind == "json"
            else frame.to_csv(index=False)
        )
        sys.stdout.write(text)
        err.print(what, highlight=False)
        return
    with private_files(system.workspace):  # the queue holds the same raw inputs as the log
        if kind == "csv":
            frame.to_csv(export, index=False)
        elif kind == "json":
            frame.to_json(export, orient="records", date_format="iso")
        else:
            log.write_parquet(frame, export)
    out.print(f"exported {what} to [bold]{escape(str(export))}[/]", highlight=False)


def _log_sample(system, log, n: int, seed: int, export: Path | None, since, until) -> None:
    """``mlsd log --sample``: a reservoir sample of the period, to Parquet or CSV on stdout."""
    from mlsd.data.sampling import sample_prediction_log
    from mlsd.store.files import private_files
    from mlsd.system import _timestamp

    frame = sample_prediction_log(
        log, n, seed=seed, since=_timestamp(since, "since"), until=_timestamp(until, "until")
    )
    what = f"a uniform sample of {len(frame):,} predictions (seed {seed})"
    if len(frame) < n:
        what += f"; the period holds only {len(frame):,}"
    if export is None:
        sys.stdout.write(frame.to_csv(index=False))
        err.print(what, highlight=False)
        return
    with private_files(system.workspace):  # the sample holds the same raw inputs as the log
        log.write_parquet(frame, export)
    out.print(f"exported {what} to [bold]{escape(str(export))}[/]", highlight=False)


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
