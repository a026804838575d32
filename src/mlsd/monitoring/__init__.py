"""Segment 5 of a design: monitoring and validation of a served model.

:mod:`~mlsd.monitoring.reference` summarises the training inputs, held-out scores and labels
at build time (:class:`ReferenceStatistics`, saved under ``<workspace>/reference/``);
:mod:`~mlsd.monitoring.drift` compares a window of the prediction log with it, column by
column and vectorised (:func:`detect_drift`: KS, chi2, PSI, Jensen-Shannon, Wasserstein, the
auto rule, Benjamini-Hochberg / Bonferroni, effect sizes); :mod:`~mlsd.monitoring.quality`
checks a window against the build schema, :mod:`~mlsd.monitoring.performance` scores it where
feedback arrived, :mod:`~mlsd.monitoring.slo` measures the service from the request log, and
:func:`run_monitor` cuts the log into windows, runs them all and fires the design's alerts.
:mod:`~mlsd.monitoring.variants` compares the variants of a rollout (:func:`compare_variants`:
per-variant volume, latency, scores and feedback, sample-ratio mismatch, shadow, timeline).
"""

from mlsd.monitoring.drift import (
    CORRECTIONS,
    DEFAULT_THRESHOLDS,
    DRIFT_METHODS,
    DriftResult,
    FeatureDrift,
    choose_method,
    correct_p_values,
    detect_drift,
    list_drift_methods,
)
from mlsd.monitoring.monitor import (
    KNOWN_ALERTS,
    Alert,
    MonitorResult,
    WindowResult,
    assign_windows,
    check_alert_names,
    list_alerts,
    run_monitor,
)
from mlsd.monitoring.performance import PerformanceResult, cohens_h, label_drift_test, labelled_performance
from mlsd.monitoring.quality import ColumnQuality, QualityResult, data_quality
from mlsd.monitoring.reference import (
    SCORE_COLUMN,
    CategoricalStats,
    NumericStats,
    ReferenceStatistics,
    category_keys,
)
from mlsd.monitoring.slo import SLO_KEYS, Objective, SloResult, service_levels
from mlsd.monitoring.variants import (
    ShadowComparison,
    TimelineEvent,
    VariantReport,
    VariantStats,
    compare_variants,
    has_variants,
    sample_ratio_mismatch,
    variants_from_log,
)

__all__ = [
    "CORRECTIONS",
    "DEFAULT_THRESHOLDS",
    "DRIFT_METHODS",
    "KNOWN_ALERTS",
    "SCORE_COLUMN",
    "SLO_KEYS",
    "Alert",
    "CategoricalStats",
    "ColumnQuality",
    "DriftResult",
    "FeatureDrift",
    "MonitorResult",
    "NumericStats",
    "Objective",
    "PerformanceResult",
    "QualityResult",
    "ReferenceStatistics",
    "ShadowComparison",
    "SloResult",
    "TimelineEvent",
    "VariantReport",
    "VariantStats",
    "WindowResult",
    "assign_windows",
    "category_keys",
    "check_alert_names",
    "choose_method",
    "cohens_h",
    "compare_variants",
    "correct_p_values",
    "data_quality",
    "detect_drift",
    "has_variants",
    "label_drift_test",
    "labelled_performance",
    "list_alerts",
    "list_drift_methods",
    "run_monitor",
    "sample_ratio_mismatch",
    "service_levels",
    "variants_from_log",
]
