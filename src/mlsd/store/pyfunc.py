"""The MLflow pyfunc face of a :class:`PackagedModel`: wrapper class, signature, requirements.

:class:`PackagedPyfunc` is what ``mlflow.pyfunc.load_model`` returns the predictions of: it
loads the joblib-pickled :class:`PackagedModel` stored as the artefact :data:`ARTIFACT_KEY`
and predicts from raw rows. MLflow pickles the wrapper by reference, so the class must stay
importable under its name (``mlsd.store.registry`` re-exports it for models logged before
it moved here).

Before unpickling the joblib, :meth:`PackagedPyfunc.load_context` checks its size and SHA-256
against the ones the build stored in the model's ``model_config`` (and their HMAC when
``MLSD_SIGNING_KEY`` is set). MLflow itself has already unpickled ``python_model.pkl`` by
then; :meth:`mlsd.store.ModelRegistry.load` checks every file of the model before either.

>>> import pandas as pd
>>> from sklearn.linear_model import LogisticRegression
>>> X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
>>> model = PackagedModel(LogisticRegression().fit(X, ["a", "a", "b", "b"]), "multiclass")
>>> outputs = model_signature(model).outputs
>>> outputs.input_names(), [t.name for t in outputs.input_types()]
(['score', 'decision'], ['double', 'string'])
"""

from __future__ import annotations

import io
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import AnyType, ColSpec, Schema

from mlsd.store.integrity import no_record_error, verified_bytes, verify_signature
from mlsd.store.packaged import PackagedModel

__all__ = ["ARTIFACT_KEY", "PackagedPyfunc", "model_signature", "pip_requirements", "signed_file_payload"]

ARTIFACT_KEY = "packaged_model"
# Libraries needed to unpickle and run a packaged pipeline; pinned to what built it.
_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "joblib", "lightgbm")


class PackagedPyfunc(PythonModel):
    """The MLflow pyfunc face of a :class:`PackagedModel` (joblib artefact inside the model)."""

    def load_context(self, context: Any) -> None:
        path = Path(context.artifacts[ARTIFACT_KEY])
        config = dict(context.model_config or {})
        what = "the packaged model of this MLflow model"
        if not config.get("sha256"):
            raise no_record_error(str(path), what=what)
        # the record lives in MLmodel, beside the file: without a key it catches a truncated or
        # swapped file, with the key also a file whose record was rewritten to match
        verify_signature(
            signed_file_payload(str(config.get("sha256", ""))),
            config.get("hmac"),
            what=what,
            field=f"{path.parent.parent / 'MLmodel'}: model_config.hmac",
        )
        # unpickle the very bytes that were hashed: a file swapped after the check is never read
        self.model: PackagedModel = joblib.load(io.BytesIO(verified_bytes(path, config, what=what)))

    # MLflow 3 reads this hint: a DataFrame hint means "no signature from hints" (it is given
    # explicitly at logging time); no hint or any other hint makes MLflow warn at import.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        rows = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.model.predict_frame(rows)


def signed_file_payload(sha256: str) -> dict[str, str]:
    """What the HMAC in a pyfunc's ``model_config`` covers: the joblib's name and SHA-256."""
    return {"file": f"{ARTIFACT_KEY}.joblib", "sha256": sha256}


def pip_requirements() -> list[str]:
    """``dist==version`` for each library a packaged pipeline needs that is installed here."""
    reqs = []
    for dist in _REQUIREMENTS:
        try:
            reqs.append(f"{dist}=={importlib_metadata.version(dist)}")
        except importlib_metadata.PackageNotFoundError:
            continue
    return reqs


def model_signature(model: PackagedModel) -> ModelSignature:
    """Inputs by name (any type); outputs ``score`` (double) and ``decision`` (per task)."""
    # Inputs are declared by name only: MLflow's strict type enforcement rejects int64 rows
    # for a double column and NaN-bearing floats for an int column, both common in raw data;
    # PackagedModel validates columns itself and the pipeline handles types.
    inputs = Schema([ColSpec(AnyType(), name) for name in model.input_columns])
    decision = {"binary": "boolean", "multiclass": _label_type(model.classes), "regression": "double"}[
        model.task
    ]
    outputs = Schema([ColSpec("double", "score"), ColSpec(decision, "decision")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _label_type(classes: list[Any]) -> str:
    if all(isinstance(c, bool) for c in classes):
        return "boolean"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "long"
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
        return "double"
    return "string"
