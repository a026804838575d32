"""Update policies replayed on one stream: when each re-trains, on what, and how it is judged."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mlsd.errors import DesignError
from mlsd.modeling.update_policies import compare_update_policies, parse_policy

START = pd.Timestamp("2024-03-04", tz="UTC")
WEEKS = [(START + pd.Timedelta(weeks=i), START + pd.Timedelta(weeks=i + 1)) for i in range(6)]


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    t = pd.date_range(
        pd.Timestamp("2024-01-01", tz="UTC"), START + pd.Timedelta(weeks=6), freq="6h", inclusive="left"
    )
    x = rng.normal(size=len(t))
    slope = np.where(t < START + pd.Timedelta(weeks=2), 1.0, -1.0)  # the world changes in week 2
    return pd.DataFrame({"when": t, "x": x, "y": (slope * x + rng.normal(0, 0.5, len(t)) > 0).astype(int)})


def _run(rows: pd.DataFrame, policies: list[str], **kwargs):
    fitted: list[int] = []

    def fit(frame: pd.DataFrame) -> LogisticRegression:
        fitted.append(len(frame))
        return LogisticRegression().fit(frame[["x"]], frame["y"])

    out = compare_update_policies(
        rows[rows.when < START], rows[rows.when >= START], windows=WEEKS, time_column="when", target="y",
        fit=fit, score=lambda m, f: m.predict_proba(f[["x"]])[:, 1], metric="roc_auc", task="binary",
        policies=policies, n_resamples=100, **kwargs,
    )  # fmt: skip
    return {p.policy: p for p in out}, fitted


def test_each_policy_trains_on_its_schedule_on_the_rows_labelled_by_then(rows) -> None:
    out, fitted = _run(rows, ["never", "every_2w", "every_1w"], label_delay=dt.timedelta(days=1))
    assert [out[p].trainings for p in ("never", "every_2w", "every_1w")] == [0, 2, 5]
    assert out["every_2w"].trained_at == [WEEKS[2][0].isoformat(), WEEKS[4][0].isoformat()]
    # fit 0 is the initial model on the history; a re-training at a window's start sees the history
    # plus every stream row whose outcome (one day after its event time) had arrived
    history = int((rows.when < START).sum())
    for start, n in zip(out["every_2w"].trained_at, fitted[1:3], strict=True):
        known = ((rows.when >= START) & (rows.when + pd.Timedelta(days=1) <= pd.Timestamp(start))).sum()
        assert n == history + known


def test_metrics_and_the_gain_over_never_are_those_of_the_reference_functions(rows) -> None:
    out, _ = _run(rows, ["never", "every_1w"])
    stream = rows[rows.when >= START]
    never = LogisticRegression().fit(rows[rows.when < START][["x"]], rows[rows.when < START]["y"])
    frozen = never.predict_proba(stream[["x"]])[:, 1]
    assert out["never"].metric == pytest.approx(roc_auc_score(stream["y"], frozen), abs=1e-12)
    first = stream[stream.when < WEEKS[0][1]]
    assert out["never"].windows[0]["metric"] == pytest.approx(
        roc_auc_score(first["y"], never.predict_proba(first[["x"]])[:, 1]), abs=1e-12
    )
    gain = out["every_1w"].gain_vs_never
    assert gain["champion"] == pytest.approx(out["never"].metric, abs=1e-12)
    assert gain["challenger"] == pytest.approx(out["every_1w"].metric, abs=1e-12)
    # the world reversed: weekly re-training recovers, the frozen model is worse than chance
    assert gain["low"] > 0 and out["never"].metric < 0.5


def test_on_drift_retrains_the_window_after_drift_is_measured(rows) -> None:
    seen: list[int] = []

    def drift(train: pd.DataFrame, window: pd.DataFrame) -> float:
        seen.append(len(window))
        return 0.9 if window["when"].min() >= WEEKS[2][0] and len(seen) < 4 else 0.0

    out, _ = _run(rows, ["on_drift"], drift_share=drift, drifted_share_above=0.5)
    p = out["on_drift"]
    # drift measured at the end of week 2 triggers a re-training at the start of week 3
    assert [w["retrained"] for w in p.windows] == [False, False, False, True, False, False]
    assert p.windows[2]["drifted_share"] == 0.9


def test_bad_policies_are_refused() -> None:
    with pytest.raises(DesignError) as err:
        parse_policy("every_fortnight")
    assert err.value.field == "--policies" and err.value.received == "every_fortnight"
    with pytest.raises(DesignError):
        compare_update_policies(
            pd.DataFrame(), pd.DataFrame({"when": []}), windows=[], time_column="when", target="y",
            fit=lambda f: None, score=lambda m, f: None, metric="roc_auc", task="binary",
            policies=["on_drift"],
        )  # fmt: skip
