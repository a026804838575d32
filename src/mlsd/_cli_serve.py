"""``mlsd serve`` and ``mlsd replay``: the HTTP server and the client that replays a split to it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlsd._cli_base import DesignPath, err, fail, out, system_of
from mlsd._cli_tables import num as _num
from mlsd.errors import MlsdError

__all__ = ["replay", "serve"]


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
        system = system_of(design)
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
        fail(exc)

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
                fail(exc)
        return
    try:
        settings, app_ = build()
    except MlsdError as exc:
        sock.close()
        fail(exc)
    banner(serving_info(settings))
    with sock:
        run_server(app_, settings, sock)


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
        system = system_of(design)
        dep = system.design.deployment
        base_url = url or f"http://{dep.host}:{dep.port}"
        _require_ready(base_url, design)  # before the data loads: a missing server fails at once
        rows, labels = system.replay_rows(split)
    except MlsdError as exc:
        fail(exc)
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
        fail(exc)
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
        fail(
            MlsdError(
                f"no server answers there ({type(exc).__name__})",
                field="--url",
                received=base_url,
                expected=f"a running server: start one with `mlsd serve {design}`",
            )
        )
    if response.status_code != 200:
        fail(
            MlsdError(
                "the server is not ready",
                field="--url",
                received=f"{base_url}/readyz -> {response.status_code}",
                expected="200 from /readyz (the model loaded and the log writer running)",
            )
        )
