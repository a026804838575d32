"""The rollout's per-variant section in the monitoring report and the design document."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from mlsd.monitoring import compare_variants
from mlsd.report import MonitoringRun, render_design_document, render_monitor_report
from mlsd.report.monitor import build_monitor_figures
from mlsd.report.variants import variant_figures, variant_scores_figure, variant_traffic_figure

HOSTILE = '<script>alert("x")</script>'


def _report(n_champion: int = 600, n_challenger: int = 400, weights=None) -> dict:
    rng = np.random.default_rng(1)
    n = n_champion + n_challenger
    variant = np.array(["champion"] * n_champion + ["challenger"] * n_challenger, dtype=object)
    score = rng.uniform(0, 1, n)
    predictions = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "logged_at": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s"),
            "variant": variant,
            "assigned_variant": variant,
            "fallback": None,
            "score": score,
            "decision": score >= 0.5,
            "latency_ms": rng.gamma(2.0, 3.0, n),
            "outcome": (rng.uniform(0, 1, n) < score).astype(float),
        }
    )
    shadow = pd.DataFrame(
        {
            "request_id": ["r0", "r1", "r2", "r3"],
            "logged_at": pd.Timestamp("2026-01-01", tz="UTC"),
            "variant": "shadowy",
            "model_version": 3,
            "score": [0.1, 0.6, 0.7, None],
            "decision": [False, True, True, None],
            "latency_ms": [5.0, 6.0, 7.0, None],
            "error": [None, None, None, "boom"],
            "primary_variant": "champion",
            "primary_score": [0.2, 0.4, 0.8, 0.9],
            "primary_decision": [False, False, True, True],
            "primary_latency_ms": [4.0, 4.0, 4.0, 4.0],
        }
    )
    events = pd.DataFrame(
        {
            "logged_at": pd.to_datetime(["2026-01-01 00:02", "2026-01-01 00:12"], utc=True),
            "kind": ["canary_advance", "rollback"],
            "variant": ["challenger", "challenger"],
            "reason": ["step 2", HOSTILE],
            "details": [{}, {}],
            "actor": ["server", "cli"],
            "outcome": ["ok", "ok"],
        }
    )
    return compare_variants(
        predictions,
        shadow=shadow,
        events=events,
        weights=weights if weights is not None else {"champion": 0.5, "challenger": 0.5},
        task="binary",
        order=["champion"],
    ).to_dict()


def _monitor(variants: dict | None) -> dict:
    out = {
        "task": "binary",
        "window": "1d",
        "created_at": "2026-01-02T00:00:00+00:00",
        "limits": {},
        "fired": False,
        "alerts": [],
        "windows": [],
        "overall": None,
    }
    if variants is not None:
        out["variants"] = variants
    return out


def _table(html: str, table_id: str) -> str:
    match = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S)
    assert match, table_id
    return match.group(1)


def test_monitor_report_renders_the_variant_section(tmp_path):
    variants = _report()
    html = render_monitor_report(_monitor(variants), tmp_path / "m.html").read_text()
    assert '<section id="variants">' in html
    rows = _table(html, "variants-table")
    assert "<code>champion</code>" in rows and "<code>challenger</code>" in rows
    assert rows.index("champion") < rows.index("challenger")  # champion first
    assert "60.0%" in rows and "50.0%" in rows  # served share and intended share
    # 600/400 against 50/50 is a mismatch, said in the section and the header
    assert "Sample-ratio mismatch" in html and "sample-ratio mismatch</span>" in html
    shadow = _table(html, "shadow-table")
    assert "<code>shadowy</code>" in shadow and "66.7%" in shadow  # 2 of 3 decisions agree
    assert "boom" in shadow
    timeline = _table(html, "timeline-table")
    assert "canary_advance" in timeline and 'class="error"' in timeline  # the rollback is red
    assert HOSTILE not in html and "&lt;script&gt;" in timeline
    for key in ("fig-variant-scores", "fig-variant-traffic"):
        assert f'id="{key}"' in html


def test_intended_split_reads_as_such(tmp_path):
    html = render_monitor_report(
        _monitor(_report(weights={"champion": 0.6, "challenger": 0.4})), tmp_path / "m.html"
    ).read_text()
    assert "The split follows the intended weights" in html
    assert "Sample-ratio mismatch" not in html


def test_no_section_without_variants(tmp_path):
    html = render_monitor_report(_monitor(None), tmp_path / "m.html").read_text()
    assert 'id="variants"' not in html and "fig-variant" not in html
    assert build_monitor_figures(_monitor(None)) == {}


def test_figures_draw_the_measured_shares():
    variants = _report()
    scores = variant_scores_figure(variants)
    assert [t.name for t in scores.data] == ["champion", "challenger"]
    for trace, row in zip(scores.data, variants["variants"], strict=True):
        counts = np.asarray(row["histogram"], dtype=float)
        assert np.allclose(trace.y, counts / counts.sum())
    traffic = variant_traffic_figure(variants)
    lines = [t for t in traffic.data if t.mode == "lines"]
    total = np.sum([np.asarray(t.customdata, dtype=float) for t in lines], axis=0)
    assert total.sum() == 1000
    stacked = np.nansum([np.asarray(t.y, dtype=float) for t in lines], axis=0)
    assert np.allclose(stacked[total > 0], 1.0)  # shares of each time bin add up to one
    events = [t for t in traffic.data if t.name == "rollout events"]
    assert len(events) == 1 and len(events[0].x) == 2
    assert set(variant_figures(variants)) == {"fig-variant-scores", "fig-variant-traffic"}
    assert variant_figures(None) == {}


def test_design_document_segment_5_shows_the_variants(document, tmp_path):
    variants = _report()
    doc = document.model_copy(deep=True)
    doc.monitoring.latest = MonitoringRun(
        report="monitor-x.html",
        generated_at="2026-01-02 00:00:00",
        period="2026-01-01 to 2026-01-02",
        window="1d",
        windows=1,
        predictions=1000,
        labelled=1000,
        variants=variants,
    )
    # the document is saved as JSON and read back before it is rendered again
    doc = type(doc).model_validate_json(doc.model_dump_json())
    html = render_design_document(doc, tmp_path / "design.html").read_text()
    segment = html[html.index('<section id="monitoring">') :]
    assert '<h3 id="variants">Variants and rollout</h3>' in segment
    assert "<code>challenger</code>" in _table(segment, "variants-table")
    assert 'id="fig-variant-scores"' in segment and 'id="fig-variant-traffic"' in segment
    assert HOSTILE not in html


def test_design_document_without_variants_has_no_section(document, tmp_path):
    html = render_design_document(document, tmp_path / "design.html").read_text()
    assert 'id="variants"' not in html


@pytest.mark.parametrize("task", ["regression"])
def test_regression_columns(tmp_path, task):
    p = pd.DataFrame(
        {"variant": ["a", "a", "b", "b"], "score": [1.0, 2.0, 3.0, 5.0], "outcome": [1.0, 4.0, 4.0, 4.0]}
    )
    v = compare_variants(p, task=task).to_dict()
    html = render_monitor_report(_monitor(v) | {"task": task}, tmp_path / "m.html").read_text()
    head = _table(html, "variants-table")
    assert '<th class="n">RMSE</th>' in head and '<th class="n">MAE</th>' in head
    assert json.loads(json.dumps(v)) == v


def test_traffic_figure_draws_the_split_the_events_set():
    variants = _report()
    variants["timeline"][0]["weights"] = {"champion": 0.75, "challenger": 0.25}
    variants["timeline"][1]["weights"] = {"champion": 1.0, "challenger": 0.0}
    fig = variant_traffic_figure(variants)
    intended = {t.name: list(t.y) for t in fig.data if t.name.endswith("intended")}
    assert intended == {"champion intended": [0.75, 1.0, 1.0], "challenger intended": [0.25, 0.0, 0.0]}
