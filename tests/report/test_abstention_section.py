"""The design document's Abstention and Adversarial validation sections, from what the stages compute."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mlsd.goals.costs import CostMatrix
from mlsd.modeling.abstention import abstention_report
from mlsd.modeling.adversarial import adversarial_validation
from mlsd.report import DesignDocument, render_design_document
from mlsd.report.render import build_figures


def _report(review_cost: float | None):
    rng = np.random.default_rng(2)

    def split(n: int):
        y = rng.integers(0, 2, n)
        return y, np.clip(0.35 * y + rng.uniform(0, 0.65, n), 0, 1)

    spec = SimpleNamespace(coverage=0.75, below_confidence=None, review_cost=review_cost)
    return abstention_report(
        spec,
        "binary",
        valid=split(1_500),
        test=split(1_000),
        threshold=0.4,
        classes=[0, 1],
        costs=CostMatrix(1, 4),
    )[1]


@pytest.mark.parametrize("review_cost", [0.5, None])
def test_the_abstention_section_and_its_figure_render(
    document: DesignDocument, tmp_path: Path, review_cost: float | None
) -> None:
    doc = document.model_copy(deep=True)
    doc.models.abstention = _report(review_cost)
    figure = build_figures(doc)["fig-coverage-risk"]
    names = [trace.name for trace in figure.data]
    assert names[0] == "error rate among answered rows"
    assert ("review cost 0.5" in names[1]) if review_cost else names[1] == "cost per 1,000 answered rows"
    html = render_design_document(doc, tmp_path / "design.html").read_text(encoding="utf-8")
    assert 'id="abstention"' in html and 'id="fig-coverage-risk"' in html
    assert ("reviewed at 0.5" in html) == (review_cost is not None)
    assert "no review_cost stated" in html or review_cost is not None


def test_the_adversarial_section_renders(document: DesignDocument, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(0, 1, 800), "<b>z</b>": rng.normal(0, 1, 800)})
    test = pd.DataFrame({"x": rng.normal(1, 1, 800), "<b>z</b>": rng.normal(0, 1, 800)})
    doc = document.model_copy(deep=True)
    doc.data.adversarial = adversarial_validation(train, test, ["x", "<b>z</b>"], fail_above=0.75).to_dict()
    html = render_design_document(doc, tmp_path / "design.html").read_text(encoding="utf-8")
    assert 'id="adversarial"' in html and "<code>x</code>" in html
    assert "&lt;b&gt;z&lt;/b&gt;" in html and "<b>z</b>" not in html  # a column name is escaped
