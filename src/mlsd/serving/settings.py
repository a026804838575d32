"""What one server needs: the loaded model, its registry name and version, the log, and limits.

>>> import pandas as pd
>>> from sklearn.linear_model import LogisticRegression
>>> from mlsd.store import PackagedModel
>>> X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
>>> model = PackagedModel(pipeline=LogisticRegression().fit(X, [0, 0, 1, 1]), task="binary")
>>> ServeSettings(model=model, model_name="demo", model_version=1, log=None, max_batch_size=0)
Traceback (most recent call last):
...
mlsd.errors.ServingError: max_batch_size: must be at least 1 (received 0; expected an integer >= 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlsd.errors import ServingError

if TYPE_CHECKING:
    from mlsd.store.packaged import PackagedModel

__all__ = ["ServeSettings", "settings_for"]


@dataclass
class ServeSettings:
    """Settings of :func:`mlsd.serving.create_app`.

    ``log`` is a :class:`mlsd.store.prediction_log.PredictionLog` (not started: the app starts it
    and closes it, draining it, with its lifespan). ``time_column`` is the design's ``data.time``:
    its value in a row becomes the record's ``event_time``. ``range_tolerance`` widens the build
    range of numbers by that fraction of its width on each side; dates are never range-checked.
    """

    model: PackagedModel
    model_name: str
    model_version: int
    log: Any
    time_column: str | None = None
    variant: str = "champion"
    max_batch_size: int = 64
    max_batch_delay_ms: float = 2.0
    max_body_bytes: int = 0  # 0: derived from the row limit and the schema (validation.body_limit_for)
    max_rows_per_request: int = 10_000
    reject_unseen_categories: bool = False
    range_tolerance: float = 0.5
    max_errors: int = 100
    max_string_length: int | None = None  # None: from the build schema (validation.string_limit)

    def __post_init__(self) -> None:
        for name in (
            "max_batch_size",
            "max_body_bytes",
            "max_rows_per_request",
            "max_errors",
            "max_string_length",
        ):
            value = getattr(self, name)
            if (name, value) in (("max_string_length", None), ("max_body_bytes", 0)):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ServingError(
                    "must be at least 1", field=name, received=value, expected="an integer >= 1"
                )
        for name in ("max_batch_delay_ms", "range_tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ServingError(
                    "must be a number >= 0", field=name, received=value, expected="a number >= 0"
                )
        self._check_body_limit()
        if not self.model_name:
            raise ServingError(
                "the model needs a name",
                field="model_name",
                received=self.model_name,
                expected="the registered model name",
            )

    def _check_body_limit(self) -> None:
        """Derive ``max_body_bytes`` from the row limit, or refuse one that cannot hold it."""
        from mlsd.data import Schema
        from mlsd.serving.validation import MIN_BODY_BYTES, body_limit_for

        schema = Schema.from_dict(self.model.schema) if self.model.schema else Schema(columns={})
        needed = body_limit_for(schema, list(self.model.input_columns), self.max_rows_per_request)
        if self.max_body_bytes == 0:
            self.max_body_bytes = max(MIN_BODY_BYTES, needed)
        elif self.max_body_bytes < needed:
            raise ServingError(
                f"a body of max_rows_per_request={self.max_rows_per_request} rows as large as the "
                f"largest build row needs {needed} bytes",
                field="max_body_bytes",
                received=self.max_body_bytes,
                expected=f"at least {needed}, or no max_body_bytes (derived), or fewer max_rows_per_request",
            )


def settings_for(system: Any, *, log_url: str | None = None) -> ServeSettings:
    """The settings of the design's server: its champion from the registry, its log, its limits.

    ``log_url`` overrides ``deployment.log_url`` (e.g. a scratch log for a load test).

    ``system`` is a :class:`mlsd.system.System`; the model is loaded once, here, so the server
    never touches the registry (nor MLflow's process-wide URI) while it answers.
    """
    model, name, version = system.champion()
    dep = system.design.deployment
    return ServeSettings(
        model=model,
        model_name=name,
        model_version=version,
        log=system.prediction_log(log_url),
        time_column=system.design.data.time,
        max_batch_size=dep.max_batch_size,
        max_batch_delay_ms=dep.max_batch_delay_ms,
        max_body_bytes=dep.max_body_bytes or 0,
        max_rows_per_request=dep.max_rows_per_request,
        reject_unseen_categories=dep.reject_unseen_categories,
        range_tolerance=dep.range_tolerance,
        max_string_length=dep.max_string_length,
    )
