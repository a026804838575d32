"""Segment 2 of a design: data collection and labelling.

Load sources by URI and join them (:mod:`~mlsd.data.sources`), label, filter and derive
columns with a safe expression language (:mod:`~mlsd.data.expressions`), infer and check a
schema (:mod:`~mlsd.data.schema`), split without leakage (:mod:`~mlsd.data.splits`) and check
for leakage (:mod:`~mlsd.data.leakage`, :mod:`~mlsd.data.target_leakage`). Everything works on
plain DataFrames, without a design file.
"""

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
