"""Pydantic models of the API, the row model derived from the build schema: what ``/docs`` shows.

The server validates requests itself (:mod:`mlsd.serving.validation`) so that errors use the
project's schema and wording. What ``/openapi.json`` publishes for a request is built by
:func:`request_schemas` and :func:`feedback_schemas` from the validator's own rules (types,
nullability, ranges, categories when unseen ones are rejected, string lengths, row limits,
extra fields), so a request valid by the schema is accepted and one invalid by it is refused.
The pydantic row model (:func:`build_row_model`) is a convenience for Python clients.

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
from mlsd.serving.validation import DATETIME_PATTERN, MAX_ABS_NUMBER, RowValidator

__all__ = [
    "FeedbackItem",
    "FeedbackResponse",
    "FeedbackResults",
    "ModelRef",
    "PredictResponse",
    "Prediction",
    "build_row_model",
    "example_row",
    "feedback_schemas",
    "request_schemas",
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
    variant: str | None = Field(
        None, description="the registry alias that answered (only under a canary, ab or bandit rollout)"
    )
    model_version: int | None = Field(None, description="its registered version (with variant)")
    abstain: bool | None = Field(
        None,
        description="true when the model declined the row for low confidence: decision is then null and the "
        "row is queued for review (only when the model has models.abstain; docs/abstention.md)",
    )
    reason: str | None = Field(None, description="why the row was declined (abstained rows only)")


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[Prediction]  # no threshold: /v1/model shows it with the admin token only


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


class FeedbackResults(BaseModel):
    """The answer to a list of feedback items: one result per item, in order."""

    results: list[FeedbackResponse]


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
    if spec.range_note.startswith("checked through"):  # not expressible in JSON Schema
        parts.append(spec.range_note)
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


# -- the published request schemas, built from the validator's own rules ----------------------
_NULL = {"type": "null"}


def _field_schema(validator: RowValidator, column: str) -> dict[str, Any]:
    """JSON Schema of one field: exactly the values :meth:`RowValidator.check` accepts."""
    spec = validator.spec(column)
    limit = validator.max_lengths.get(column)
    big = float(MAX_ABS_NUMBER)
    if spec is None:
        return {
            "type": ["string", "number", "boolean", "null"],
            "maxLength": limit,
            "minimum": -big,
            "maximum": big,
            "description": f"any JSON scalar (strings up to {limit} characters, numbers in [-1e18, 1e18])",
        }
    out: dict[str, Any]
    if spec.dtype in ("number", "integer"):
        lo, hi = validator.bounds.get(column, (-big, big))
        out = {"type": spec.dtype, "minimum": max(lo, -big), "maximum": min(hi, big)}
    elif spec.dtype == "boolean":
        out = {"type": "boolean"}
    elif spec.dtype == "datetime":
        out = {"type": "string", "pattern": DATETIME_PATTERN}
    else:
        out = {"type": "string", "maxLength": limit}
    categories = validator.categories.get(column)
    if categories is not None:
        if spec.dtype == "string":
            out["enum"] = categories
        elif spec.dtype in ("number", "integer"):
            out["enum"] = [_number(c) for c in categories]
        elif spec.dtype == "boolean":
            out["enum"] = [c == "True" for c in categories]
        else:  # datetimes: the pattern says the shape; their keys are not what a client sends
            out["examples"] = categories[:10]
    elif spec.allowed:
        out["examples"] = spec.allowed[:10]
    body: dict[str, Any] = out if not spec.nullable else {"anyOf": [out, _NULL]}
    body["description"] = _describe(spec) + (
        f"; at most {limit} characters" if limit is not None and spec.dtype == "string" else ""
    )
    example = _example(spec)
    if example is not None:
        body.setdefault("examples", [example])
    return body


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


def request_schemas(validator: RowValidator, *, max_rows: int, max_body_bytes: int) -> dict[str, Any]:
    """``InputRow`` and ``PredictRequest`` for the OpenAPI components, from ``validator``'s rules.

    A row must hold every input column (the design's ``data.time`` column, when the model does
    not read it, is optional); other fields are allowed and ignored. The body holds ``inputs``
    only: one row, or a list of 1 to ``max_rows`` rows.

    >>> import pandas as pd
    >>> from mlsd.data import infer_schema
    >>> schema = infer_schema(pd.DataFrame({"distance": [100, 1000], "carrier": ["AA", "UA"]}))
    >>> v = RowValidator(schema, ["distance", "carrier"], range_tolerance=0.0)
    >>> s = request_schemas(v, max_rows=10, max_body_bytes=10_000)
    >>> s["InputRow"]["properties"]["distance"]["maximum"], s["InputRow"]["required"]
    (1000.0, ['distance', 'carrier'])
    >>> s["PredictRequest"]["properties"]["inputs"]["anyOf"][1]["maxItems"]
    10
    """
    row = {
        "title": "InputRow",
        "type": "object",
        "required": [c for c in validator.columns if c not in validator.optional],
        "properties": {c: _field_schema(validator, c) for c in validator.columns},
        "additionalProperties": True,
        "description": "one row; fields not listed are ignored",
    }
    ref = {"$ref": "#/components/schemas/InputRow"}
    body = {
        "title": "PredictRequest",
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "description": f"at most {max_body_bytes} bytes (a larger body gets 413)",
        "properties": {
            "inputs": {
                "description": "one row (an object) or a batch (a list of objects)",
                "anyOf": [ref, {"type": "array", "minItems": 1, "maxItems": max_rows, "items": ref}],
            }
        },
    }
    return {"InputRow": row, "PredictRequest": body}


def feedback_schemas(
    task: str, classes: list[Any], *, max_items: int, signed: bool = False
) -> dict[str, Any]:
    """``FeedbackItem`` and ``FeedbackRequest``: what the feedback route accepts.

    An outcome is one of the model's classes, compared as the server compares it (``1`` and
    ``true`` name the same class, a string only a string class), or a number for regression.
    ``correct: true`` replaces a stored outcome; ``signature`` (required when ``signed``, i.e.
    ``feedback_auth: signed_id``) echoes the one the prediction answer carried.

    >>> feedback_schemas("binary", [False, True], max_items=5)["FeedbackItem"]["properties"]["outcome"]
    {'enum': [False, 0, True, 1], 'description': "the observed label: one of the model's classes"}
    """
    if task == "regression":
        big = float(MAX_ABS_NUMBER)
        outcome: dict[str, Any] = {
            "type": "number",
            "minimum": -big,
            "maximum": big,
            "description": "the observed value",
        }
    else:
        values: list[Any] = []
        for c in (c.item() if hasattr(c, "item") else c for c in classes):
            values.append(c)
            if isinstance(c, bool):
                values.append(int(c))
            elif isinstance(c, int) and c in (0, 1):
                values.append(bool(c))
        unique = list({(type(v), v): v for v in values}.values())
        outcome = {"enum": unique, "description": "the observed label: one of the model's classes"}
    item = {
        "title": "FeedbackItem",
        "type": "object",
        "required": ["request_id", "outcome", *(["signature"] if signed else [])],
        "properties": {
            "request_id": {"type": "string", "minLength": 1, "description": "from the prediction"},
            "outcome": outcome,
            "correct": {"type": "boolean", "description": "true: replace a stored outcome (audited)"},
            "signature": {"type": "string", "description": "the prediction's signature (signed_id)"},
        },
    }
    ref = {"$ref": "#/components/schemas/FeedbackItem"}
    request = {"anyOf": [ref, {"type": "array", "minItems": 1, "maxItems": max_items, "items": ref}]}
    return {"FeedbackItem": item, "FeedbackRequest": request}
