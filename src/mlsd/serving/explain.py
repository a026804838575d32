"""``POST /v1/explain``: the champion's raw score of each row split into one contribution per input.

The body is a predict body (``{"inputs": {...}}`` or a list of rows), read with the same size limit
and validated by the same :class:`~mlsd.serving.validation.RowValidator` (``data.privacy`` treats
the personal fields first, as for a prediction), so a row the predict route refuses is refused
here with the same 422. Each row gets ``base_value``, ``raw_score`` and ``contributions`` (one
number per input column) with ``base_value + sum(contributions) == raw_score``: the log-odds of
the positive class, the predicted class's margin, or the value (docs/explanations.md). Nothing is
written to the prediction log: an explanation is not a decision.

The :class:`~mlsd.modeling.explain.Explainer` is built once, on the first request; a model it
cannot explain (an ONNX graph, a linear model registered without the feature means a build with
``models.explain`` stores) is answered 501 with the reason.

>>> from mlsd.modeling.explain import NotExplainable
>>> not_implemented(NotExplainable("no SHAP explainer for a OnnxModel", field="model")).status_code
501
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mlsd.errors import MlsdError
from mlsd.serving._service import Service, read_body
from mlsd.serving.bodies import parse_json, parse_predict_body
from mlsd.serving.models import ModelRef
from mlsd.serving.responses import RequestError

__all__ = [
    "EXPLAIN_ROUTE",
    "ExplainResponse",
    "ModelExplainer",
    "RowExplanation",
    "explain",
    "not_implemented",
]

EXPLAIN_ROUTE = "/v1/explain"


class RowExplanation(BaseModel):
    output: Any = Field(
        description="what raw_score is the margin of: the positive class, the predicted class, or 'value'"
    )
    base_value: float = Field(description="the model's expected raw score (the same for every row)")
    raw_score: float = Field(description="the model's raw score of this row: base_value + sum(contributions)")
    contributions: dict[str, float] = Field(description="one number per input column, in raw-score units")


class ExplainResponse(BaseModel):
    model: ModelRef = Field(description="name and version of the explained model (the champion)")
    raw_score: str = Field(description="what the raw score is, e.g. the log-odds of the positive class")
    method: str = Field(description="how the contributions were computed")
    notes: list[str] = Field(default_factory=list, description="what the contributions do not include")
    explanations: list[RowExplanation]


def not_implemented(exc: MlsdError) -> RequestError:
    """501: the served model cannot be explained, and why."""
    entry = {"field": exc.field or "model", "received": exc.received, "expected": exc.expected}
    return RequestError(
        501, "not_implemented", f"the served model cannot be explained: {exc.message}", [entry]
    )


class ModelExplainer:
    """The served model's explainer, built on first use (once: shap's tree explainer is not cheap)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._lock = threading.Lock()
        self._explainer: Any = None
        self._problem: MlsdError | None = None

    def get(self) -> Any:
        """The :class:`~mlsd.modeling.explain.Explainer`, or RequestError 501 saying why there is none."""
        with self._lock:
            if self._explainer is None and self._problem is None:
                from mlsd.modeling.explain import Explainer

                try:
                    self._explainer = Explainer(
                        self.model.pipeline,
                        self.model.input_columns,
                        task=self.model.task,
                        metadata=self.model.metadata.get("explain"),
                    )
                except MlsdError as exc:  # NotExplainable, or the explain extra is missing
                    self._problem = exc
        if self._problem is not None:
            raise not_implemented(self._problem)
        return self._explainer


def _rows(contributions: Any, task: str) -> list[dict[str, Any]]:
    """One explanation per row: a multiclass row explains the class with the largest raw score."""
    n = len(contributions.raw)
    pick = contributions.raw.argmax(axis=1) if task == "multiclass" else np.zeros(n, dtype=int)
    at = np.arange(n)
    values = contributions.values[at, :, pick]  # (rows, columns)
    base = contributions.base[pick]
    raw = contributions.raw[at, pick]
    outputs = [contributions.outputs[k] for k in pick.tolist()]
    outputs = [o.item() if isinstance(o, np.generic) else o for o in outputs]
    columns = contributions.columns
    return [
        {
            "output": outputs[i],
            "base_value": float(base[i]),
            "raw_score": float(raw[i]),
            "contributions": dict(zip(columns, values[i].tolist(), strict=True)),
        }
        for i in range(n)
    ]


async def explain(service: Service, explainer: ModelExplainer, request: Request) -> Response:
    """The route's handler: ``service`` is the app's, ``explainer`` explains its model (the champion)."""
    settings = service.settings
    try:
        explained = await asyncio.to_thread(explainer.get)
        payload = parse_json(await read_body(request, settings.max_body_bytes))
        rows, single = parse_predict_body(payload, max_rows=settings.max_rows_per_request)
        treated = settings.privacy.treat_rows(rows) if settings.privacy is not None else rows
        checked = await asyncio.to_thread(service.validator.check, treated)
        if checked.invalid.any():
            errors, total = service.validator.field_errors(
                rows, checked, 0, len(rows), single=single, limit=settings.max_errors
            )
            raise RequestError(
                422,
                "validation_error",
                f"{total} invalid field{'s' * (total != 1)} in {int(checked.invalid.sum())} of "
                f"{len(rows)} rows",
                errors,
                n_errors=total,
            )
        contributions = await asyncio.to_thread(explained.explain, checked.frame)
    except RequestError as exc:
        if exc.status_code == 422:
            for entry in exc.errors:
                service.metrics.validation_errors.labels(kind=entry.get("kind", exc.error_type)).inc()
        return exc.response()
    body = {
        "model": service.model_ref,
        "raw_score": explained.output,
        "method": explained.method,
        "notes": explained.notes,
        "explanations": _rows(contributions, service.model.task),
    }
    return JSONResponse(body)
