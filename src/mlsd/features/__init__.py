"""Segment 3 of a design: features, from raw rows to the matrix a model is trained on.

The design's feature spec becomes one scikit-learn transformer, :class:`FeaturePipeline`,
fitted on the training split only and pickled inside the registered model, so that serving
computes exactly what training computed. The project transformers it is built from
(cyclical encoding, date-time parts, feature hashing, crosses, derived columns) are usable
on their own.

>>> from mlsd.features import build_feature_pipeline, input_columns
>>> input_columns(build_feature_pipeline(categorical=["carrier"], crosses=[["origin", "carrier"]]))
['carrier', 'origin']
"""

from __future__ import annotations

from mlsd.features._spec import FeatureSpec, validate_spec
from mlsd.features.derived import DeriveColumns
from mlsd.features.design_pipeline import feature_pipeline_for
from mlsd.features.pipeline import FeaturePipeline, build_feature_pipeline, describe_features, input_columns
from mlsd.features.transformers import (
    MISSING_TOKEN,
    PERIODIC_TIME_PARTS,
    TIME_PARTS,
    CyclicalEncoder,
    DateTimeParts,
    FeatureCross,
    HashingEncoder,
    as_category_strings,
)

__all__ = [
    "MISSING_TOKEN",
    "PERIODIC_TIME_PARTS",
    "TIME_PARTS",
    "CyclicalEncoder",
    "DateTimeParts",
    "DeriveColumns",
    "FeatureCross",
    "FeaturePipeline",
    "FeatureSpec",
    "HashingEncoder",
    "as_category_strings",
    "build_feature_pipeline",
    "describe_features",
    "feature_pipeline_for",
    "input_columns",
    "validate_spec",
]
