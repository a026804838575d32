"""The rendered design document: offline, escaped, every section and figure present."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from mlsd.report import DesignDocument, Goals, build_figures, plots, render_design_document

SECTIONS = ("decision", "goals", "data", "features", "models", "monitoring")
BINARY_FIGURES = (
    "fig-cost-curve",
    "fig-timeline",
    "fig-tradeoff",
    "fig-roc",
    "fig-pr",
    "fig-calibration",
    "fig-confusion",
    "fig-slice-carrier",
    "fig-slice-origin",
)


@pytest.fixture(scope="module")
def html(document: DesignDocument, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = render_design_document(document, tmp_path_factory.mktemp("report") / "sub" / "design.html")
    assert path.name == "design.html"
    return path.read_text(encoding="utf-8")


def test_sections_and_toc(html: str) -> None:
    for section in SECTIONS:
        assert f'<section id="{section}"' in html
    for section in SECTIONS[1:]:
        assert f'href="#{section}"' in html
    order = [html.index(f'<section id="{s}"') for s in SECTIONS]
    assert order == sorted(order)


def test_plotlyjs_inlined_exactly_once(html: str) -> None:
    marker = get_plotlyjs()[:200]
    assert html.count(marker) == 1


def test_offline_no_remote_sources(html: str) -> None:
    remote = re.findall(
        r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", html, re.I
    )
    assert remote == []
    assert "@import" not in html and "fonts.googleapis" not in html


def test_user_text_is_escaped(html: str, hostile: str) -> None:
    assert hostile not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;friends&#34;" in html
    assert "<b>v2</b>" not in html and "gbdt &lt;b&gt;v2&lt;/b&gt;" in html
    assert "<i>9E</i>" not in html  # a slice value, inside the plotly JSON


def test_every_expected_figure_div(html: str, document: DesignDocument) -> None:
    for key in BINARY_FIGURES:
        assert html.count(f'id="{key}"') == 1, key
    assert list(build_figures(document)) == list(BINARY_FIGURES)
    assert 'id="fig-pred-actual"' not in html


def test_decision_and_findings(html: str) -> None:
    assert "Decision: ship <code>gbdt &lt;b&gt;v2&lt;/b&gt;</code>" in html
    assert '<tr class="role-champion winner">' in html and '<tr class="role-rejected">' in html
    assert '<li class="failed"><strong>FAILED</strong> single-feature AUC' in html
    # a finding on a check the design does not fail on is reported, not passed
    assert '<li class="warn"><strong>reported</strong> duplicate_rows' in html
    # checks without findings are listed as clean; checks with findings are not
    assert html.count('<li class="ok">') == 2
    assert "✓ forbidden_feature: no finding" in html and "✓ time_order: no finding" in html
    assert "<td>ILM, &lt;LEX&gt;</td>" in html  # data-quality findings, escaped
    assert '0.731 <span class="ci">[0.726, 0.736]</span>' in html
    assert "71.5% saved" in html  # 1 - 239.x / 840


def test_regression_document(tmp_path: Path, document_factory: Callable[..., DesignDocument]) -> None:
    doc = document_factory(task="regression")
    figs = build_figures(doc)
    assert "fig-pred-actual" in figs
    assert not {"fig-roc", "fig-pr", "fig-confusion", "fig-calibration"} & set(figs)
    html = render_design_document(doc, tmp_path / "r.html").read_text()
    assert 'id="fig-pred-actual"' in html


def test_minimal_document_renders(tmp_path: Path) -> None:
    doc = DesignDocument(name="bare", goals=Goals(task="binary"))
    html = render_design_document(doc, tmp_path / "bare.html").read_text()
    assert "No model was chosen" in html and "plotly-graph-div" not in html
    for section in SECTIONS:
        assert f'<section id="{section}"' in html


def test_document_save_load_and_strictness(document: DesignDocument, tmp_path: Path) -> None:
    again = DesignDocument.load(document.save(tmp_path / "doc.json"))
    assert again == document
    assert again.data.schema_[0].column == "distance"
    assert '"schema"' in (tmp_path / "doc.json").read_text()
    with pytest.raises(ValueError, match="thresold"):
        DesignDocument.model_validate({"name": "x", "goals": {"task": "binary", "thresold": 0.3}})


def test_generated_at_is_utc() -> None:
    doc = DesignDocument(name="x", goals=Goals(task="binary"), generated_at="2024-01-01T10:00:00+02:00")
    assert doc.generated_at.isoformat() == "2024-01-01T08:00:00+00:00"


def test_nan_values_render_as_dash(tmp_path: Path) -> None:
    # a one-class slice or an empty split gives NaN rates and bootstrap intervals
    nan = float("nan")
    doc = DesignDocument.model_validate(
        {
            "name": "degenerate",
            "goals": {"task": "binary", "cost_per_1000": 10.0, "baseline_cost_per_1000": nan},
            "data": {"label_rate": nan, "schema": [{"column": "x", "dtype": "float64", "missing_rate": nan}]},
            "models": {
                "tradeoff": [{"name": "m", "valid": {"auc": {"value": nan, "low": nan, "high": nan}}}]
            },
        }
    )
    html = render_design_document(doc, tmp_path / "nan.html").read_text()
    body = html.split("<body>", 1)[1]
    assert "nan" not in body.lower()
    assert '<th scope="row">label rate</th><td>—</td>' in body


def test_figures_show_the_stages_numbers(document: DesignDocument) -> None:
    figs = build_figures(document)
    confusion = document.models.confusion
    assert confusion is not None and confusion.cost_per_1000 == document.goals.cost_per_1000
    assert [list(r) for r in figs["fig-confusion"].data[0].z] == confusion.counts
    champion = document.models.curves["gbdt <b>v2</b>"]
    roc = next(t for t in figs["fig-roc"].data if t.name.startswith("gbdt"))
    assert list(roc.x) == champion.roc.x and f"AUC {champion.roc_auc:.3f}" in roc.name


def test_regression_scatter_caption_says_it_is_a_sample(
    tmp_path: Path, document_factory: Callable[..., DesignDocument]
) -> None:
    html = render_design_document(document_factory(task="regression"), tmp_path / "r.html").read_text()
    assert "a sample of 2,000 of 4,000 test rows" in html


def _tradeoff(html: str) -> str:
    return html.split('<table class="tradeoff">', 1)[1].split("</table>", 1)[0]


def _secondary(html: str) -> str:
    return html.split('<details class="secondary">', 1)[1].split("</details>", 1)[0]


def test_tradeoff_table_has_only_decision_columns(html: str) -> None:
    header = _tradeoff(html).split("</thead>", 1)[0]
    columns = re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", header)
    assert columns == [
        "model",
        "role",
        "roc_auc (valid)",
        "roc_auc (test)",
        "gates (value vs bound)",
        "p99 ms",
        "cost / 1,000 (EUR)",
    ]
    for other in ("ECE", "Brier", "p50 ms", "wall", "rows/s", "MB", "train s"):
        assert other not in header, other
        assert other in _secondary(html), other
    # the secondary table is folded away; the main one is not in a horizontal scroller
    assert '<details class="secondary">' in html
    assert '<div class="scroll"><table class="tradeoff">' not in html


def test_tradeoff_roles_gates_and_close_badge(html: str) -> None:
    table = _tradeoff(html)
    rows = table.split("<tbody>", 1)[1].split("</tr>")
    baseline = next(r for r in rows if ">majority<" in r)
    assert '<span class="role baseline">baseline</span>' in baseline and "reference, not gated" in baseline
    assert "failed" not in baseline and "rejected" not in baseline
    champion = next(r for r in rows if "gbdt &lt;b&gt;v2&lt;/b&gt;" in r)
    assert '<span class="role champion">champion</span>' in champion
    # ECE 0.048 against 0.05 passes by a small margin: marked, visibly
    assert '<div class="gate pass">✓ <code>max_ece</code> 0.048 ≤ 0.05 <span class="badge close"' in champion
    assert ">close</span>" in champion and "239.8" in champion
    knn = next(r for r in rows if ">knn<" in r)
    assert '<span class="role rejected">rejected</span>' in knn
    assert '<div class="gate fail">✗ <code>p99_latency_ms</code> 48 ≤ 20' in knn
    assert "close" not in next(r for r in rows if ">logreg<" in r)


def test_latency_method_under_the_table(html: str, document: DesignDocument) -> None:
    after = html.split('<table class="tradeoff">', 1)[1].split("</table>", 1)[1]
    assert after.index(document.models.latency_method) < after.index('<details class="secondary">')


def test_cost_unit_wherever_costs_appear(html: str, document: DesignDocument) -> None:
    decision = html.split('<section id="decision"', 1)[1].split("</section>", 1)[0]
    assert '<span class="unit">EUR</span>' in decision
    goals = html.split('<section id="goals"', 1)[1].split("</section>", 1)[0]
    assert "<caption>per prediction, in EUR</caption>" in goals
    assert "EUR</strong> per 1,000 predictions" in goals
    figs = build_figures(document)
    assert figs["fig-cost-curve"].layout.yaxis.title.text == "EUR per 1,000 predictions"
    confusion = figs["fig-confusion"]
    assert "EUR" in confusion.layout.title.text and "EUR" in confusion.data[0].text[0][1]
    assert "cost / 1,000 (EUR)" in _tradeoff(html)


def test_tradeoff_fits_1400px(html: str) -> None:
    # the page is at most 1120 px wide and the decision table wraps inside it
    assert "main { max-width: 1120px;" in html and "table.tradeoff { width: 100%; }" in html


def test_confusion_total_is_the_headers_cost(html: str, document: DesignDocument) -> None:
    # the figure shows the evaluation's matrix of the whole split: its counts sum to the split's
    # rows and its cost per 1,000 is the very figure the decision tile and the goals show
    confusion = document.models.confusion
    assert confusion is not None and sum(map(sum, confusion.counts)) == confusion.n_rows
    fig = build_figures(document)["fig-confusion"]
    heat = fig.data[0]
    assert [list(r) for r in heat.z] == confusion.counts
    labels = [["TN", "FP"], ["FN", "TP"]]
    for r in range(2):
        for c in range(2):
            assert heat.text[r][c].startswith(f"{labels[r][c]}<br>{confusion.counts[r][c]:,}<br>")
    shown = plots.format_number(document.goals.cost_per_1000)
    assert f"({shown} per 1,000)" in fig.layout.title.text
    assert f"{confusion.total_cost:,.0f} EUR" in fig.layout.title.text
    decision = html.split('<section id="decision"', 1)[1].split("</section>", 1)[0]
    assert f'<div class="big">{shown} <span class="unit">EUR</span>' in decision


def test_schema_table_shows_each_columns_range_check(tmp_path: Path) -> None:
    from mlsd.report.document import Data, SchemaColumn, Split

    doc = DesignDocument(
        name="hotel",
        goals=Goals(task="regression"),
        data=Data(
            split=Split(
                by="time", params={"valid_from": "2017-04-01T00:00:00", "test_from": "2017-06-01T00:00:00"}
            ),
            schema=[
                SchemaColumn(
                    column="lead_time", dtype="integer", min=0, max=542, range_check="tolerance 0.5"
                ),
                SchemaColumn(
                    column="arrival_date_num",
                    dtype="number",
                    min=2016.5,
                    max=2017.24,
                    range_check="none (read by the model only through season)",
                ),
            ],
        ),
    )
    html = render_design_document(doc, tmp_path / "hotel.html").read_text()
    assert "<th>range check</th>" in html
    assert "<td>none (read by the model only through season)</td>" in html
    assert "2017-06-01" in html and "valid_size" not in html


def test_the_sample_and_what_it_does_to_estimates(html: str) -> None:
    assert "Sampled <strong>stratified</strong> by <code>carrier</code>" in html
    assert "kept 30,000 of 327,346 rows" in html and "strata shares kept exactly" in html
