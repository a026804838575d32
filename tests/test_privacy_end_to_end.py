"""data.privacy end to end through the real CLI: build, serve, predict with raw personal values,
monitor; then no raw value is in any file of the workspace (the SQLite databases read as bytes).

The data is planted: e-mails (dropped), phones and customer ids (pseudonymised), ages
(generalised into bins). The served traffic sends raw values and shifts the customers to one of
them, which monitoring must see as drift on the pseudonymised column.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from support import mlsd_cli, mlsd_server

pytestmark = pytest.mark.slow

KEY = "end-to-end-pseudonym-key-0123456789"
CUSTOMERS = [f"CUST-{1000 + k}" for k in range(8)]


def _data(n_days: int = 120, per_day: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = n_days * per_day
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "when": pd.date_range("2024-01-01", periods=n, freq=f"{24 // per_day}h").strftime(
                "%Y-%m-%dT%H:%M:%S"
            ),
            "email": [f"person.{i}@planted-example.com" for i in range(n)],
            "phone": [f"+44 20 7946 {i:04d}" for i in range(n)],
            "customer_id": rng.choice(CUSTOMERS, n),
            "age": rng.integers(18, 80, n),
            "x": x,
            "bought": (x + rng.normal(scale=0.8, size=n) > 0).astype(int),
        }
    )


def _design(folder: Path) -> Path:
    _data().to_csv(folder / "customers.csv", index=False)
    design = {
        "name": "shop",
        "goals": {"task": "binary", "metric": "roc_auc"},
        "data": {
            "source": "customers.csv",
            "label": "bought == 1",
            "time": "when",
            "split": {"by": "time", "valid_from": "2024-03-01", "test_from": "2024-04-01"},
            "privacy": {
                "key_env": "MLSD_PSEUDONYM_KEY",
                "columns": {
                    "email": "drop",
                    "phone": "pseudonymise",
                    "customer_id": "pseudonymise",
                    "age": {"generalise": {"bins": [0, 18, 30, 45, 65, 120]}},
                    "bought": {"keep": "the outcome the label reads; not personal"},
                },
            },
        },
        "features": {"numeric": ["x"], "categorical": ["customer_id", "age"]},
        "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}], "bootstrap": 20},
        "monitoring": {"window": "1w"},
    }
    path = folder / "design.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return mlsd_cli(*args, timeout=600)


def test_no_raw_personal_value_reaches_the_workspace_and_drift_is_seen_on_pseudonyms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    design = _design(tmp_path)
    monkeypatch.delenv("MLSD_PSEUDONYM_KEY", raising=False)
    missing = _cli("build", str(design))
    assert missing.returncode == 2 and "MLSD_PSEUDONYM_KEY" in missing.stderr, missing.stderr

    monkeypatch.setenv("MLSD_PSEUDONYM_KEY", KEY)
    build = _cli("build", str(design))
    assert build.returncode == 0, build.stdout + build.stderr
    workspace = tmp_path / ".mlsd" / "shop"

    # traffic a week after the data: raw values, every row from one customer, all aged 70
    rng = np.random.default_rng(1)
    sent = [
        {
            "when": f"2024-05-{1 + i % 14:02d}T10:00:00",
            "email": f"served.{i}@planted-example.com",
            "phone": f"+44 161 496 {i:04d}",
            "customer_id": CUSTOMERS[0],
            "age": 70,
            "x": float(rng.normal()),
        }
        for i in range(120)
    ]
    with mlsd_server(design) as (_, url):
        for start in range(0, len(sent), 20):
            answer = httpx.post(f"{url}/v1/predict", json={"inputs": sent[start : start + 20]}, timeout=30)
            assert answer.status_code == 200, answer.text
        schema = httpx.get(f"{url}/openapi.json").json()["components"]["schemas"]["InputRow"]
        assert "raw value" in schema["properties"]["customer_id"]["description"]
        # the replay sends what a client would: raw values, which the server treats
        replay = _cli("replay", str(design), "--url", url, "--limit", "30")
        assert replay.returncode == 0, replay.stdout + replay.stderr

    monitor = _cli("monitor", str(design), "--json")
    assert monitor.returncode in (0, 1), monitor.stdout + monitor.stderr
    report = json.loads(monitor.stdout)
    may = [w for w in report["windows"] if w["start"] >= "2024-04-29"]
    assert may, report["windows"]
    drift = {f["column"]: f for f in may[0]["drift"]["features"]}
    assert drift["customer_id"]["detected"] and drift["customer_id"]["drifted"], drift["customer_id"]

    from mlsd.data.privacy import pseudonymise
    from mlsd.store import PredictionLog

    logged = PredictionLog.for_workspace(workspace).read_predictions()
    one = pseudonymise(pd.Series([CUSTOMERS[0]]), KEY.encode())[0]
    served = logged[logged["event_time"] >= pd.Timestamp("2024-05-01", tz="UTC")]
    assert len(served) == 120 and set(served["customer_id"]) == {one}
    assert set(served["age"]) == {"[65, 120]"} and "email" not in logged and "phone" not in logged

    document = json.loads((workspace / "reports" / "design.json").read_text())
    treated = {c["column"]: c["treatment"] for c in document["data"]["privacy"]["columns"]}
    assert treated == {
        "email": "drop",
        "phone": "pseudonymise",
        "customer_id": "pseudonymise",
        "age": "generalise",
        "bought": "keep",
    }
    assert "Personal data" in (workspace / "reports" / "design.html").read_text()

    # every file of the workspace, databases and their WAL files included, read as bytes
    data = _data()
    raw = [
        *data["email"],
        *data["phone"],
        *CUSTOMERS,
        *(r["email"] for r in sent),
        *(r["phone"] for r in sent),
    ]
    raw_bytes = [v.encode() for v in raw]
    files = [p for p in workspace.rglob("*") if p.is_file()]
    assert any(p.name == "predictions.db" for p in files) and any(p.name == "mlflow.db" for p in files)
    contents = {str(p.relative_to(workspace)): p.read_bytes() for p in files}
    found = {name: v for name, content in contents.items() for v in raw_bytes if v in content}
    assert not found, found
    assert any(one.encode() in c for name, c in contents.items() if name.startswith("predictions.db"))

    # another key would turn every pseudonym into an unseen category: the server refuses it
    monkeypatch.setenv("MLSD_PSEUDONYM_KEY", "a-rotated-key-that-is-long-enough")
    rotated = _cli("serve", str(design), "--port", "1")
    assert rotated.returncode != 0 and "not the key the champion was built with" in rotated.stderr
    assert "a-rotated-key" not in rotated.stderr and KEY not in rotated.stderr
