"""Segment 4, models: baselines, candidates, calibration, evaluation and the decision rule.

Baselines (``majority``, ``stratified``, ``mean``, a rule over raw columns) and candidate types
(logistic regression, LightGBM, random forest, ...) resolve through registries by name. Each
fitted model is evaluated on the same splits (metrics with bootstrap intervals, calibration,
latency, throughput, size) into a :class:`TradeOffTable`, and :func:`select_model` picks the
winner under the design's constraints, with a sentence saying why.
"""

from __future__ import annotations

from mlsd.modeling.assessment import Assessment, assess
from mlsd.modeling.baselines import RuleBaseline, RuleRegressor, baseline_name, list_baselines, make_baseline
from mlsd.modeling.calibration import CALIBRATION_METHODS, calibrate
from mlsd.modeling.candidates import (
    CandidateType,
    list_candidate_types,
    make_candidate,
    predict_on_one_thread,
)
from mlsd.modeling.evaluation import (
    CandidateEvaluation,
    LatencyMeasurement,
    TradeOffTable,
    evaluate_model,
    measure_latency,
    model_scores,
)
from mlsd.modeling.selection import CLOSE_MARGIN, Decision, Gate, select_model
from mlsd.modeling.training import ModelingResult, costs_of, train_and_evaluate

__all__ = [
    "CALIBRATION_METHODS",
    "CLOSE_MARGIN",
    "Assessment",
    "CandidateEvaluation",
    "CandidateType",
    "Decision",
    "Gate",
    "LatencyMeasurement",
    "ModelingResult",
    "RuleBaseline",
    "RuleRegressor",
    "TradeOffTable",
    "assess",
    "baseline_name",
    "calibrate",
    "costs_of",
    "evaluate_model",
    "list_baselines",
    "list_candidate_types",
    "make_baseline",
    "make_candidate",
    "measure_latency",
    "model_scores",
    "predict_on_one_thread",
    "select_model",
    "train_and_evaluate",
]
