"""The design's feature spec as one scikit-learn transformer from raw rows to a float matrix.

:class:`FeaturePipeline` is fitted on the training split only and pickled inside the
registered model, so the server computes exactly what training computed. It keeps the
spec as its parameters and builds a ``ColumnTransformer`` in ``fit``, then copies it into
plain-numpy kernels (:mod:`mlsd.features._compiled`) that ``transform`` uses by default: the
same numbers, well under a millisecond for one row instead of tens.

>>> import pandas as pd
>>> rows = pd.DataFrame({"distance": [100.0, 200.0, None], "carrier": ["UA", "AA", "UA"]})
>>> pipe = build_feature_pipeline(numeric=["distance"], categorical=["carrier"]).fit(rows)
>>> pipe.get_feature_names_out().tolist()  # doctest: +NORMALIZE_WHITESPACE
['numeric__distance', 'missing__missingindicator_distance',
 'categorical__carrier_AA', 'categorical__carrier_UA']
>>> pipe.transform(pd.DataFrame({"distance": [150.0], "carrier": ["ZZ"]})).tolist()
[[0.0, 0.0, 0.0, 0.0]]
>>> input_columns(pipe)
['distance', 'carrier']
>>> row = pd.DataFrame({"distance": [None], "carrier": ["AA"]})
>>> bool((pipe.transform(row) == pipe.transform(row, engine="sklearn")).all())
True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from mlsd.errors import MlsdError, SchemaError
from mlsd.features._columns import float_column
from mlsd.features._compiled import CompiledFeatures, Fallback, compile_features
from mlsd.features._spec import FeatureSpec, validate_spec
from mlsd.features.text import make_text_encoder
from mlsd.features.transformers import (
    PERIODIC_TIME_PARTS,
    CyclicalEncoder,
    DateTimeParts,
    FeatureCross,
    HashingEncoder,
    as_category_strings,
)

__all__ = ["ENGINES", "FeaturePipeline", "build_feature_pipeline", "describe_features", "input_columns"]

ENGINES = ("auto", "compiled", "sklearn")
"""``transform`` engines: compiled kernels when they apply (auto), only them, or the ColumnTransformer."""

_CHECK_ROWS = 256  # training rows on which fit proves the compiled kernels equal the reference


class FeaturePipeline(TransformerMixin, BaseEstimator):
    """Raw rows (a DataFrame) -> dense float64 feature matrix, as the design's features say.

    Parameters mirror :func:`build_feature_pipeline`; prefer that function, which checks
    the spec as soon as it is written. Extra columns in the rows are ignored; a missing
    one raises :class:`~mlsd.errors.SchemaError`. After ``fit``: ``column_transformer_``
    (the fitted ``ColumnTransformer``, the reference), ``compiled_`` (its plain-numpy copy,
    or None if a step is of a kind the compiler does not know), ``feature_names_in_`` (the
    raw columns used) and ``n_features_out_``.
    """

    def __init__(
        self,
        *,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        hashed: Mapping[str, int] | None = None,
        cyclical: Mapping[str, float] | None = None,
        text: Mapping[str, Any] | None = None,
        time_column: str | None = None,
        time_parts: Sequence[str] = (),
        crosses: Sequence[Sequence[str]] = (),
        rare_min_frequency: float | int = 0.01,
        numeric_imputation: str = "median",
        scale: bool = True,
        add_missing_indicator: bool = True,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.hashed = hashed
        self.cyclical = cyclical
        self.text = text
        self.time_column = time_column
        self.time_parts = time_parts
        self.crosses = crosses
        self.rare_min_frequency = rare_min_frequency
        self.numeric_imputation = numeric_imputation
        self.scale = scale
        self.add_missing_indicator = add_missing_indicator

    def spec(self) -> FeatureSpec:
        """The validated, normalised spec (raises DesignError on a bad one)."""
        return validate_spec(self.get_params())

    def _check_rows(self, X: Any, columns: Sequence[str] | np.ndarray) -> None:
        if not isinstance(X, pd.DataFrame):
            raise SchemaError(
                "features need named raw columns",
                field="X",
                received=type(X).__name__,
                expected=f"a pandas DataFrame with columns {tuple(columns)}",
            )
        missing = [c for c in columns if c not in X.columns]
        if missing:
            raise SchemaError(
                "rows lack columns the features need",
                field=missing[0],
                received=sorted(map(str, X.columns)),
                expected=f"columns {tuple(columns)}",
            )

    def _rows(self, X: Any, spec: FeatureSpec) -> pd.DataFrame:
        self._check_rows(X, spec.columns)
        rows = X.loc[:, spec.columns].copy()
        # Number columns become float64 up front (the compiled kernels read them the same way).
        for column in (*spec.numeric, *spec.cyclical):
            rows[column] = float_column(rows[column], column)
        return rows

    def fit(self, X: pd.DataFrame, y: Any = None) -> FeaturePipeline:
        spec = self.spec()
        rows = self._rows(X, spec)
        self.column_transformer_ = _column_transformer(spec).fit(rows)
        self.feature_names_in_ = np.asarray(spec.columns, dtype=object)
        self.n_features_in_ = len(spec.columns)
        self.n_features_out_ = len(self.column_transformer_.get_feature_names_out())
        self.compiled_ = self._compile(spec, X)
        return self

    def _compile(self, spec: FeatureSpec, X: pd.DataFrame) -> CompiledFeatures | None:
        compiled = compile_features(self.column_transformer_, (*spec.numeric, *spec.cyclical))
        if compiled is None:
            return None
        # Prove the copy on a spread of training rows; a mismatch is a bug, never a wrong answer.
        sample = X.iloc[np.unique(np.linspace(0, len(X) - 1, min(len(X), _CHECK_ROWS)).astype(int))]
        reference = self._sklearn_transform(sample, spec)
        try:
            same = np.allclose(compiled.transform(sample), reference, rtol=0.0, atol=1e-12)
        except Fallback:
            same = True  # the sample holds inputs the kernels hand back (e.g. infinity); still sound
        if not same:
            warnings.warn(
                "the compiled features differ from the ColumnTransformer; transform uses the latter",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        return compiled

    def _sklearn_transform(self, X: Any, spec: FeatureSpec) -> np.ndarray:
        out = self.column_transformer_.transform(self._rows(X, spec))
        return np.asarray(out, dtype=np.float64)

    def transform(self, X: pd.DataFrame, *, engine: str = "auto") -> np.ndarray:
        """The feature matrix of raw rows ``X`` (a DataFrame holding every input column).

        ``engine`` is one of :data:`ENGINES`: ``"auto"`` uses the compiled kernels and falls
        back to the ``ColumnTransformer`` for what they cannot reproduce; ``"compiled"``
        raises instead of falling back; ``"sklearn"`` always uses the ``ColumnTransformer``.
        Both give the same numbers; the compiled kernels also accept zero rows.
        """
        check_is_fitted(self, "column_transformer_")
        if engine not in ENGINES:
            raise MlsdError("unknown engine", field="engine", received=engine, expected=f"one of {ENGINES}")
        compiled = getattr(self, "compiled_", None)
        if engine != "sklearn" and compiled is not None:
            self._check_rows(X, self.feature_names_in_)
            try:
                return compiled.transform(X)
            except Fallback as reason:
                if engine == "compiled":
                    raise MlsdError(
                        "the compiled features cannot reproduce these rows",
                        field="engine",
                        received=str(reason),
                        expected="engine='auto' or 'sklearn'",
                    ) from None
        elif engine == "compiled":
            raise MlsdError(
                "this pipeline has no compiled features",
                field="engine",
                received=engine,
                expected="engine='auto' or 'sklearn'",
            )
        return self._sklearn_transform(X, self.spec())

    def transform_columns(self, arrays: Mapping[str, Any], index: pd.Index) -> np.ndarray | None:
        """The feature matrix of rows given as one array per column (``index`` their rows), by the
        compiled kernels; None when they do not apply (no kernels, a column absent, an input they
        hand back): the caller then uses :meth:`transform` on a frame, which decides (and raises
        the same errors as always)."""
        compiled = getattr(self, "compiled_", None)
        if compiled is None or not all(c in arrays for c in compiled.columns):
            return None
        try:
            return compiled.transform_columns(arrays, len(index))
        except (Fallback, MlsdError):  # the frame path reproduces the error, or falls back
            return None

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "column_transformer_")
        return self.column_transformer_.get_feature_names_out()


def build_feature_pipeline(
    *,
    numeric: Sequence[str] = (),
    categorical: Sequence[str] = (),
    hashed: Mapping[str, int] | None = None,
    cyclical: Mapping[str, float] | None = None,
    text: Mapping[str, Any] | None = None,
    time_column: str | None = None,
    time_parts: Sequence[str] = (),
    crosses: Sequence[Sequence[str]] = (),
    rare_min_frequency: float | int = 0.01,
    numeric_imputation: str = "median",
    scale: bool = True,
    add_missing_indicator: bool = True,
) -> FeaturePipeline:
    """Check a feature spec and return the unfitted :class:`FeaturePipeline` for it.

    - ``numeric``: imputation (``numeric_imputation``), a missing indicator per column that
      had gaps in training, standard scaling;
    - ``categorical``: ``'missing'`` for gaps, one-hot; categories rarer than
      ``rare_min_frequency`` (a share, or a count if an int) and unseen ones share one bucket;
    - ``hashed``: ``{column: n_features}`` through :class:`HashingEncoder`;
    - ``cyclical``: ``{column: period}``, median imputation then sin/cos;
    - ``text``: ``{column: encoder}`` or ``{column: {encoder: tfidf, max_features: 5000}}``
      through :mod:`mlsd.features.text` (``tfidf``, ``minilm``);
    - ``time_column`` with ``time_parts``: periodic parts as sin/cos, the others as numbers;
    - ``crosses``: each group of columns crossed pairwise, then one-hot as for categoricals.

    Raises :class:`~mlsd.errors.DesignError` naming the field, e.g. ``features.cyclical.month``.

    >>> build_feature_pipeline(cyclical={"month": 0})
    Traceback (most recent call last):
    mlsd.errors.DesignError: features.cyclical.month: period must be a positive number (received 0; ...)
    """
    params: dict[str, Any] = {
        "numeric": numeric,
        "categorical": categorical,
        "hashed": hashed,
        "cyclical": cyclical,
        "text": text,
        "time_column": time_column,
        "time_parts": time_parts,
        "crosses": crosses,
        "rare_min_frequency": rare_min_frequency,
        "numeric_imputation": numeric_imputation,
        "scale": scale,
        "add_missing_indicator": add_missing_indicator,
    }
    validate_spec(params)
    return FeaturePipeline(**params)


def _one_hot(spec: FeatureSpec) -> OneHotEncoder:
    return OneHotEncoder(
        min_frequency=spec.rare_min_frequency,
        handle_unknown="infrequent_if_exist",
        sparse_output=False,
        dtype=np.float64,
    )


def _categories() -> FunctionTransformer:
    return FunctionTransformer(as_category_strings, feature_names_out="one-to-one")


def _scaler(spec: FeatureSpec) -> Any:
    return StandardScaler() if spec.scale else "passthrough"


def _time_steps(spec: FeatureSpec) -> Pipeline:
    parts = list(spec.time_parts)
    periodic = [i for i, p in enumerate(parts) if p in PERIODIC_TIME_PARTS]
    plain = [i for i, p in enumerate(parts) if p not in PERIODIC_TIME_PARTS]
    split = []
    if periodic:
        periods = [PERIODIC_TIME_PARTS[parts[i]] for i in periodic]
        split.append(("cyclical", CyclicalEncoder(period=periods), periodic))
    if plain:
        split.append(("number", _scaler(spec), plain))
    return Pipeline(
        [
            ("parts", DateTimeParts(parts=tuple(parts))),
            # keep_empty_features keeps the width fixed even if a part was never parsed in training.
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("encode", ColumnTransformer(split, verbose_feature_names_out=False)),
        ]
    )


def _column_transformer(spec: FeatureSpec) -> ColumnTransformer:
    steps: list[tuple[str, Any, list[str]]] = []
    if spec.numeric:
        numeric = [
            ("impute", SimpleImputer(strategy=spec.numeric_imputation, keep_empty_features=True)),
            ("scale", _scaler(spec)),
        ]
        steps.append(("numeric", Pipeline(numeric), list(spec.numeric)))
        if spec.add_missing_indicator:
            # error_on_new=False: a column complete in training may have gaps when serving.
            indicator = MissingIndicator(features="missing-only", error_on_new=False)
            steps.append(("missing", indicator, list(spec.numeric)))
    if spec.categorical:
        categorical = Pipeline([("impute", _categories()), ("onehot", _one_hot(spec))])
        steps.append(("categorical", categorical, list(spec.categorical)))
    for column, n_features in spec.hashed.items():
        steps.append((f"hashed_{column}", HashingEncoder(n_features=n_features), [column]))
    if spec.cyclical:
        cyclical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("encode", CyclicalEncoder(period=list(spec.cyclical.values()))),
            ]
        )
        steps.append(("cyclical", cyclical, list(spec.cyclical)))
    for column, encoder in spec.text.items():
        steps.append((f"text_{column}", make_text_encoder(encoder), [column]))
    if spec.time_column is not None:
        steps.append(("time", _time_steps(spec), [spec.time_column]))
    for cross in spec.crosses:
        crossed = Pipeline([("cross", FeatureCross()), ("onehot", _one_hot(spec))])
        steps.append((f"cross_{'_x_'.join(cross)}", crossed, list(cross)))
    return ColumnTransformer(steps, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=True)


def input_columns(pipeline_or_spec: FeaturePipeline | Mapping[str, Any]) -> list[str]:
    """The raw columns a pipeline (or a spec mapping) needs, in a stable order, each once.

    >>> input_columns({"numeric": ["distance"], "crosses": [["origin", "carrier"]], "time_column": "t"})
    ['distance', 't', 'origin', 'carrier']
    """
    if isinstance(pipeline_or_spec, FeaturePipeline):
        return list(pipeline_or_spec.spec().columns)
    return list(validate_spec(pipeline_or_spec).columns)


def _one_hot_width(encoder: OneHotEncoder, index: int) -> int:
    infrequent = getattr(encoder, "infrequent_categories_", [None] * len(encoder.categories_))[index]
    if infrequent is None:
        return len(encoder.categories_[index])
    return len(encoder.categories_[index]) - len(infrequent) + 1


def _rare_text(spec: FeatureSpec) -> str:
    rare = spec.rare_min_frequency
    if rare is None:
        return "unseen -> all zeros"
    share = f"{rare:.0%}" if isinstance(rare, float) else f"{rare} rows"
    return f"categories under {share} and unseen ones -> one infrequent bucket"


def describe_features(pipeline: FeaturePipeline) -> list[dict[str, Any]]:
    """One record per input column (and per cross): column, kind, transform, inputs, n_outputs.

    ``n_outputs`` counts the matrix columns a record adds, or is None before ``fit``.

    >>> describe_features(build_feature_pipeline(cyclical={"hour": 24}))  # doctest: +NORMALIZE_WHITESPACE
    [{'column': 'hour', 'kind': 'cyclical', 'transform': 'median imputation + sin/cos of 2π·x/24',
      'inputs': ['hour'], 'n_outputs': None}]
    """
    spec = pipeline.spec()
    fitted = getattr(pipeline, "column_transformer_", None)
    steps = fitted.named_transformers_ if fitted is not None else {}
    records: list[dict[str, Any]] = []

    def add(column: str, kind: str, transform: str, inputs: Sequence[str], n_outputs: int | None) -> None:
        record = {"column": column, "kind": kind, "transform": transform, "inputs": list(inputs)}
        records.append({**record, "n_outputs": n_outputs if fitted is not None else None})

    scaling = " + standard scaling" if spec.scale else ""
    flagged = set()
    if "missing" in steps:
        flagged = {spec.numeric[i] for i in steps["missing"].features_}
    for column in spec.numeric:
        flag = " + missing indicator" if column in flagged else ""
        add(
            column,
            "numeric",
            f"{spec.numeric_imputation} imputation{scaling}{flag}",
            [column],
            1 + bool(flag),
        )
    for i, column in enumerate(spec.categorical):
        width = _one_hot_width(steps["categorical"]["onehot"], i) if steps else None
        add(column, "categorical", f"'missing' imputation + one-hot ({_rare_text(spec)})", [column], width)
    for column, n_features in spec.hashed.items():
        add(column, "hashed", f"feature hashing into {n_features} columns", [column], n_features)
    for column, period in spec.cyclical.items():
        add(column, "cyclical", f"median imputation + sin/cos of 2π·x/{period:g}", [column], 2)
    for column, encoder in spec.text.items():
        options = ", ".join(f"{k}={v}" for k, v in encoder.items() if k != "encoder")
        transform = f"text encoder {encoder['encoder']}" + (f" ({options})" if options else "")
        width = len(steps[f"text_{column}"].get_feature_names_out()) if steps else None
        add(column, "text", transform, [column], width)
    if spec.time_column is not None:
        periodic = [f"{p} {PERIODIC_TIME_PARTS[p]:g}" for p in spec.time_parts if p in PERIODIC_TIME_PARTS]
        plain = [p for p in spec.time_parts if p not in PERIODIC_TIME_PARTS]
        text = f"parts {', '.join(spec.time_parts)} (UTC), median imputation"
        text += f"; sin/cos for {', '.join(periodic)}" if periodic else ""
        text += f"; {', '.join(plain)} as numbers{scaling}" if plain else ""
        width = len(steps["time"].get_feature_names_out()) if steps else None
        add(spec.time_column, "time_parts", text, [spec.time_column], width)
    for cross in spec.crosses:
        name = "_x_".join(cross)
        width = len(steps[f"cross_{name}"].get_feature_names_out()) if steps else None
        text = f"pairwise cross of {', '.join(cross)} + one-hot ({_rare_text(spec)})"
        add(name, "cross", text, cross, width)
    return records
