"""Segment 3 of a design, run: its feature spec as one unfitted pipeline over raw rows.

The pipeline starts with the design's derived columns, so the registered model takes the
raw columns a request carries and computes exactly what training computed.

>>> from mlsd.design import Design
>>> d = Design.model_validate({"name": "demo", "goals": {"task": "binary", "metric": "roc_auc"},
...     "data": {"source": "x.csv", "label": "y == 1", "split": {"by": "random"},
...              "derive": {"hp_per_cyl": "hp / cyl"}},
...     "features": {"numeric": ["mpg", "hp_per_cyl"]},
...     "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]}})
>>> [name for name, _ in feature_pipeline_for(d).steps]
['derive', 'features']
"""

from __future__ import annotations

from sklearn.pipeline import Pipeline

from mlsd.design import Design
from mlsd.features.derived import DeriveColumns
from mlsd.features.pipeline import build_feature_pipeline

__all__ = ["feature_pipeline_for"]


def feature_pipeline_for(design: Design) -> Pipeline:
    """The design's features as one unfitted pipeline over raw rows (derived columns first)."""
    f = design.features
    features = build_feature_pipeline(
        numeric=f.numeric,
        categorical=f.categorical,
        hashed=f.hashed,
        cyclical=f.cyclical,
        text=f.text,
        time_column=design.data.time if f.time_parts else None,
        time_parts=f.time_parts,
        crosses=f.crosses,
        rare_min_frequency=f.rare_min_frequency,
    )
    return Pipeline([("derive", DeriveColumns(dict(design.data.derive) or None)), ("features", features)])
