"""The design document's Explanations section, from what ``explain_champion`` reports."""

from __future__ import annotations

from pathlib import Path

from mlsd.modeling.explain import ExplanationReport
from mlsd.report import DesignDocument, render_design_document
from mlsd.report.plots import importance_figure


def _report(**changes: object) -> ExplanationReport:
    report = ExplanationReport(
        model="gbdt",
        rows=2000,
        columns=["temp", "<b>carrier</b>", "origin"],
        mean_abs_shap={"temp": 0.1, "<b>carrier</b>": 0.4, "origin": 0.02},
        method="LightGBM TreeSHAP (pred_contrib, exact)",
        output="the log-odds of the positive class",
        additivity_error=3e-15,
        base_value=[-1.25],
        permutation={
            "metric": "roc_auc",
            "repeats": 5,
            "score": 0.69,
            "mean": {"temp": 0.02, "<b>carrier</b>": 0.03, "origin": -0.001},
            "std": {"temp": 0.004, "<b>carrier</b>": 0.005, "origin": 0.002},
        },
    )
    for key, value in changes.items():
        setattr(report, key, value)
    return report


def _html(document: DesignDocument, report: ExplanationReport, tmp_path: Path) -> str:
    doc = document.model_copy(deep=True)
    doc.models.explanations = report.to_dict()
    return render_design_document(doc, tmp_path / "design.html").read_text(encoding="utf-8")


def test_the_section_shows_the_figure_and_the_table_largest_first(document, tmp_path) -> None:
    html = _html(document, _report(), tmp_path)
    assert 'id="explanations"' in html and 'id="fig-importance"' in html
    table = html[html.index('<table class="importance">') :]
    table = table[: table.index("</table>")]
    assert table.index("&lt;b&gt;carrier&lt;/b&gt;") < table.index("temp") < table.index("origin")
    assert "0.0300 ± 0.0050" in table and "-0.0010 ± 0.0020" in table
    assert "within 3.0e-15" in html and "<b>carrier</b>" not in html  # escaped in table and figure


def test_a_champion_without_shap_values_still_shows_its_permutation_importance(document, tmp_path) -> None:
    report = _report(mean_abs_shap=None, base_value=None, additivity_error=None, method="", output="")
    report.shap_skipped = "no SHAP explainer for a OnnxModel"
    html = _html(document, report, tmp_path)
    assert "No SHAP values: no SHAP explainer for a OnnxModel." in html
    fig = importance_figure(report.to_dict())
    assert [t.name for t in fig.data] == ["permutation importance"]
    ranked = [r["column"] for r in report.importance()]
    assert ranked == ["<b>carrier</b>", "temp", "origin"]  # by permutation importance without SHAP


def test_the_ablation_table_and_a_skipped_ablation(document, tmp_path) -> None:
    ablation = {
        "metric": "roc_auc",
        "full": 0.67,
        "train_rows": 20000,
        "groups": [
            {"group": "weather", "columns": ["temp"], "without": 0.61, "drop": 0.06},
            {"group": "all", "columns": ["temp", "origin"], "skipped": "no feature would be left"},
        ],
    }
    html = _html(document, _report(ablation=ablation), tmp_path)
    assert "<h4>Ablation</h4>" in html and "+0.0600" in html and "no feature would be left" in html
    html = _html(document, _report(ablation={"skipped": "gbdt_onnx is not a candidate"}), tmp_path)
    assert "Ablation skipped: gbdt_onnx is not a candidate." in html


def test_no_section_without_explanations(document, tmp_path) -> None:
    html = render_design_document(document, tmp_path / "design.html").read_text(encoding="utf-8")
    assert 'id="explanations"' not in html and 'id="fig-importance"' not in html
