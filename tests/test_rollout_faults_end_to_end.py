"""Rollout faults end to end through the real CLI and registry: `mlsd serve` as a subprocess, real
flights sent by `mlsd replay`, the prediction log and the events read back.

- a canary whose challenger is a real trained model made slow (a transformer that sleeps in
  front of it, registered as a new version under ``challenger`` in the build's own registry) is
  rolled back by the p99 latency gate, as an event, and the champion answers everything after;
- `mlsd promote` and `mlsd rollback` run while `mlsd replay` is sending: the running server
  answers with the new champion version, then the old one again, without a restart and without
  one failed request.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from slow_model import slowed
from support import BIN, ROOT, mlsd_server
from test_rollout_end_to_end import _admin_state, _build, _design_text, _events, _mlsd

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("flights-rollout")]

ADMIN_TOKEN = "rollout-end-to-end-admin-token"  # the token _admin_state sends

#: goals.constraints.p99_latency_ms of the slow-challenger design
P99_LIMIT_MS = 50
#: the challenger's sleep per batch: over the limit, and well over 1.25x a champion that
#: answers a lone flight in a few milliseconds (canary.LATENCY_RATIO)
SLEEP_S = 0.08


def _outcomes(design: Path) -> pd.DataFrame:
    """The log's predictions (no inputs), oldest first, ``logged_at`` as UTC timestamps."""
    from mlsd.system import System

    frame = System(design).prediction_log().read_outcomes()
    frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True)
    return frame


def _wait_for_rows(design: Path, n: int, replay: subprocess.Popen[str]) -> None:
    """Until the log holds ``n`` predictions (the replay is under way), or the replay ended."""
    while len(_outcomes(design)) < n:
        assert replay.poll() is None, f"the replay ended early: {replay.communicate()}"
        time.sleep(0.2)


def _start_replay(design: Path, url: str, *options: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.Popen(
        [str(BIN / "mlsd"), "replay", str(design), "--url", url, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finished(replay: subprocess.Popen[str]) -> str:
    """The replay's output once it ended; it exits 1 (printing "N of M requests failed") when any
    request got no 200."""
    stdout, stderr = replay.communicate(timeout=300)
    assert replay.returncode == 0, stdout + stderr
    assert "requests failed" not in stdout + stderr
    return stdout


# -- 1. a challenger slower than the SLO -------------------------------------------------------

SLOW_CANARY = "{strategy: canary, steps: [10, 50, 100], step_min_requests: 100, state_refresh_s: 0.3}"


def _register_slow_challenger(design: Path) -> tuple[int, int]:
    """The champion's own fitted pipeline behind a sleep, registered under ``challenger`` in the
    same registry as a new version of the same model: (champion version, challenger version)."""
    from mlsd.store import ModelRegistry
    from mlsd.store.files import private_files
    from mlsd.system import System

    system = System(design)
    champion, name, version = system.champion()
    slow = dataclasses.replace(
        champion,
        pipeline=slowed(champion.pipeline, SLEEP_S),
        metadata={**champion.metadata, "note": f"the champion behind a {SLEEP_S * 1000:g} ms sleep"},
    )
    with private_files(system.workspace):
        info = ModelRegistry(system.workspace).register(
            slow, name, alias="challenger", description="slow challenger (tests/slow_model.py)"
        )
    return version, info.version


def test_a_challenger_slower_than_the_p99_limit_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", ADMIN_TOKEN)
    # the server unpickles slow_model.SleepTransformer
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    )
    design = tmp_path / "design.yaml"
    text = _design_text(SLOW_CANARY)
    assert "constraints: {p99_latency_ms: 500}" in text
    design.write_text(
        text.replace("constraints: {p99_latency_ms: 500}", f"constraints: {{p99_latency_ms: {P99_LIMIT_MS}}}")
    )
    result = _mlsd("build", str(design))
    assert result.returncode == 0, result.stdout + result.stderr
    champion_version, challenger_version = _register_slow_challenger(design)

    with mlsd_server(design) as (_, url):
        # One request in flight: every request is a batch of its own, so a champion row never
        # waits behind a challenger row's sleep in the shared micro-batcher (its p99 stays its own).
        replay = _start_replay(design, url, "--limit", "1500", "--rate", "150", "--concurrency", "1")
        _finished(replay)
        state = _admin_state(url)

    events = _events(design)
    rollbacks = events[events["kind"] == "rollback"]
    assert len(rollbacks) == 1, events
    event = rollbacks.iloc[0]
    assert event["actor"] == "canary" and event["variant"] == "challenger"
    assert "p99 latency" in event["reason"], event["reason"]
    assert event["details"]["challenger_p99_latency_ms"] > P99_LIMIT_MS
    assert event["details"]["challenger_p99_latency_ms"] > 1.25 * event["details"]["champion_p99_latency_ms"]
    assert "advance" not in set(events["kind"]), events  # rolled back in its first step

    assert state["rolled_back"] and "p99 latency" in state["rolled_back"], state
    weights = {v["alias"]: v["weight"] for v in state["variants"]}
    assert weights["challenger"] == 0 and weights["champion"] == 100, state

    served = _outcomes(design)
    assert len(served) == 1500
    at = pd.Timestamp(event["logged_at"])
    at = at.tz_localize(UTC) if at.tzinfo is None else at
    before, after = served[served["logged_at"] < at], served[served["logged_at"] > at]
    slow = before[before["variant"] == "challenger"]
    assert len(slow) >= 20 and (slow["model_version"] == challenger_version).all()
    assert (slow["latency_ms"] >= SLEEP_S * 1000).all()  # the sleep is in what the log measured
    assert len(after) > 500, len(after)  # the rollback came early; the rest is the champion's
    assert (after["variant"] == "champion").all(), after["variant"].value_counts()
    assert (after["assigned_variant"].fillna(after["variant"]) == "champion").all()
    assert (after["model_version"] == champion_version).all()


# -- 2. an alias moved under a running server --------------------------------------------------

# stays at 10 % (step_min_requests out of reach): the champion answers about 90 % of the rows
HOLDING_CANARY = "{strategy: canary, steps: [10, 100], step_min_requests: 1000000, state_refresh_s: 0.3}"


def _move_during_replay(design: Path, url: str, command: str) -> tuple[pd.DataFrame, datetime]:
    """``mlsd COMMAND design`` while a replay of 3,000 flights runs; the rows it logged and when
    the command started."""
    already = len(_outcomes(design))
    replay = _start_replay(design, url, "--limit", "3000", "--rate", "200", "--concurrency", "8")
    _wait_for_rows(design, already + 300, replay)
    started = datetime.now(UTC)
    moved = _mlsd(command, str(design))
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert replay.poll() is None, "the replay ended before the alias moved: nothing was in flight"
    _finished(replay)
    served = _outcomes(design)
    return served.iloc[already:], started


def _versions(url: str) -> dict[str, int]:
    return {v["alias"]: v["version"] for v in _admin_state(url)["variants"]}


def _assert_switched(rows: pd.DataFrame, started: datetime, reload: pd.Series, old: int, new: int) -> None:
    """The champion's rows: ``old`` until the command started, ``new`` after the server's reload."""
    assert len(rows) == 3000  # every row sent was answered 200 and logged
    champion = rows[rows["variant"] == "champion"]
    reloaded = pd.Timestamp(reload["logged_at"])
    reloaded = reloaded.tz_localize(UTC) if reloaded.tzinfo is None else reloaded
    early, late = champion[champion["logged_at"] < started], champion[champion["logged_at"] > reloaded]
    assert len(early) >= 200 and (early["model_version"] == old).all(), early["model_version"].value_counts()
    assert len(late) >= 200 and (late["model_version"] == new).all(), late["model_version"].value_counts()
    assert set(champion["model_version"]) == {old, new}


def test_a_moved_alias_is_served_without_a_restart_or_a_failed_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSD_ADMIN_TOKEN", ADMIN_TOKEN)
    design = _build(tmp_path, HOLDING_CANARY, challenger_label="arr_delay > 15")
    with mlsd_server(design) as (server, url):
        assert _versions(url) == {"champion": 1, "challenger": 2}

        rows, started = _move_during_replay(design, url, "promote")
        reloads = _events(design).query("kind == 'reload'")
        assert len(reloads) == 1, reloads
        assert reloads.iloc[0]["details"] == {"from": 1, "to": 2}
        _assert_switched(rows, started, reloads.iloc[0], old=1, new=2)
        assert _versions(url) == {"champion": 2, "challenger": 2}

        rows, started = _move_during_replay(design, url, "rollback")
        reloads = _events(design).query("kind == 'reload'")
        assert len(reloads) == 2, reloads
        assert reloads.iloc[1]["details"] == {"from": 2, "to": 1}
        _assert_switched(rows, started, reloads.iloc[1], old=2, new=1)
        assert _versions(url) == {"champion": 1, "challenger": 2}
        assert server.poll() is None  # the one process answered throughout: no restart

    kinds = _events(design)
    cli = kinds[kinds["actor"] == "cli"]
    assert cli["kind"].tolist() == ["promote", "rollback"]
