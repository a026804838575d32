"""Pydantic models of the API, the row model derived from the build schema: what ``/docs`` shows.

The row model documents the fields a request carries (type from the schema's dtype,
``Optional`` when the column had missing values at build time, ``Literal`` for small
category sets, the build range in the description, an example). The server validates
requests itself (:mod:`mlsd.serving.validation`) so that errors use the project's schema
and wording; these models are the documentation and a convenience for clients.

>>> import pandas as pd
>>> from mlsd.data import infer_schema
>>> schema = infer_schema(pd.DataFrame({"distance": [100, 1000], "carrier": ["AA", "UA"]}),
...                       categorical=["carrier"])
>>> Row = build_row_model(schema, ["distance", "carrier"])
>>> Row.model_validate({"distance": 500, "carrier": "UA"}).carrier
'UA'
>>> sorted(Row.model_json_schema()["properties"]["carrier"]["enum"])
['AA', 'UA']
>>> example_row(schema, ["distance", "carrier"])
{'distance': 550, 'carrier': 'AA'}
"""

from __future__ import annotations

import keyword
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from mlsd.data import ColumnSchema, Schema

__all__ = [
    "FeedbackItem",
    "FeedbackResponse",
    "ModelRef",
    "PredictResponse",
    "Prediction",
    "build_row_model",
    "example_row",
]

_PY_TYPES: dict[str, Any] = {
    "number": float,
    "integer": int,
    "string": str,
    "boolean": bool,
    "datetime": datetime,
}
MAX_ENUM = 50


class ModelRef(BaseModel):
    name: str
    version: int


class Prediction(BaseModel):
    request_id: str = Field(description="unique per row, time-ordered; send it back with feedback")
    score: float = Field(description="positive-class probability (binary), top-class probability or value")
    decision: Any = Field(description="score >= threshold (binary), the label (multiclass) or the value")
    signature: str | None = Field(
        None, description="HMAC of request_id, to echo with its feedback (only with feedback_auth: signed_id)"
    )


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[Prediction]
    threshold: float | None = Field(description="the cost-optimal decision threshold (binary models)")


class FeedbackItem(BaseModel):
    request_id: str
    outcome: Any = Field(description="the observed label: one of the model's classes, or a number")
    correct: bool = Field(
        False, description="true replaces a different stored outcome (kept in the audit table); else 409"
    )
    signature: str | None = Field(
        None, description="the prediction answer's signature of this request_id (feedback_auth: signed_id)"
    )


class FeedbackResponse(BaseModel):
    request_id: str
    status: Literal["created", "unchanged", "corrected"]


def _example(spec: ColumnSchema | None) -> Any:
    if spec is None:
        return None
    if spec.allowed:
        return spec.allowed[0]
    if spec.dtype == "datetime":
        return str(spec.max or spec.min or "2024-01-01T00:00:00Z")
    if spec.dtype == "boolean":
        return False
    if spec.dtype in ("number", "integer") and spec.min is not None and spec.max is not None:
        middle = (float(spec.min) + float(spec.max)) / 2
        return round(middle) if spec.dtype == "integer" else round(middle, 3)
    return 0 if spec.dtype in ("number", "integer") else "text"


def example_row(schema: Schema, columns: list[str]) -> dict[str, Any]:
    """A valid row: the first category, the middle of the build range, the latest date seen."""
    return {c: _example(schema.columns.get(c)) for c in columns}


def _describe(spec: ColumnSchema) -> str:
    parts: list[str] = [spec.dtype]
    if spec.min is not None and spec.max is not None:
        parts.append(f"seen at build time in [{spec.min}, {spec.max}]")
    if spec.allowed is not None and len(spec.allowed) > MAX_ENUM:
        parts.append(f"{len(spec.allowed)} categories, e.g. {', '.join(spec.allowed[:10])}")
    parts.append("nullable" if spec.nullable else "required, never null")
    return "; ".join(parts)


def build_row_model(schema: Schema, columns: list[str], name: str = "InputRow") -> type[BaseModel]:
    """A pydantic model of one request row for ``columns`` (every field required, extras allowed)."""
    fields: dict[str, Any] = {}
    for column in columns:
        spec = schema.columns.get(column)
        key = _py_name(column)
        while key in fields:  # two columns that differ only in punctuation
            key += "_"
        if spec is None:
            fields[key] = (Any, Field(..., alias=column, description="any JSON value"))
            continue
        typ: Any = _PY_TYPES[spec.dtype]
        if spec.allowed is not None and len(spec.allowed) <= MAX_ENUM and spec.dtype == "string":
            typ = Literal[tuple(spec.allowed)]
        if spec.nullable:
            typ = typ | None
        fields[key] = (
            typ,
            Field(..., alias=column, description=_describe(spec), examples=[_example(spec)]),
        )
    config = ConfigDict(extra="allow", populate_by_name=True)
    return create_model(name, __config__=config, **fields)


def _py_name(column: str) -> str:
    """A Python identifier for a column (the JSON name stays the alias)."""
    out = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in column) or "field"
    if out[0].isdigit() or keyword.iskeyword(out) or out.startswith("model_"):
        out = f"f_{out}"
    return out
