"""``/docs`` and the design document work without internet access: no asset from a CDN."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from mlsd.report import render_design_document
from mlsd.serving import ServeSettings, create_app
from mlsd.store.prediction_log import PredictionLog

# an asset a browser would fetch: a script, stylesheet, image or frame source, or a CSS url()
_ASSET = re.compile(
    r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?([^\"'\s>]+)"
    r"|url\(\s*[\"']?([^\"')]+)",
    re.I,
)


def _report_fixtures() -> ModuleType:
    """The report tests' realistic document builder (a conftest, loaded under its own name)."""
    path = Path(__file__).parents[1] / "report" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_report_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assets(html: str) -> list[str]:
    return [a or b for a, b in _ASSET.findall(html)]


def _external(urls: list[str]) -> list[str]:
    return [u for u in urls if re.match(r"(?:https?:)?//", u, re.I)]


def test_docs_page_loads_only_local_assets(client) -> None:
    http, _ = client
    page = http.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text
    assets = _assets(page.text)
    assert _external(assets) == [] and len(assets) >= 2
    kinds = {}
    for url in assets:
        answer = http.get(url)
        assert answer.status_code == 200, url
        kinds[url.rsplit(".", 1)[-1]] = answer.headers["content-type"]
    assert "javascript" in kinds["js"] and kinds["css"].startswith("text/css")
    # the page's spec URL answers too, and FastAPI's CDN pages are off
    assert http.get("/openapi.json").status_code == 200
    assert http.get("/redoc").status_code == 404


def test_docs_is_not_in_the_api_spec(client) -> None:
    http, _ = client
    paths = http.get("/openapi.json").json()["paths"]
    assert "/docs" not in paths and not any(p.startswith("/docs-assets") for p in paths)


def test_design_document_has_no_external_asset(tmp_path: Path) -> None:
    doc = _report_fixtures().make_document()
    html = render_design_document(doc, tmp_path / "design.html").read_text(encoding="utf-8")
    assert _external(_assets(html)) == []
    assert "@import" not in html


# -- in a real browser, with the network cut off ------------------------------------------------


def _chromium() -> str | None:
    # Debian's chromium (never a browser downloaded by a test tool)
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _rendered_dom(browser: str, url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, every non-local host unreachable.

    Host names other than 127.0.0.1 resolve to nothing and any other traffic goes to a dead
    proxy, so a page that still needs a CDN renders without its scripts.
    """
    command = [
        browser,
        "--headless",
        "--no-sandbox",  # tests may run as root in a container
        "--disable-gpu",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",  # loopback bypasses a proxy by default, nothing else does
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    return done.stdout


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed")
def test_docs_renders_swagger_ui_in_a_browser_without_network(flights, tmp_path: Path, live_server) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}")
    app = create_app(ServeSettings(model=flights.model, model_name="m", model_version=1, log=log))
    browser = _chromium()
    assert browser is not None
    with live_server(app) as base:
        dom = _rendered_dom(browser, f"{base}/docs", tmp_path / "profile")
    # Swagger UI read the spec and drew its operations (it says "Unable to render this definition"
    # when it cannot read the OpenAPI version, as Swagger UI 4 does with FastAPI's 3.1)
    assert 'class="swagger-ui"' in dom, dom[:2000]
    assert "Unable to render this definition" not in dom
    assert 'id="operations-default-predict_v1_predict_post"' in dom and "opblock-post" in dom
