"""When the champion fails, the design's rule baseline answers (variant ``baseline``), on the real
app with a real SQLite log; without one the request is the error it always was."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from mlsd._deployment import DeploymentSpec
from mlsd.design import Design
from mlsd.modeling import RuleBaseline
from mlsd.serving import create_app
from mlsd.serving.routing import Routing, Variant
from mlsd.serving.settings import BASELINE_VERSION, rule_baseline, settings_for
from mlsd.store import PackagedModel
from mlsd.store.prediction_log import PredictionLog
from support import routed_flights_app

RULE = "dep_hour >= 17"
DERIVE = {"dep_hour": "sched_dep_time // 100"}


def _design(baseline: Any, derive: dict[str, str] | None = None, **deployment: Any) -> Design:
    """A flights design (never built: only its baselines, derived columns and deployment are read)."""
    return Design.model_validate(
        {
            "name": "flights",
            "goals": {"task": "binary", "metric": "roc_auc"},
            "data": {
                "source": "flights.csv",
                "label": "arr_delay > 15",
                "split": {"by": "stratified"},
                "derive": dict(DERIVE if derive is None else derive),
            },
            "features": {"numeric": ["distance"]},
            "models": {
                "baseline": baseline,
                "candidates": [{"name": "lr", "type": "logistic_regression"}],
            },
            "deployment": deployment,
        }
    )


class _Failing:
    """A fitted pipeline whose scoring raises while ``failures`` lasts (then it answers)."""

    def __init__(self, pipeline: Any, failures: float = np.inf) -> None:
        self.pipeline, self.failures, self.calls = pipeline, failures, 0
        self.classes_ = pipeline.classes_

    def predict_proba(self, rows: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("planted failure")
        return self.pipeline.predict_proba(rows)


class _Fragile:
    """A fitted pipeline that raises on any batch holding a flight of 1234 miles."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline, self.classes_ = pipeline, pipeline.classes_

    def predict_proba(self, rows: Any) -> Any:
        if (rows["distance"] == 1234).any():
            raise ValueError("the model cannot score 1234")
        return self.pipeline.predict_proba(rows)


def _with(model: PackagedModel, pipeline: Any) -> PackagedModel:
    model = copy.copy(model)
    object.__setattr__(model, "pipeline", pipeline)
    return model


@pytest.fixture
def serve(flights, tmp_path: Path):
    counter = iter(range(1000))

    @contextmanager
    def factory(
        spec: DeploymentSpec, champion: Any, design: Design | None, challenger: Any = None
    ) -> Iterator[tuple[TestClient, PredictionLog, Routing]]:
        log = PredictionLog(f"sqlite:///{tmp_path / f'log{next(counter)}.db'}")
        variants = {"champion": Variant("champion", _with(flights.model, champion), 3)}
        for alias in spec.routed_aliases()[1:]:
            model = flights.model if challenger is None else _with(flights.model, challenger)
            variants[alias] = Variant(alias, model, 4)
        baseline, why = (None, None) if design is None else rule_baseline(design, flights.model)
        routing = Routing(
            spec,
            variants,
            log=log,
            model_name="flight-delay",
            task="binary",
            baseline=baseline,
            no_baseline=why,
        )
        app = routed_flights_app(flights, log, routing)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client, log, routing

    return factory


def _logged(log: PredictionLog) -> pd.DataFrame:
    log.close()  # drain the writer before reading
    return log.read_predictions().sort_values("request_id").reset_index(drop=True)


def _reference(flights, rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """What RuleBaseline itself says of these rows (fitted on the flights' own labels)."""
    frame = pd.DataFrame(flights.rows)
    frame["dep_hour"] = frame["sched_dep_time"] // 100
    rule = RuleBaseline(RULE).fit(frame, frame["arr_delay"] > 15)
    asked = pd.DataFrame(rows)
    asked["dep_hour"] = asked["sched_dep_time"] // 100
    asked = asked[frame.columns]
    return rule.predict_proba(asked)[:, 1], rule.predict(asked)


@pytest.mark.parametrize("strategy", ["single", "shadow"])
def test_a_failing_champion_is_answered_by_the_rule_baseline(serve, flights, strategy) -> None:
    rows = flights.rows[:40]
    design = _design({"rule": RULE})
    with serve(DeploymentSpec(strategy=strategy), _Failing(flights.model.pipeline), design) as (
        client,
        log,
        _,
    ):
        one = client.post("/v1/predict", json={"inputs": rows[0]})
        many = client.post("/v1/predict", json={"inputs": rows[1:]})
        metrics = client.get("/metrics").text
    assert one.status_code == 200, one.text
    assert many.status_code == 200, many.text
    answers = one.json()["predictions"] + many.json()["predictions"]
    assert {(a["variant"], a["model_version"]) for a in answers} == {("baseline", BASELINE_VERSION)}
    score, decision = _reference(flights, rows)
    np.testing.assert_array_equal([a["score"] for a in answers], score)
    assert [a["decision"] for a in answers] == decision.tolist()
    assert 0 < decision.sum() < len(rows)  # the rule fires on some rows, not all
    frame = _logged(log)
    assert len(frame) == len(rows)
    assert (frame["variant"] == "baseline").all() and (frame["assigned_variant"] == "champion").all()
    assert (frame["model_version"] == BASELINE_VERSION).all()
    assert frame["fallback"].str.startswith("failed: champion raised RuntimeError: planted failure").all()
    assert f'mlsd_fallbacks_total{{reason="failed",variant="champion"}} {float(len(rows))}' in metrics
    assert 'mlsd_variant_predictions_total{variant="baseline"} 40.0' in metrics


def test_under_ab_only_the_champion_rows_go_to_the_baseline(serve, flights) -> None:
    spec = DeploymentSpec(strategy="ab", traffic={"champion": 50, "challenger": 50}, seed=1)
    with serve(spec, _Failing(flights.model.pipeline), _design({"rule": RULE})) as (client, log, _):
        for i in range(60):
            r = client.post("/v1/predict", json={"inputs": flights.row(i)}, headers={"X-Mlsd-Unit": f"u{i}"})
            assert r.status_code == 200, r.text
    frame = _logged(log)
    by_assignment = frame.groupby("assigned_variant")["variant"].unique()
    assert list(by_assignment["challenger"]) == ["challenger"]  # the healthy challenger answers its own
    assert list(by_assignment["champion"]) == ["baseline"]
    assert frame.loc[frame["variant"] == "challenger", "fallback"].isna().all()


def test_a_failed_challenger_then_a_failed_champion_both_say_why(serve, flights) -> None:
    spec = DeploymentSpec(strategy="ab", traffic={"champion": 0, "challenger": 100}, breaker_failures=100)
    failing = _Failing(flights.model.pipeline)
    with serve(spec, failing, _design({"rule": RULE}), challenger=_Failing(flights.model.pipeline)) as (
        client,
        log,
        _,
    ):
        r = client.post("/v1/predict", json={"inputs": flights.rows[:3]})
        metrics = client.get("/metrics").text
    assert r.status_code == 200, r.text
    assert {a["variant"] for a in r.json()["predictions"]} == {"baseline"}
    reasons = _logged(log)["fallback"]
    assert reasons.str.startswith("failed: champion raised RuntimeError").all()
    assert reasons.str.contains("after failed: challenger raised RuntimeError").all()
    assert 'mlsd_fallbacks_total{reason="failed",variant="challenger"} 3.0' in metrics
    assert 'mlsd_fallbacks_total{reason="failed",variant="champion"} 3.0' in metrics


def test_a_champion_answering_the_wrong_number_of_rows_is_a_failure(serve, flights, monkeypatch) -> None:
    with serve(DeploymentSpec(), flights.model.pipeline, _design({"rule": RULE})) as (client, log, routing):
        loaded = routing.variants["champion"].model
        answer = loaded.predict_frame
        monkeypatch.setattr(loaded, "predict_frame", lambda frame: answer(frame).iloc[1:])
        r = client.post("/v1/predict", json={"inputs": flights.rows[:4]})
    assert r.status_code == 200, r.text
    assert _logged(log)["fallback"].str.startswith("failed: champion raised ValueError: 3 answers").all()


@pytest.mark.parametrize(
    "design",
    [None, _design("majority"), _design({"rule": "air_time > 100"})],
    ids=["no design", "no rule", "a column requests lack"],
)
def test_without_a_usable_rule_baseline_a_failing_champion_is_an_error(
    serve, flights, design, caplog
) -> None:
    with serve(DeploymentSpec(), _Failing(flights.model.pipeline), design) as (client, log, routing):
        r = client.post("/v1/predict", json={"inputs": flights.row(0)})
        metrics = client.get("/metrics").text
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "model_error"
    message = r.json()["error"]["message"]
    assert "no fallback model was available" in message and "RuntimeError" in message
    assert "planted failure" not in message  # the model's own text stays in the server log
    logged = [rec.getMessage() for rec in caplog.records if "no fallback model" in rec.getMessage()]
    assert logged and routing.no_baseline in logged[0] and "planted failure" in logged[0]
    if design is not None:
        assert ("no rule baseline" in routing.no_baseline) or ("air_time" in routing.no_baseline)
    assert "mlsd_fallbacks_total{" not in metrics  # nothing answered in the champion's place
    assert len(_logged(log)) == 0


def test_the_champion_has_no_circuit_it_is_tried_again_with_every_batch(serve, flights) -> None:
    failing = _Failing(flights.model.pipeline, failures=8)
    spec = DeploymentSpec(breaker_failures=2)
    with serve(spec, failing, _design({"rule": RULE})) as (client, log, routing):
        assert failing.calls == 1  # the warm-up at start, which failed too
        for i in range(10):
            r = client.post("/v1/predict", json={"inputs": flights.row(i)})
            assert r.status_code == 200, r.text
    assert "champion" not in routing.breakers
    assert failing.calls == 11
    frame = _logged(log)
    assert frame["variant"].tolist() == ["baseline"] * 7 + ["champion"] * 3
    assert frame["fallback"].isna().tolist() == [False] * 7 + [True] * 3


def test_rule_baseline_reads_derived_columns_and_says_why_it_cannot(flights) -> None:
    variant, why = rule_baseline(_design({"rule": RULE}), flights.model)
    assert why is None and variant.alias == "baseline" and variant.version == BASELINE_VERSION
    # a rule on a raw input column needs no derivation
    variant, why = rule_baseline(_design(["majority", {"rule": "distance > 1000"}], derive={}), flights.model)
    assert why is None
    got = variant.model.predict_frame(pd.DataFrame(flights.rows[:50])[flights.model.input_columns])
    expected = np.array([r["distance"] > 1000 for r in flights.rows[:50]])
    np.testing.assert_array_equal(got["decision"], expected)
    assert rule_baseline(_design("majority"), flights.model) == (
        None,
        "the design has no rule baseline (models.baseline: {rule: ...})",
    )
    _, why = rule_baseline(_design({"rule": "air_time > 100"}), flights.model)
    assert why is not None and "air_time" in why and "input columns" in why
    # derived from a column requests lack
    _, why = rule_baseline(_design({"rule": "late"}, derive={"late": "dep_delay > 0"}), flights.model)
    assert why is not None and "dep_delay" in why


@pytest.mark.parametrize(
    "deployment", [{}, {"strategy": "canary", "steps": [10, 100]}], ids=["single", "canary"]
)
def test_the_server_of_a_design_builds_its_rule_baseline_at_start(
    flights, tmp_path, monkeypatch, deployment
) -> None:
    system = SimpleNamespace(
        design=_design({"rule": RULE}, **deployment),
        champion=lambda alias="champion": (flights.model, "flight-delay", 3 if alias == "champion" else 4),
        prediction_log=lambda url=None: PredictionLog(f"sqlite:///{tmp_path / 'log.db'}"),
        workspace=tmp_path,
    )
    settings = settings_for(system, environ={})
    routing = settings.routing
    assert routing.baseline is not None and routing.baseline.version == BASELINE_VERSION
    routing._reload = None  # no registry here: the aliases never move
    with TestClient(
        create_app(settings), base_url="http://127.0.0.1", raise_server_exceptions=False
    ) as client:
        routing.variants = {
            **routing.variants,
            "champion": Variant("champion", _with(flights.model, _Failing(flights.model.pipeline)), 3),
        }
        r = client.post("/v1/predict", json={"inputs": flights.rows[:5]}, headers={"X-Mlsd-Unit": "u1"})
    assert r.status_code == 200, r.text
    score, _ = _reference(flights, flights.rows[:5])
    answers = r.json()["predictions"]
    baseline = [a for a in answers if a["variant"] == "baseline"]
    assert baseline and all(a["model_version"] == BASELINE_VERSION for a in baseline)
    np.testing.assert_array_equal(
        [a["score"] for a in answers if a["variant"] == "baseline"],
        score[[a["variant"] == "baseline" for a in answers]],
    )


def test_only_the_request_that_breaks_the_champion_gets_the_baseline(flights, tmp_path) -> None:
    """Requests sharing a micro-batch: the batch fails, each is scored again alone, and only the
    one the champion cannot score is answered by the baseline; the others get the champion."""
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}")
    baseline, _ = rule_baseline(_design({"rule": RULE}), flights.model)
    champion = Variant("champion", _with(flights.model, _Fragile(flights.model.pipeline)), 3)
    routing = Routing(
        DeploymentSpec(),
        {"champion": champion},
        log=log,
        model_name="flight-delay",
        task="binary",
        baseline=baseline,
    )
    app = routed_flights_app(flights, log, routing, max_batch_size=10_000, max_batch_delay_ms=1_000)
    sizes: list[int] = []
    app.state.service.batcher.on_batch = sizes.append
    bodies = [{"inputs": flights.row(i, **({"distance": 1234} if i == 3 else {}))} for i in range(8)]

    async def send_all() -> list[httpx.Response]:
        service = app.state.service
        await service.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                return await asyncio.gather(*(http.post("/v1/predict", json=b) for b in bodies))
        finally:
            await service.stop()

    responses = asyncio.run(send_all())
    assert sizes[0] == 8  # one shared batch failed, then each request was scored alone
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    answers = [r.json()["predictions"][0] for r in responses]
    assert [a.get("variant") for a in answers] == [None, None, None, "baseline", None, None, None, None]
    frame = log.read_predictions()
    assert sorted(frame["variant"]) == ["baseline"] + ["champion"] * 7
    [reason] = frame["fallback"].dropna()
    assert reason.startswith("failed: champion raised ValueError: the model cannot score 1234")
