"""Segment 2 of a design: data collection and labelling.

Load sources by URI and join them (:mod:`~mlsd.data.sources`), label, filter and derive
columns with a safe expression language (:mod:`~mlsd.data.expressions`), infer and check a
schema (:mod:`~mlsd.data.schema`), split without leakage (:mod:`~mlsd.data.splits`) and check
for leakage (:mod:`~mlsd.data.leakage`, :mod:`~mlsd.data.target_leakage`). Everything works on
plain DataFrames, without a design file.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names for type checkers; at run time each loads on first use (below)
    from mlsd.data.expressions import ParsedExpression, evaluate_expression, parse_expression
    from mlsd.data.leakage import (
        check_duplicates_across_splits,
        check_forbidden_features,
        check_time_order,
        run_leakage_checks,
    )
    from mlsd.data.leakage_report import LeakageFinding, LeakageReport
    from mlsd.data.preparation import (
        PreparedData,
        check_expressions,
        check_leakage,
        feature_fields,
        input_columns,
        label_timeline,
        leakage_checks,
        prepare_data,
        source_columns,
        split_prepared,
    )
    from mlsd.data.problems import check_frame, check_split
    from mlsd.data.schema import ColumnSchema, Schema, SchemaViolation, infer_schema
    from mlsd.data.sources import clear_source_cache, join_sources, load_source
    from mlsd.data.splits import (
        DataSplit,
        train_valid_test_split_by_group,
        train_valid_test_split_by_time,
        train_valid_test_split_random,
        train_valid_test_split_stratified,
    )
    from mlsd.data.target_leakage import find_target_leakage, single_feature_scores

__all__ = [
    "ColumnSchema",
    "DataSplit",
    "LeakageFinding",
    "LeakageReport",
    "ParsedExpression",
    "PreparedData",
    "Schema",
    "SchemaViolation",
    "check_duplicates_across_splits",
    "check_expressions",
    "check_forbidden_features",
    "check_frame",
    "check_leakage",
    "check_split",
    "check_time_order",
    "clear_source_cache",
    "evaluate_expression",
    "feature_fields",
    "find_target_leakage",
    "infer_schema",
    "input_columns",
    "join_sources",
    "label_timeline",
    "leakage_checks",
    "load_source",
    "parse_expression",
    "prepare_data",
    "run_leakage_checks",
    "single_feature_scores",
    "source_columns",
    "split_prepared",
    "train_valid_test_split_by_group",
    "train_valid_test_split_by_time",
    "train_valid_test_split_random",
    "train_valid_test_split_stratified",
]

# name -> defining module, imported on first access: ``mlsd.data.schema`` (what monitoring and
# serving need) must not pull in the splits' and leakage checks' scikit-learn (~0.5 s)
_LAZY = {
    "ColumnSchema": "mlsd.data.schema",
    "DataSplit": "mlsd.data.splits",
    "LeakageFinding": "mlsd.data.leakage_report",
    "LeakageReport": "mlsd.data.leakage_report",
    "ParsedExpression": "mlsd.data.expressions",
    "PreparedData": "mlsd.data.preparation",
    "Schema": "mlsd.data.schema",
    "SchemaViolation": "mlsd.data.schema",
    "check_duplicates_across_splits": "mlsd.data.leakage",
    "check_expressions": "mlsd.data.preparation",
    "check_forbidden_features": "mlsd.data.leakage",
    "check_frame": "mlsd.data.problems",
    "check_leakage": "mlsd.data.preparation",
    "check_split": "mlsd.data.problems",
    "check_time_order": "mlsd.data.leakage",
    "clear_source_cache": "mlsd.data.sources",
    "evaluate_expression": "mlsd.data.expressions",
    "feature_fields": "mlsd.data.preparation",
    "find_target_leakage": "mlsd.data.target_leakage",
    "infer_schema": "mlsd.data.schema",
    "input_columns": "mlsd.data.preparation",
    "join_sources": "mlsd.data.sources",
    "label_timeline": "mlsd.data.preparation",
    "leakage_checks": "mlsd.data.preparation",
    "load_source": "mlsd.data.sources",
    "parse_expression": "mlsd.data.expressions",
    "prepare_data": "mlsd.data.preparation",
    "run_leakage_checks": "mlsd.data.leakage",
    "single_feature_scores": "mlsd.data.target_leakage",
    "source_columns": "mlsd.data.preparation",
    "split_prepared": "mlsd.data.preparation",
    "train_valid_test_split_by_group": "mlsd.data.splits",
    "train_valid_test_split_by_time": "mlsd.data.splits",
    "train_valid_test_split_random": "mlsd.data.splits",
    "train_valid_test_split_stratified": "mlsd.data.splits",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlsd.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found directly next time
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
