"""Serving: one registered model behind HTTP, every answered prediction in the durable log.

:func:`create_app` builds the FastAPI app from :class:`ServeSettings` (the loaded
:class:`~mlsd.store.PackagedModel`, its registry name and version, a
:class:`~mlsd.store.prediction_log.PredictionLog` and limits). Routes: ``POST /v1/predict``
(one row or a batch, validated against the build schema, micro-batched), ``POST /v1/feedback``,
``GET /healthz``, ``/readyz``, ``/metrics`` (Prometheus), ``/v1/model`` and ``/docs``.
:mod:`mlsd.serving.security` checks Host, Origin, content type and tokens;
:mod:`mlsd.serving.server` runs uvicorn with bounded connections on a socket bound first
(docs/serving-security.md). Only the CLI imports this package.

>>> from mlsd.serving import create_app, ServeSettings
>>> callable(create_app), ServeSettings.__name__
(True, 'ServeSettings')
"""

from __future__ import annotations

from mlsd.serving.app import create_app
from mlsd.serving.batching import BatchSlice, MicroBatcher
from mlsd.serving.bodies import parse_json, parse_predict_body
from mlsd.serving.ids import new_request_ids
from mlsd.serving.metrics import ServingMetrics
from mlsd.serving.models import build_row_model, example_row
from mlsd.serving.responses import RequestError, error_body
from mlsd.serving.settings import ServeSettings, settings_for
from mlsd.serving.validation import RowValidator

__all__ = [
    "BatchSlice",
    "MicroBatcher",
    "RequestError",
    "RowValidator",
    "ServeSettings",
    "ServingMetrics",
    "build_row_model",
    "create_app",
    "error_body",
    "example_row",
    "new_request_ids",
    "parse_json",
    "parse_predict_body",
    "settings_for",
]
