"""``mlsd label`` and ``mlsd log``: active learning's queue, and what the prediction log holds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mlsd._cli_base import DesignPath, LogUrl, err, fail, out, system_of
from mlsd.errors import MlsdError

__all__ = ["label", "log_command"]


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
        system = system_of(design)
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
        fail(exc)


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
        system = system_of(design)
        if system.design.deployment.log_url is None and not (system.workspace / "predictions.db").exists():
            # reading must not create an empty log as a side effect
            fail(
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
        fail(exc)


def _log_review(system, log, export: Path | None, since, until, output_format: str) -> None:
    """``mlsd log --review``: the abstained predictions queued for review (docs/abstention.md)."""
    from mlsd._watching import parse_timestamp as _timestamp
    from mlsd.store.files import private_files

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
    from mlsd._watching import parse_timestamp as _timestamp
    from mlsd.data.sampling import sample_prediction_log
    from mlsd.store.files import private_files

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
