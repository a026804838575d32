"""Row and body limits agree: the default body holds the row limit; one that cannot is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlsd.cli import app as cli
from mlsd.data import Schema
from mlsd.errors import ServingError
from mlsd.serving import ServeSettings
from mlsd.serving.validation import body_limit_for, row_bytes

DESIGN = Path(__file__).parents[2] / "examples" / "flights" / "design.yaml"


def _settings(flights, **overrides) -> ServeSettings:
    return ServeSettings(
        model=flights.model, model_name="flight-delay", model_version=1, log=None, **overrides
    )


def test_row_bytes_is_the_largest_build_row(flights) -> None:
    schema = Schema.from_dict(flights.model.schema)
    cols = flights.model.input_columns
    sent = [json.dumps({c: row[c] for c in cols}) for row in flights.rows]
    # the held-out rows are no larger than the estimate (their longest float reprs included)
    assert max(len(s) for s in sent) <= row_bytes(schema, cols)


def test_the_default_body_limit_holds_the_row_limit(make_client, flights) -> None:
    assert _settings(flights).max_body_bytes >= body_limit_for(
        Schema.from_dict(flights.model.schema), flights.model.input_columns, 10_000
    )
    rows = [{c: r[c] for c in flights.model.input_columns} for r in flights.rows]
    with make_client(max_rows_per_request=2_000) as (http, _):
        body = json.dumps({"inputs": (rows * 20)[:2_000]}).encode()
        assert len(body) > 0.5 * http.app.state.service.settings.max_body_bytes  # a body near the limit
        r = http.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["predictions"]) == 2_000


def test_a_body_limit_that_cannot_hold_the_row_limit_is_refused(flights) -> None:
    with pytest.raises(ServingError) as info:
        _settings(flights, max_body_bytes=1_000_000, max_rows_per_request=10_000)
    assert info.value.field == "max_body_bytes" and "at least" in (info.value.expected or "")
    assert (
        _settings(flights, max_body_bytes=1_000_000, max_rows_per_request=1_000).max_body_bytes == 1_000_000
    )


def test_validate_refuses_a_body_limit_below_the_row_limit(tmp_path: Path) -> None:
    text = re.sub(
        r"(?ms)^deployment:.*?(?=^\S)",
        "deployment: {strategy: single, max_body_bytes: 100000, max_rows_per_request: 10000}\n",
        DESIGN.read_text(),
    )
    path = tmp_path / "design.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["validate", "--no-data", str(path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "deployment.max_body_bytes" in output, output
    path.write_text(text.replace("max_rows_per_request: 10000", "max_rows_per_request: 100"))
    result = CliRunner().invoke(cli, ["validate", "--no-data", str(path)])
    assert result.exit_code == 0, result.output
