"""The page router: the page, its static files and the bundled samples, over HTTP."""
from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from nutrition_db import NUTRIENTS
from serve.api import pages


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(pages.router)
    with TestClient(app) as test_client:
        yield test_client


def test_index_is_html_with_a_strict_content_policy(client: TestClient) -> None:
    answer = client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "<title>TrayLens" in answer.text
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy


def test_page_references_only_its_own_files(client: TestClient) -> None:
    """Nothing may come from a CDN: every src/href is local and answers 200."""
    page = client.get("/").text
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert refs, "the page should load a script and a stylesheet"
    for ref in refs:
        assert not re.match(r"^(https?:)?//", ref), f"external reference {ref}"
        if ref.startswith("/static/"):
            assert client.get(ref).status_code == 200, ref
    script = client.get("/static/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "http://" not in script.text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in script.text


def test_layout_page_is_html_with_only_its_own_files(client: TestClient) -> None:
    """GET /kiosks/layout: the tray layout editor, under the same policy, nothing from a CDN."""
    answer = client.get("/kiosks/layout")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', answer.text)
    assert "/static/layout.js" in refs and "/static/layout.css" in refs
    for ref in refs:
        assert not re.match(r"^(https?:)?//", ref), f"external reference {ref}"
        if ref.startswith("/static/"):
            assert client.get(ref).status_code == 200, ref
    script = client.get("/static/layout.js").text
    assert "https://" not in script and "http://" not in script.replace(
        "http://www.w3.org/2000/svg", "")
    assert 'href="/kiosks/layout"' in client.get("/").text, "the main page links to the editor"


@pytest.mark.parametrize("name", ["../settings.py", "..%2Fsettings.py", "missing.js", "app.py"])
def test_static_serves_nothing_outside_its_folder(client: TestClient, name: str) -> None:
    answer = client.get(f"/static/{name}")
    assert answer.status_code == 404


def test_samples_listed_and_are_real_photos(client: TestClient) -> None:
    samples = client.get("/samples").json()
    assert len(samples) >= 2
    kinds = {sample["kind"] for sample in samples}
    assert {"tray", "plate"} <= kinds
    for sample in samples:
        answer = client.get(sample["url"])
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(answer.content))
        image.verify()
        assert min(image.size) >= 300


def test_every_sample_has_an_attribution_line() -> None:
    attribution = (pages.SAMPLES_DIR / "ATTRIBUTION.md").read_text(encoding="utf-8")
    manifest = json.loads(pages.SAMPLES_MANIFEST.read_text(encoding="utf-8"))
    for entry in manifest:
        assert f"| {entry['file']} |" in attribution, entry["file"]


def test_unknown_sample_is_404(client: TestClient) -> None:
    answer = client.get("/samples/nothing.jpg")
    assert answer.status_code == 404
    assert "nothing.jpg" in answer.json()["detail"]


def test_nutrient_names_come_from_the_schema(client: TestClient) -> None:
    rows = client.get("/page/nutrients").json()
    assert [row["key"] for row in rows] == [n.key for n in NUTRIENTS]
    assert all(row["unit"] and row["name_en"] for row in rows)


def test_the_service_app_serves_the_page(tmp_path: Path) -> None:
    """serve.main.create_app includes the page router; the page stays out of the API schema."""
    from serve.core.settings import load_settings
    from serve.main import create_app

    app = create_app(load_settings(data_dir=tmp_path))
    # No `with`: the lifespan (database, model) is not needed to serve files.
    client = TestClient(app)
    assert client.get("/").headers["content-type"].startswith("text/html")
    assert client.get("/samples").status_code == 200
    paths = app.openapi()["paths"]
    assert "/v1/analyze" in paths
    assert not {"/", "/samples", "/static/{name}", "/page/nutrients", "/kiosks/layout"} & set(paths)


@pytest.mark.parametrize("path, script", [("/dashboard", "/static/dashboard.js"),
                                          ("/canteen", "/static/canteen.js")])
def test_dashboard_pages_load_only_local_files(client: TestClient, path: str,
                                               script: str) -> None:
    """GET /dashboard and /canteen: HTML under the strict policy; Chart.js and the page
    scripts come from this service, nothing from a CDN."""
    answer = client.get(path)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', answer.text)
    assert {"/static/vendor/chart.umd.min.js", "/static/charts.js", script} <= set(refs)
    for ref in refs:
        assert not re.match(r"^(https?:)?//", ref), f"external reference {ref}"
        if ref.startswith("/static/"):
            got = client.get(ref)
            assert got.status_code == 200, ref
            assert "content-security-policy" in got.headers


def test_vendored_chart_library_matches_its_pins(client: TestClient) -> None:
    """serve/static/vendor holds what scripts/vendor-js.sh pins (file sha256), with its
    licence; only those names are served from the folder."""
    script = (pages.PACKAGE_DIR.parent / "scripts" / "vendor-js.sh").read_text()
    pins = dict(re.findall(r"^(CHARTJS_\w+_SHA256)=([0-9a-f]{64})$", script, re.M))
    for name, pin in [("chart.umd.min.js", "CHARTJS_JS_SHA256"),
                      ("chart.js-LICENSE.md", "CHARTJS_LICENSE_SHA256")]:
        answer = client.get(f"/static/vendor/{name}")
        assert answer.status_code == 200, name
        assert hashlib.sha256(answer.content).hexdigest() == pins[pin], name
    assert client.get("/static/vendor/chart.umd.min.js").text.startswith("/*!\n * Chart.js v")
    assert "MIT License" in client.get("/static/vendor/chart.js-LICENSE.md").text
    assert client.get("/static/vendor/..%2Fapp.js").status_code == 404
    assert client.get("/static/vendor/nope.js").status_code == 404
