"""``/docs`` and the design document work without internet access: no asset from a CDN."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from mlsd.report import render_design_document

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
