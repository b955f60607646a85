"""The web pages for people: GET / (analysis), GET /kiosks/layout (tray layouts), GET /dashboard
(a person's diary), GET /canteen (a canteen's waste), their static files, the vendored
JavaScript libraries (serve/static/vendor, from scripts/vendor-js.sh), the sample photos."""
from __future__ import annotations

import json
import mimetypes
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, JSONResponse

from nutrition_db import NUTRIENTS

PACKAGE_DIR = Path(__file__).resolve().parents[1]
STATIC_DIR = PACKAGE_DIR / "static"
VENDOR_DIR = STATIC_DIR / "vendor"
SAMPLES_DIR = PACKAGE_DIR / "samples"
SAMPLES_MANIFEST = SAMPLES_DIR / "samples.json"

# The page loads nothing from elsewhere: scripts, styles and images come from this service
# (blob: for the chosen photo's preview), so a kiosk without internet shows the same page.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate so a redeployed page never runs against a stale script.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _listed_files(directory: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Plain files directly inside a directory, by name: the only names served from it."""
    if not directory.is_dir():
        return {}
    return {
        path.name: path
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix.lower() in suffixes
    }


@lru_cache(maxsize=1)
def static_files() -> dict[str, Path]:
    """The page's own files (served by name only, so no path can escape the folder)."""
    return _listed_files(STATIC_DIR, (".html", ".js", ".css", ".svg", ".ico", ".png"))


@lru_cache(maxsize=1)
def sample_photos() -> list[dict[str, Any]]:
    """The bundled samples from samples.json, each checked to exist beside it."""
    entries = json.loads(SAMPLES_MANIFEST.read_text(encoding="utf-8"))
    photos = _listed_files(SAMPLES_DIR, (".jpg", ".jpeg", ".png", ".webp"))
    missing = [entry["file"] for entry in entries if entry["file"] not in photos]
    if missing:
        raise RuntimeError(f"samples.json names photos that are not in {SAMPLES_DIR}: {missing}")
    return [{**entry, "url": f"/samples/{entry['file']}"} for entry in entries]


@lru_cache(maxsize=1)
def vendor_files() -> dict[str, Path]:
    """Third-party scripts vendored at build time, each with its licence beside it."""
    return _listed_files(VENDOR_DIR, (".js", ".md"))


def _file_response(path: Path) -> FileResponse:
    """A file with the page's security and caching headers."""
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix == ".js":
        media_type = "text/javascript"
    return FileResponse(path, media_type=media_type, headers=PAGE_HEADERS)


@router.get("/")
def index() -> FileResponse:
    """The analysis page."""
    return _file_response(static_files()["index.html"])


@router.get("/kiosks/layout")
def layout_page() -> FileResponse:
    """The tray layout editor: an admin draws a kiosk's compartments on its empty-tray photo."""
    return _file_response(static_files()["layout.html"])


@router.get("/dashboard")
def dashboard_page() -> FileResponse:
    """A person's dashboard: days against targets, trends, nutrients against KDRI/DRI,
    habits with their evidence, most-left dishes."""
    return _file_response(static_files()["dashboard.html"])


@router.get("/canteen")
def canteen_page() -> FileResponse:
    """A canteen's waste by dish and by day, served vs eaten per dish, participation."""
    return _file_response(static_files()["canteen.html"])


@router.get("/static/vendor/{name}")
def vendor_file(name: str) -> FileResponse:
    """A vendored library (Chart.js) or its licence."""
    path = vendor_files().get(name)
    if path is None:
        raise HTTPException(status_code=404, detail=f"no vendored file named {name!r}")
    return _file_response(path)


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    """One of the page's scripts, styles or icons."""
    path = static_files().get(name)
    if path is None:
        raise HTTPException(status_code=404, detail=f"no static file named {name!r}")
    return _file_response(path)


@router.get("/samples")
def list_samples() -> JSONResponse:
    """The bundled sample photos the page offers (title, kind, source, url)."""
    return JSONResponse(sample_photos(), headers={"Cache-Control": "no-cache"})


@router.get("/samples/{name}")
def sample_file(name: str) -> FileResponse:
    """One bundled sample photo."""
    if name not in {entry["file"] for entry in sample_photos()}:
        raise HTTPException(status_code=404, detail=f"no sample photo named {name!r}")
    return _file_response(SAMPLES_DIR / name)


@router.get("/page/nutrients")
def nutrient_names() -> JSONResponse:
    """Nutrient keys, units and names in display order, from nutrition_db's one schema."""
    rows = [nutrient._asdict() for nutrient in NUTRIENTS]
    return JSONResponse(rows, headers={"Cache-Control": "no-cache"})
