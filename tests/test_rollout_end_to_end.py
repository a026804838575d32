"""Rollout end to end through the real CLI: two registered versions, `mlsd serve` routing between
them, `mlsd replay` sending real flights, the prediction log read back.

- ``ab`` 50/50 sticky by tailnum: 2,000 flights split within 45-55 %, every tailnum keeps its
  variant, and a restarted server gives every tailnum the variant it had;
- ``shadow``: every replayed flight has the challenger's score beside the champion's answer;
- a canary whose challenger is planted bad (trained on the inverted label) is rolled back, and a
  good one reaches its last step, both as events in the log; the step survives a restart;
- two replicas on one real PostgreSQL database route by the same canary state.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from support import ROOT, mlsd_cli, mlsd_server

EXAMPLE = ROOT / "examples" / "flights" / "design.yaml"
ADMIN_TOKEN = "rollout-end-to-end-admin-token"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flights-rollout")]


def _mlsd(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return mlsd_cli(*args, timeout=timeout, columns=200)


def _design_text(deployment: str, *, label: str = "arr_delay > 15") -> str:
    """The flights example on 30,000 flights, one quick candidate, and ``deployment``."""
    text = EXAMPLE.read_text()
    text = text.replace("  label: ", "  sample: {n: 30000, seed: 0}\n  label: ", 1)
    text = re.sub(r"(?m)^  label: .*$", f'  label: "{label}"', text, count=1)
    text = text.replace("p99_latency_ms: 20}", "p99_latency_ms: 500}")
    # equal costs: the canary judges the cost of decisions, and with a missed delay four times a
    # false alarm an inverted challenger (which warns of nearly every flight) costs only ~17% more
    # than the champion, inside a margin of 0.1 x 4; with equal costs its loss is its error rate
    costs = "costs: {false_positive: 1, false_negative: 4, unit: passenger-hours}"
    assert costs in text
    text = text.replace(costs, "costs: {false_positive: 1, false_negative: 1, unit: errors}")
    start, end = text.index("  candidates:"), text.index("  select:")
    text = text[:start] + "  candidates:\n    - {name: logreg, type: logistic_regression}\n" + text[end:]
    text = re.sub(r"(?ms)^deployment:.*?(?=^\S|\Z)", f"deployment: {deployment}\n\n", text)
    return text


def _build(folder: Path, deployment: str, *, challenger_label: str) -> Path:
    """A champion, then a challenger under the alias ``challenger`` from ``challenger_label``."""
    design = folder / "design.yaml"
    design.write_text(_design_text(deployment))
    result = _mlsd("build", str(design))
    assert result.returncode == 0, result.stdout + result.stderr
    other = folder / "challenger.yaml"
    # the same name and workspace: a new version of the same registered model
    other.write_text(
        _design_text(deployment, label=challenger_label)
        + f"\nworkspace: {folder / '.mlsd' / 'flight-delay'}\n"
    )
    result = _mlsd("build", str(other), "--alias", "challenger")
    assert result.returncode == 0, result.stdout + result.stderr
    return design


def _predictions(design: Path, url: str | None = None) -> pd.DataFrame:
    from mlsd.system import System

    log = System(design).prediction_log(url)
    return log.read_predictions()


def _replay(design: Path, url: str, *options: str) -> None:
    result = _mlsd("replay", str(design), "--url", url, *options)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def ab_design(tmp_path_factory: pytest.TempPathFactory) -> Path:
    deployment = "{strategy: ab, traffic: {champion: 50, challenger: 50}, sticky_by: tailnum, seed: 7}"
    return _build(tmp_path_factory.mktemp("ab"), deployment, challenger_label="arr_delay > 15")


def test_ab_split_is_sticky_by_tailnum_and_survives_a_restart(ab_design: Path) -> None:
    with mlsd_server(ab_design) as (_, url):
        _replay(ab_design, url, "--limit", "2000")
    first = _predictions(ab_design)
    assert len(first) == 2000
    share = (first["variant"] == "challenger").mean()
    assert 0.45 <= share <= 0.55, share
    with_unit = first[first["unit"].notna()]
    assert len(with_unit) > 1900 and (with_unit["assignment"] == "sticky").all()
    assert with_unit.groupby("unit")["variant"].nunique().max() == 1
    assert (first.loc[first["unit"].isna(), "assignment"] == "random").all()
    assert first["propensity"].between(0.49, 0.51).all()

    with mlsd_server(ab_design) as (_, url):  # a new process: nothing kept in memory
        _replay(ab_design, url, "--limit", "2000")
    both = _predictions(ab_design)
    second = both[~both["request_id"].isin(first["request_id"])]
    assert len(second) == 2000
    before = with_unit.groupby("unit")["variant"].first()
    after = second[second["unit"].notna()].groupby("unit")["variant"].first()
    assert after.equals(before.reindex(after.index))


def test_shadow_scores_every_replayed_flight_in_its_own_process(ab_design: Path, tmp_path: Path) -> None:
    shadow = ab_design.parent / "shadow.yaml"
    shadow.write_text(
        _design_text("{strategy: shadow}") + f"\nworkspace: {ab_design.parent / '.mlsd' / 'flight-delay'}\n"
    )
    log_url = f"sqlite:///{tmp_path / 'shadow.db'}"  # a log of its own: the ab test counts its rows
    with mlsd_server(shadow, "--log-url", log_url) as (_, url):
        _replay(shadow, url, "--limit", "300", "--concurrency", "16")
    from mlsd.system import System

    log = System(shadow).prediction_log(log_url)
    served, rows = log.read_predictions(), log.read_shadow()
    assert len(served) == 300 and (served["variant"] == "champion").all()
    # every answer has its shadow row, scored (stopping the server drains the queue first)
    assert sorted(rows["request_id"]) == sorted(served["request_id"])
    assert rows["error"].isna().all() and rows["score"].notna().all(), rows["error"].dropna().unique()
    assert (rows["variant"] == "challenger").all()


def _events(design: Path, url: str | None = None) -> pd.DataFrame:
    from mlsd.system import System

    return System(design).prediction_log(url).read_events()


def _admin_state(url: str) -> dict:
    answer = httpx.get(
        f"{url}/v1/admin/state", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _decided(state: dict) -> bool:
    return bool(state["rolled_back"] or state["complete"])


def _until_decided(design: Path, url: str, *, wait_s: float = 10.0) -> dict:
    """The admin state once the canary has rolled back or completed.

    On a busy machine the replay may end before the last step has its requests (a step counts
    only the requests after it started) or before the refresher has judged it: wait for the
    judgement, then send the validation split's flights too, at most twice.
    """
    for extra in range(3):
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            state = _admin_state(url)
            if _decided(state):
                return state
            time.sleep(0.3)
        if extra < 2:
            _replay(design, url, "--split", "valid", "--limit", "1000", "--feedback", "--rate", "400")
    return state


CANARY = (
    "{strategy: canary, steps: [10, 50, 100], step_min_requests: 150, state_refresh_s: 0.3, "
    "max_degradation: 0.1}"
)


@pytest.mark.parametrize(
    ("challenger_label", "expected"),
    [("arr_delay <= 15", "rollback"), ("arr_delay > 15", "complete")],
    ids=["bad-challenger-rolled-back", "good-challenger-reaches-100"],
)
def test_canary_rolls_back_a_bad_challenger_and_completes_a_good_one(
    tmp_path: Path, challenger_label: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", ADMIN_TOKEN)
    design = _build(tmp_path, CANARY, challenger_label=challenger_label)
    with mlsd_server(design) as (_, url):
        # a limited rate: the feedback of one step's requests arrives before the next is judged
        _replay(design, url, "--limit", "2500", "--feedback", "--rate", "400")
        state = _until_decided(design, url)
    events = _events(design)
    assert expected in set(events["kind"]), events[["kind", "reason"]].to_string()
    if expected == "rollback":
        assert state["rolled_back"], state
        reason = events.loc[events["kind"] == "rollback", "reason"].iloc[0]
        assert reason
    else:
        assert (events["kind"] == "advance").sum() == 2, events
        assert state["canary_step"] == 2 and not state["rolled_back"], state
    # the canary's state lives in the log: a restarted server continues where it stopped
    with mlsd_server(design) as (_, url):
        again = _admin_state(url)
    assert again["canary_step"] == state["canary_step"]
    assert again["rolled_back"] == state["rolled_back"]


def _fresh_database(url: str, name: str) -> str:
    """A database of its own on the shared test cluster (other tests log there too)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)


def test_two_replicas_on_postgresql_share_the_canary_step(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", ADMIN_TOKEN)
    postgres_url = _fresh_database(postgres_url, "rollout_replicas")
    canary = "{strategy: canary, steps: [20, 100], step_min_requests: 100000, state_refresh_s: 0.3}"
    design = _build(tmp_path, canary, challenger_label="arr_delay > 15")
    with (
        mlsd_server(design, "--log-url", postgres_url) as (_, one),
        mlsd_server(design, "--log-url", postgres_url) as (_, two),
    ):
        _replay(design, one, "--limit", "1000")
        _replay(design, two, "--limit", "1000")
        states = [_admin_state(one), _admin_state(two)]
    assert states[0]["canary_step"] == states[1]["canary_step"] == 0
    served = _predictions(design, postgres_url)
    assert len(served) == 2000
    share = (served["assigned_variant"].fillna(served["variant"]) == "challenger").mean()
    # 20 % of 2,000: sd 0.9 %; 4 sd either side
    assert abs(share - 0.20) < 0.036, share
