"""The tables the ``mlsd`` command prints: the build's trade-off and the monitor's windows.

Kept apart from :mod:`mlsd.cli` (the commands, their options and exit codes) because these are
pure rendering of a result into a :class:`rich.console.Console`: they read the result objects
of the build and the monitor and decide nothing. Every value taken from the design or the
data is escaped, so a name holding ``[red]`` prints as written.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["interval_text", "num", "print_experiment", "print_monitor", "print_tradeoff"]


def print_tradeoff(out: Console, doc: Any) -> None:
    """The build's trade-off table: each candidate's metric, latency, cost and decision."""
    metric = doc.goals.metric
    unit = doc.goals.cost_unit
    table = Table(title="trade-off table", title_style="bold")
    columns = ("model", f"{metric} valid", f"{metric} test", "p99 ms", f"cost/1,000 ({unit})", "decision")
    for col in columns:
        table.add_column(col, justify="left" if col in ("model", "decision") else "right")
    for r in doc.models.tradeoff:
        close = [g.constraint for g in r.gates if g.close]
        verdict = {
            "champion": "[bold green]champion[/]",
            "baseline": "[dim]baseline[/]",
            "passed": "passed",
            "rejected": f"[red]rejected[/]: {escape(r.reason)}",
        }[r.role]
        if close:
            verdict += f" [yellow](close to {escape(', '.join(close))})[/]"
        if r.behaviour:  # models.tests: how many this candidate passed, and which it failed
            failed = [t.test for t in r.behaviour if not t.passed]
            verdict += f"; tests {len(r.behaviour) - len(failed)}/{len(r.behaviour)}"
            verdict += f" [red](failed {escape(', '.join(failed))})[/]" if failed else ""
        table.add_row(
            escape(r.name),
            interval_text(r.valid.get(metric)),
            interval_text(r.test.get(metric)),
            num(r.p99_ms, 2),
            num(r.cost_per_1000, 0),
            verdict,
        )
    out.print(table)
    if doc.models.latency_method:
        out.print(f"[dim]latency: {escape(doc.models.latency_method)}[/]", highlight=False, soft_wrap=True)


def num(value: object, digits: int) -> str:
    """``value`` with ``digits`` decimals, ``-`` when it is not a number.

    >>> num(3.14159, 2), num(None, 2)
    ('3.14', '-')
    """
    return "-" if not isinstance(value, int | float) else f"{value:.{digits}f}"


def interval_text(interval: Any) -> str:
    if interval is None or interval.value is None:
        return "-"
    if interval.low is not None and interval.high is not None:
        return f"{interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]"
    return f"{interval.value:.3f}"


_VERDICT = {True: "[green]met[/]", False: "[red]missed[/]", None: "[dim]unmeasured[/]"}


def print_monitor(out: Console, result: Any) -> None:
    """The monitor's tables: drift and performance per window, the SLOs, the variants of a rollout."""
    regression = result.task == "regression"
    performance = (
        ("RMSE", "MAE", "mean prediction", "mean outcome") if regression else ("label rate", "ROC AUC", "ECE")
    )
    table = Table(
        title=f"monitoring by window ({result.window}, reference: {result.reference})", title_style="bold"
    )
    for col in (
        "window",
        "rows",
        "detected",
        "material",
        "largest drift (effect size)",
        "score drift",
        *performance,
    ):
        table.add_column(col, justify="left" if col in ("window", "largest drift (effect size)") else "right")
    for w in result.windows:
        drift = w.drift
        ranked = [f for f in drift.features if f.drifted][:3] if drift is not None else []
        perf = w.performance
        measured: tuple[float | None, ...] = (
            (perf.rmse, perf.mae, perf.mean_score_labelled, perf.outcome_mean)
            if regression
            else (perf.label_rate, perf.roc_auc, perf.ece)
        )
        if drift is None:  # a window with nothing to compare with says why
            no_reference = bool(w.reference) and w.reference.startswith("none")
            largest = f"[dim]{escape(w.reference)}[/]" if no_reference else "-"
        else:
            largest = escape(", ".join(f"{f.column} {f.effect_size:.2f}" for f in ranked)) or "[green]none[/]"
        table.add_row(
            str(w.start)[:10] if w.start is not None else "-",
            f"{w.n:,}",
            f"{drift.n_detected}/{len(drift.features)}" if drift is not None else "-",
            f"{drift.n_drifted}/{len(drift.features)}" if drift is not None else "-",
            largest,
            num(w.prediction_drift.effect_size if w.prediction_drift is not None else None, 2),
            *(num(v, 3) for v in measured),
        )
    out.print(table)
    print_label_lag(out, result)
    slo = result.overall.slo
    if slo is not None and slo.n_requests:
        checks = ", ".join(
            f"{o.name} {_VERDICT[o.passed]} ({num(o.value, 1)} vs {o.limit:g})" for o in slo.objectives
        )
        out.print(
            f"service: {slo.n_requests:,} requests, "
            f"p50 {num(slo.p50_ms, 1)} ms, p99 {num(slo.p99_ms, 1)} ms, "
            f"5xx rate {num(slo.error_rate, 4)}, {num(slo.requests_per_second, 0)} req/s"
            + (f"; {checks}" if checks else ""),
            highlight=False,
        )
    variants = getattr(result, "variants", None)
    if variants is None:  # one model served alone
        return
    metric = next((v.metric for v in variants.variants if v.metric), None)
    names = {"roc_auc": "ROC AUC", "rmse": "RMSE"}
    table = Table(title="variants (the alias that answered)", title_style="bold")
    columns = ["variant", "requests", "share", "intended", "fallbacks", "p50 ms", "p99 ms", "mean score"]
    columns += ["labelled", "accuracy", *([names.get(metric, metric)] if metric else [])]
    for col in columns:
        table.add_column(col, justify="left" if col == "variant" else "right")
    for v in variants.variants:
        table.add_row(
            escape(v.variant),
            f"{v.requests:,}",
            "-" if v.share is None else f"{100 * v.share:.1f}%",
            "-" if v.intended_share is None else f"{100 * v.intended_share:.1f}%",
            f"[red]{v.fallbacks:,}[/]" if v.fallbacks else "0",
            num(v.latency_p50_ms, 1),
            num(v.latency_p99_ms, 1),
            num(v.score_mean, 3),
            f"{v.labelled:,}",
            num(v.accuracy, 3),
            *([num(v.metric_value, 3)] if metric else []),
        )
    out.print(table)
    if variants.srm_p_value is not None:
        verdict = "[red]sample-ratio mismatch[/]" if variants.srm_detected else "[green]split as intended[/]"
        out.print(f"SRM: {verdict} (chi-squared p = {variants.srm_p_value:.3g})", highlight=False)
    for s in variants.shadow:
        out.print(
            f"shadow {escape(s.variant)}: {s.n:,} scored, agreement {num(s.agreement, 3)}, "
            f"Spearman {num(s.spearman, 3)}, p99 {num(s.latency_p99_ms, 1)} ms "
            f"(Δ {num(s.latency_p99_diff_ms, 1)}), {s.n_errors:,} errors",
            highlight=False,
        )
    for e in variants.timeline[-5:]:
        at = "-" if e.at is None else f"{e.at:%Y-%m-%d %H:%M}"
        out.print(
            f"event {at} {escape(e.kind)} {escape(e.variant or '')}: {escape(e.reason)}", highlight=False
        )


def _signed(value: object, digits: int) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:+.{digits}f}"


def print_experiment(out: Console, result: Any) -> None:
    """``mlsd experiment``'s tables: the variants, the SRM verdict, each metric's lift."""
    table = Table(title=f"variants (baseline {escape(result.baseline)})", title_style="bold")
    for col in ("variant", "units", "requests", "labelled", "accuracy", "cost/1,000", "metric", "latency ms"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for v in result.variants:
        metric = "-" if v.metric_value is None else f"{escape(str(v.metric))} {v.metric_value:.4f}"
        table.add_row(
            escape(v.variant),
            f"{v.units:,}",
            f"{v.requests:,}",
            f"{v.labelled:,}",
            num(v.accuracy, 4),
            num(v.cost_per_1000, 1),
            metric,
            num(v.latency_mean_ms, 2),
        )
    out.print(table)
    if result.srm_p_value is None:
        out.print("[dim]sample-ratio test: no fixed split to test[/]", highlight=False)
    else:
        verdict = "[bold red]MISMATCH[/]" if result.srm_detected else "[green]ok[/]"
        out.print(
            f"sample-ratio test on {result.srm_counted}: p = {result.srm_p_value:.3g} {verdict}",
            highlight=False,
        )
    lifts = Table(title="lifts", title_style="bold")
    for col in (
        "variant",
        "metric",
        "baseline",
        "variant value",
        "lift",
        f"{1 - result.alpha:.0%} CI",
        "relative",
        "p",
        "p adj",
        "P(better)",
        "sequential",
        "verdict",
    ):
        lifts.add_column(
            col, justify="left" if col in ("variant", "metric", "sequential", "verdict") else "right"
        )
    for c in result.comparisons:
        rel = "-" if c.relative is None else f"{c.relative:+.1%}"
        seq = "-" if c.sequential is None else f"{c.sequential['verdict']} (p {c.sequential['p_value']:.3g})"
        colour = "green" if c.verdict == "better" else "red" if c.verdict == "worse" else "dim"
        lifts.add_row(
            escape(c.variant),
            escape(c.metric),
            num(c.estimate_a, 4),
            num(c.estimate_b, 4),
            _signed(c.difference, 4),
            f"[{_signed(c.ci[0], 4)}, {_signed(c.ci[1], 4)}]",
            rel,
            f"{c.p_value:.3g}",
            f"{c.p_adjusted:.3g}",
            "-" if c.bayesian is None else f"{c.bayesian['p_b_better']:.3f}",
            seq,
            f"[{colour}]{c.verdict}[/]",
        )
    out.print(lifts)
    if result.plan:
        plan = Table(
            title=f"plan (power {result.plan['power']:.0%}, alpha {result.plan['alpha']})", title_style="bold"
        )
        for col in ("metric", "baseline", "MDE now", "MDE now %", "MDE asked", "units per arm", "days"):
            plan.add_column(col, justify="left" if col == "metric" else "right")
        for row in result.plan["metrics"]:
            need = row.get("n_per_arm")
            plan.add_row(
                escape(row["metric"]),
                num(row["baseline_value"], 4),
                num(row.get("mde_now"), 4),
                "-" if row.get("mde_now_relative") is None else f"{row['mde_now_relative']:.1%}",
                num(row.get("mde"), 4),
                "-" if need is None else ", ".join(f"{escape(k)} {v:,}" for k, v in need.items()),
                num(row.get("days_needed"), 1),
            )
        out.print(plan)


def _hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.1f} h"


def print_label_lag(out: Console, result: Any) -> None:
    """Label delay per window and whether it is mature (monitoring.label_maturity), when labels exist."""
    lags = [(w, w.label_lag) for w in result.windows if w.label_lag is not None]
    if not any(lag.n_labelled or lag.mature is not None for _, lag in lags):
        return
    table = Table(title="label lag (feedback after the event)", title_style="bold")
    for col in ("window", "labelled", "unlabelled", "median delay", "p90 delay", "judged"):
        table.add_column(col, justify="left" if col in ("window", "judged") else "right")
    for w, lag in lags:
        judged = {None: "-", True: "yes", False: "[yellow]not mature[/]"}[lag.mature]
        table.add_row(
            str(w.start)[:10] if w.start is not None else "-",
            f"{lag.n_labelled:,}",
            num(None if lag.share_unlabelled is None else 100 * lag.share_unlabelled, 1) + "%",
            _hours(lag.median_delay_s),
            _hours(lag.p90_delay_s),
            judged,
        )
    out.print(table)
