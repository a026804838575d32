"""DeriveColumns: the design's derived columns, computed inside the served pipeline."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from mlsd.errors import DesignError
from mlsd.features import DeriveColumns


@parametrize_with_checks([DeriveColumns()])
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)


def test_later_expressions_see_earlier_derived_columns() -> None:
    rows = pd.DataFrame({"sched_dep_time": [515, 1930, 2359]})
    step = DeriveColumns({"hour": "sched_dep_time // 100", "evening": "hour >= 17"}).fit(rows)
    out = step.transform(rows)
    assert out["hour"].tolist() == [5, 19, 23]
    assert out["evening"].tolist() == [False, True, True]
    assert list(step.get_feature_names_out()) == ["sched_dep_time", "hour", "evening"]
    assert "hour" not in rows.columns  # the caller's frame is not modified


def test_survives_pickle_and_names_missing_columns() -> None:
    rows = pd.DataFrame({"a": [1, 2]})
    step = pickle.loads(pickle.dumps(DeriveColumns({"b": "a * 2"}).fit(rows)))
    assert step.transform(rows)["b"].tolist() == [2, 4]
    with pytest.raises(DesignError, match="a"):
        step.transform(pd.DataFrame({"z": [1]}))
