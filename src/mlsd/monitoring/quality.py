"""Data quality of a window of logged inputs against the build-time schema.

:func:`data_quality` checks every column of a window with :meth:`mlsd.data.Schema.validate_frame`
(one vectorised pass per column) and compares its missing rate with the reference's. Per column
it reports:

``missing_rate_change``  window missing rate minus the reference missing rate (positive = worse);
``n_unseen``             values of a categorical column never seen at build time (+ a few examples);
``n_out_of_range``       numbers outside the build-time ``[min, max]`` (datetime columns are not
                         range-checked: a time column moves forward by design after a time split);
``schema_break``         ``"missing_column"`` (absent from the window) or ``"type"`` (values that
                         cannot be read as the build-time type), else ``None``.

>>> import pandas as pd
>>> from mlsd.data import infer_schema
>>> train = pd.DataFrame({"distance": [100.0, 500.0, 1000.0, None], "carrier": ["UA", "AA", "UA", "AA"]})
>>> schema = infer_schema(train, categorical=["carrier"])
>>> window = pd.DataFrame({"distance": [None, None, 2000.0, 300.0], "carrier": ["ZZ", "UA", "UA", "AA"]})
>>> q = data_quality(window, schema)
>>> q.column("distance").missing_rate_change, q.column("distance").n_out_of_range
(0.25, 1)
>>> q.column("carrier").n_unseen, q.column("carrier").unseen_examples
(1, ['ZZ'])
>>> QualityResult.from_dict(q.to_dict()) == q
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from pandas.api import types as ptypes

from mlsd.data import Schema
from mlsd.monitoring._json import jsonable

__all__ = ["ColumnQuality", "QualityResult", "data_quality"]


@dataclasses.dataclass
class ColumnQuality:
    """Quality of one column in one window."""

    column: str
    dtype: str
    n_rows: int
    missing_rate: float
    reference_missing_rate: float
    missing_rate_change: float
    n_unseen: int = 0
    unseen_rate: float = 0.0
    unseen_examples: list[Any] = dataclasses.field(default_factory=list)
    n_out_of_range: int = 0
    n_type_errors: int = 0
    schema_break: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: jsonable(v) for k, v in dataclasses.asdict(self).items()}
        out["unseen_examples"] = [jsonable(v) for v in self.unseen_examples]
        return out


@dataclasses.dataclass
class QualityResult:
    """Per-column quality rows of one window plus a summary (worst column per check)."""

    n_rows: int
    columns: list[ColumnQuality]

    def column(self, name: str) -> ColumnQuality:
        """The row of column ``name`` (``KeyError`` when it was not checked)."""
        for row in self.columns:
            if row.column == name:
                return row
        raise KeyError(name)

    @property
    def max_missing_rate_increase(self) -> float:
        """The largest missing-rate increase over the reference (0 when none increased)."""
        return max(
            [0.0, *(r.missing_rate_change for r in self.columns if math.isfinite(r.missing_rate_change))]
        )

    @property
    def max_unseen_category_rate(self) -> float:
        """The largest share of rows holding a category unseen at build time, over columns."""
        return max([0.0, *(r.unseen_rate for r in self.columns)])

    @property
    def n_schema_breaks(self) -> int:
        return sum(r.schema_break is not None for r in self.columns)

    @property
    def n_out_of_range(self) -> int:
        return sum(r.n_out_of_range for r in self.columns)

    def summary(self) -> dict[str, Any]:
        return {
            "n_rows": self.n_rows,
            "max_missing_rate_increase": self.max_missing_rate_increase,
            "max_unseen_category_rate": self.max_unseen_category_rate,
            "n_unseen": sum(r.n_unseen for r in self.columns),
            "n_out_of_range": self.n_out_of_range,
            "n_schema_breaks": self.n_schema_breaks,
            "schema_breaks": [f"{r.column}: {r.schema_break}" for r in self.columns if r.schema_break],
        }

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(r) for r in self.columns])

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_rows": self.n_rows,
            "summary": self.summary(),
            "columns": [r.to_dict() for r in self.columns],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QualityResult:
        rows = []
        for r in data["columns"]:
            r = dict(r)
            for key in ("missing_rate", "reference_missing_rate", "missing_rate_change", "unseen_rate"):
                r[key] = float("nan") if r.get(key) is None else float(r[key])
            rows.append(ColumnQuality(**r))
        return cls(n_rows=int(data["n_rows"]), columns=rows)


def data_quality(
    window: pd.DataFrame,
    schema: Schema,
    *,
    columns: Iterable[str] | None = None,
    reference_missing: Mapping[str, float] | None = None,
) -> QualityResult:
    """Quality of ``window`` against ``schema``, column by column.

    ``columns`` defaults to every schema column; ``reference_missing`` (column -> missing rate,
    e.g. from the reference statistics) overrides the schema's build-time missing rates.
    """
    names = list(schema.columns) if columns is None else [c for c in columns if c in schema.columns]
    n = len(window)
    rows: dict[str, ColumnQuality] = {}
    present = [c for c in names if c in window.columns]
    # one vectorised pass for all missing rates; empty strings count as missing like in the schema
    if present and n:
        miss = window[present].isna()
        for c in present:
            s = window[c]
            if schema.columns[c].dtype != "string" and (
                ptypes.is_object_dtype(s) or ptypes.is_string_dtype(s)
            ):
                miss[c] |= s.astype("str").str.strip().eq("")
        missing = miss.mean()
    else:
        missing = pd.Series(0.0, index=present, dtype=float)
    ref_missing = dict(reference_missing or {})
    for name in names:
        col = schema.columns[name]
        ref = float(ref_missing.get(name, col.missing_rate))
        if name not in window.columns:
            rows[name] = ColumnQuality(
                column=name,
                dtype=col.dtype,
                n_rows=n,
                missing_rate=1.0,
                reference_missing_rate=ref,
                missing_rate_change=1.0 - ref,
                schema_break="missing_column",
            )
            continue
        rate = float(missing[name]) if n else float("nan")
        rows[name] = ColumnQuality(
            column=name,
            dtype=col.dtype,
            n_rows=n,
            missing_rate=rate,
            reference_missing_rate=ref,
            missing_rate_change=rate - ref if n else float("nan"),
        )
    if n and present:
        violations = schema.validate_frame(
            window,
            columns=present,
            allow_unseen_categories=True,
            # missing rates are measured above against the reference; no duplicate 'missing' findings
            max_missing_rate_increase=math.inf,
        )
        for v in violations:
            row = rows[v.column]
            if v.kind == "category":
                row.n_unseen = v.n_rows
                row.unseen_rate = v.n_rows / n
                row.unseen_examples = list(v.received)
            elif v.kind == "range" and row.dtype != "datetime":
                row.n_out_of_range = v.n_rows
            elif v.kind == "type":
                row.n_type_errors = v.n_rows
                row.schema_break = "type"
    return QualityResult(n_rows=n, columns=[rows[c] for c in names])
