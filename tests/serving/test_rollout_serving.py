"""The rollout inside the server: routing, the logged assignment, fallback, circuit breaker,
shadow, the shared state and the admin API, on the real app with a real SQLite log."""

from __future__ import annotations

import copy
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mlsd._deployment import DeploymentSpec
from mlsd.serving.routing import Routing, Variant
from mlsd.store import PackagedModel
from mlsd.store.prediction_log import PredictionLog
from planted_models import Exiting as _Exiting
from planted_models import Failing as _Failing
from planted_models import Slow as _Slow
from support import routed_flights_app

TOKEN = "an-admin-token-of-32-characters!"


def _variant(model: PackagedModel, alias: str, version: int, pipeline: Any = None) -> Variant:
    if pipeline is not None:
        model = copy.copy(model)
        object.__setattr__(model, "pipeline", pipeline)
    return Variant(alias, model, version)


@pytest.fixture
def serve(flights, tmp_path: Path):
    counter = iter(range(1000))

    @contextmanager
    def factory(
        spec: DeploymentSpec,
        challenger: Any = None,
        *,
        log_path: Path | None = None,
        shadow_cpus: frozenset[int] | None = None,
        **settings: Any,
    ) -> Iterator[tuple[TestClient, PredictionLog, Routing]]:
        path = log_path or tmp_path / f"log{next(counter)}.db"
        log = PredictionLog(f"sqlite:///{path}")
        variants = {"champion": _variant(flights.model, "champion", 3)}
        for alias in spec.routed_aliases()[1:]:
            variants[alias] = _variant(flights.model, alias, 4, challenger)
        routing = Routing(
            spec,
            variants,
            log=log,
            model_name="flight-delay",
            task="binary",
            p99_limit_ms=None,
            shadow_cpus=shadow_cpus,
        )
        app = routed_flights_app(flights, log, routing, **settings)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client, log, routing

    return factory


def _send(client: TestClient, flights, n: int, unit_of=None, start: int = 0) -> list[dict]:
    answers = []
    for i in range(start, start + n):
        headers = {} if unit_of is None else {"X-Mlsd-Unit": unit_of(i)}
        r = client.post("/v1/predict", json={"inputs": flights.row(i % len(flights.rows))}, headers=headers)
        assert r.status_code == 200, r.text
        answers.append(r.json()["predictions"][0])
    return answers


def _logged(log: PredictionLog):
    log.close()  # drain the writer before reading
    return log.read_predictions()


def test_ab_assignment_is_sticky_by_unit_and_logs_its_propensity(serve, flights) -> None:
    spec = DeploymentSpec(strategy="ab", traffic={"champion": 70, "challenger": 30}, seed=3)
    with serve(spec) as (client, log, _):
        answers = _send(client, flights, 300, unit_of=lambda i: f"user-{i % 60}")
        again = _send(client, flights, 60, unit_of=lambda i: f"user-{i % 60}")
        no_unit = _send(client, flights, 40)
    frame = _logged(log)
    assert {a["variant"] for a in answers} == {"champion", "challenger"}
    by_unit = frame[frame["unit"].notna()].groupby("unit")["variant"].nunique()
    assert len(by_unit) == 60 and by_unit.max() == 1
    first = {f"user-{i % 60}": a["variant"] for i, a in enumerate(answers)}
    assert all(first[f"user-{i}"] == a["variant"] for i, a in enumerate(again))
    share = (frame["variant"] == "challenger").mean()
    assert 0.15 < share < 0.45
    sticky = frame[frame["assignment"] == "sticky"]
    expected = np.where(sticky["variant"] == "challenger", 0.3, 0.7)
    np.testing.assert_allclose(sticky["propensity"], expected)
    assert (frame.loc[frame["unit"].isna(), "assignment"] == "random").sum() == len(no_unit)
    versions = frame.groupby("variant")["model_version"].unique()
    assert list(versions["champion"]) == [3] and list(versions["challenger"]) == [4]


def test_a_failing_variant_is_answered_by_the_champion_and_counted(serve, flights) -> None:
    spec = DeploymentSpec(strategy="ab", traffic={"champion": 0, "challenger": 100}, breaker_failures=3)
    with serve(spec, _Failing(flights.model.pipeline)) as (client, log, routing):
        answers = _send(client, flights, 8)
        metrics = client.get("/metrics").text
    assert all(a["variant"] == "champion" and a["model_version"] == 3 for a in answers)
    frame = _logged(log)
    assert (frame["assigned_variant"] == "challenger").all()
    reasons = frame.sort_values("request_id")["fallback"].tolist()
    assert all(r.startswith("failed: challenger raised RuntimeError") for r in reasons[:3])
    assert all(r.startswith("circuit open") for r in reasons[3:])  # after 3 in a row
    assert 'mlsd_fallbacks_total{reason="failed",variant="challenger"} 3.0' in metrics
    assert 'mlsd_fallbacks_total{reason="circuit open",variant="challenger"} 5.0' in metrics
    assert routing.breakers["challenger"].state == "open"


def test_a_variant_past_its_timeout_is_answered_by_the_champion(serve, flights) -> None:
    spec = DeploymentSpec(strategy="ab", traffic={"champion": 0, "challenger": 100}, variant_timeout_ms=50)
    with serve(spec, _Slow(flights.model.pipeline, 0.5)) as (client, log, _):
        answers = _send(client, flights, 2)
    assert [a["variant"] for a in answers] == ["champion", "champion"]
    assert _logged(log)["fallback"].str.startswith("timed out: challenger").all()


def test_shadow_scores_every_request_off_the_path_and_never_answers(serve, flights) -> None:
    with serve(DeploymentSpec(strategy="shadow")) as (client, log, _):
        answers = _send(client, flights, 30)
    assert all("variant" not in a for a in answers)
    primary = _logged(log)
    shadow = log.read_shadow()
    assert len(shadow) == 30 and set(shadow["request_id"]) == set(primary["request_id"])
    assert (shadow["variant"] == "challenger").all() and (shadow["model_version"] == 4).all()
    # the same model in both seats: the same scores
    np.testing.assert_allclose(shadow["score"], shadow["primary_score"])
    assert (primary["variant"] == "champion").all()


def test_the_shadow_scores_its_backlog_in_one_call_per_batch(serve, flights) -> None:
    # the shadow runs in a process of its own: each call's latency is the mark of one batch
    with serve(DeploymentSpec(strategy="shadow"), _Slow(flights.model.pipeline, 0.3)) as (client, log, _):
        _send(client, flights, 40)  # faster than one call per 0.3 s: a backlog builds up
    primary, shadow = _logged(log), log.read_shadow()
    assert shadow["error"].isna().all(), shadow["error"].dropna().unique()
    calls = shadow["latency_ms"].nunique()
    assert calls < 20 and (shadow["latency_ms"] >= 300).all(), shadow["latency_ms"].value_counts()
    assert sorted(shadow["request_id"]) == sorted(primary["request_id"])
    # each row keeps its own request's time and gets its own row's score from the batch
    np.testing.assert_allclose(shadow["score"], shadow["primary_score"])
    times = primary.set_index("request_id")["logged_at"]
    assert (shadow.set_index("request_id")["logged_at"] == times.reindex(shadow["request_id"])).all()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux's")
def test_the_shadow_process_runs_on_the_cores_it_is_given(serve, flights) -> None:
    cores = sorted(os.sched_getaffinity(0))
    wanted = frozenset(cores[-1:])  # one core of the ones this test may use
    with serve(DeploymentSpec(strategy="shadow"), shadow_cpus=wanted) as (client, log, routing):
        _send(client, flights, 3)
        process = routing._shadow._shadow.process  # started and warmed with the server
        assert os.sched_getaffinity(process.pid) == wanted
        assert os.sched_getaffinity(0) == set(cores)  # the server itself stays where it was
    _logged(log)
    assert len(log.read_shadow()) == 3


def test_a_full_shadow_queue_drops_rows_and_counts_them(serve, flights, monkeypatch) -> None:
    import mlsd.serving.shadow as shadow_module

    monkeypatch.setattr(shadow_module, "MAX_SHADOW_PENDING_ROWS", 5)
    with serve(DeploymentSpec(strategy="shadow"), _Slow(flights.model.pipeline, 1.0)) as (client, log, _):
        _send(client, flights, 20)
        metrics = client.get("/metrics").text
    _logged(log)
    shadow = log.read_shadow()
    dropped = float(re.search(r"^mlsd_shadow_dropped_total (\S+)$", metrics, re.M).group(1))
    assert dropped > 0 and len(shadow) + dropped == 20, (len(shadow), dropped)
    assert shadow["error"].isna().all() and shadow["score"].notna().all()


def test_a_shadow_that_raises_logs_its_error_and_answers_go_on(serve, flights) -> None:
    with serve(DeploymentSpec(strategy="shadow"), _Failing(flights.model.pipeline)) as (client, log, _):
        answers = _send(client, flights, 10)
    assert all(a["score"] is not None for a in answers)
    shadow = log.read_shadow() if _logged(log) is not None else None
    assert len(shadow) == 10 and shadow["score"].isna().all()
    assert shadow["error"].str.contains("planted failure").all()


class _OnlyHere(_Slow):
    """A model the shadow process cannot unpickle (this test module is not importable there)."""


@pytest.mark.parametrize(
    ("make", "why"),
    [
        pytest.param(lambda p: _OnlyHere(p, 0.0), "could not load the model", id="model-not-loadable-there"),
        pytest.param(lambda p: _Exiting(p), "stopped (exit code 3)", id="process-exits"),
    ],
)
def test_a_shadow_process_that_keeps_failing_rests_and_logs_why(serve, flights, make, why) -> None:
    with serve(DeploymentSpec(strategy="shadow"), make(flights.model.pipeline)) as (client, log, _):
        for i in range(8):  # one at a time: each its own batch
            answers = _send(client, flights, 1, start=i)
            assert answers[0]["score"] is not None  # the answers go on
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(log.read_shadow()) < i + 1:
                time.sleep(0.05)
    _logged(log)
    errors = log.read_shadow().sort_values("logged_at")["error"].tolist()
    assert len(errors) == 8 and all(errors), errors
    assert all(e.startswith("ShadowProcessError") and why in e for e in errors[:3]), errors
    assert all("resting" in e for e in errors[3:]), errors


def test_canary_state_is_shared_through_the_log_and_survives_a_restart(serve, flights, tmp_path) -> None:
    spec = DeploymentSpec(strategy="canary", steps=[20, 100], step_min_requests=10, state_refresh_s=3600)
    path = tmp_path / "shared.db"
    with serve(spec, log_path=path) as (client, log, routing):
        assert routing.state.canary_step == 0 and routing.revision == 1
        _send(client, flights, 120, unit_of=lambda i: f"u{i}")
        routing.refresh()
        assert routing.state.canary_step == 1, log.read_events()
    events = log.read_events()
    assert list(events["kind"]) == ["start", "advance"]
    with serve(spec, log_path=path) as (_, _, again):  # a new process would read the same row
        assert again.state.canary_step == 1 and again.revision == 2


def test_admin_routes_need_a_configured_and_matching_token(serve, flights) -> None:
    spec = DeploymentSpec(strategy="ab", traffic={"champion": 50, "challenger": 50})
    with serve(spec) as (client, _, _):
        disabled = client.get("/v1/admin/state")
    assert disabled.status_code == 403 and "admin API disabled" in disabled.text
    with serve(spec, admin_token=TOKEN) as (client, log, routing):
        assert client.get("/v1/admin/state").status_code == 401
        wrong = client.get("/v1/admin/state", headers={"Authorization": "Bearer " + "x" * 32})
        assert wrong.status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        _send(client, flights, 20, unit_of=lambda i: f"u{i}")
        state = client.get("/v1/admin/state", headers=auth)
        assert state.status_code == 200, state.text
        body = state.json()
        assert body["strategy"] == "ab" and sum(v["requests"] for v in body["variants"]) == 20
        assert 0 <= body["srm_p_value"] <= 1
        moved = client.post(
            "/v1/admin/traffic", headers=auth, json={"weights": {"champion": 90, "challenger": 10}}
        )
        assert moved.status_code == 200, moved.text
        assert routing.state.weights == {"champion": 90.0, "challenger": 10.0}
        bad = client.post("/v1/admin/traffic", headers=auth, json={"weights": {"nobody": 1}})
        assert bad.status_code == 422 and bad.json()["error"]["errors"][0]["field"] == "weights.nobody"
    events = log.read_events()
    assert list(zip(events["kind"], events["outcome"], strict=True))[-2:] == [
        ("traffic", "ok"),
        ("traffic", "refused"),
    ]


def test_bandit_rewards_come_from_the_log_and_survive_a_restart(serve, flights, tmp_path) -> None:
    spec = DeploymentSpec(strategy="bandit", bandit="thompson", state_refresh_s=3600)
    path = tmp_path / "bandit.db"
    with serve(spec, log_path=path) as (client, _, routing):
        answers = _send(client, flights, 60)
        for a, i in zip(answers, range(60), strict=True):
            outcome = bool(flights.rows[i]["arr_delay"] > 15)
            r = client.post("/v1/feedback", json={"request_id": a["request_id"], "outcome": outcome})
            assert r.status_code == 200, r.text
        routing.refresh()
        arms = dict(routing.arms)
    assert sum(a.n for a in arms.values()) == 60  # every reward attributed to the arm that answered
    assert {a["variant"] for a in answers} <= {"champion", "challenger"}
    with serve(spec, log_path=path) as (_, _, again):
        assert again.arms == arms  # read back from the log at start, not kept in memory


def test_scoring_time_is_the_model_calls_cpu_time_not_the_wall_clock() -> None:
    """What the canary's latency gate judges grows with the model's work, not with waiting: a
    call that sleeps (a thread waiting for a core on a busy machine looks the same) costs no
    CPU, a call that computes costs what it computes."""
    import time as _time

    import pandas as pd

    from mlsd.serving.routing import _timed_predict
    from slow_model import BusyTransformer

    class _Model:
        def __init__(self, step: Any) -> None:
            self.step = step

        def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
            self.step(frame)
            return pd.DataFrame({"score": [0.5] * len(frame), "decision": [True] * len(frame)})

    frame = pd.DataFrame({"x": [1.0]})
    _, waiting = _timed_predict(_Model(lambda f: _time.sleep(0.3)), frame)
    _, working = _timed_predict(_Model(BusyTransformer(0.05).transform), frame)
    assert waiting < 100, waiting  # 300 ms of wall time, next to no CPU
    assert working >= 50, working
