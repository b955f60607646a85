"""Service test fixtures: one loaded model per session, a migrated database per module on
SQLite and PostgreSQL, a running app (lifespan included) and tenants with keys.

Other service tests may use them: `service` gives a TestClient with an admin key and a
helper to make canteens, users and keys; `photo_bytes` real fixture photos.
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from serve.core.settings import REPO_ROOT, Settings, load_settings
from serve.db.session import make_engine
from serve.main import create_app
from serve.services.model_registry import LoadedModel, load_model
from tests.remembering import RememberingTrayModel

POSTGRES_URL = os.environ.get(
    "TRAYLENS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/traylens_test"
)
DEV_MODEL = REPO_ROOT / "var" / "dev" / "traylens-dev.onnx"
ADMIN_KEY = "tl_test_admin_" + "k" * 24
MEALTRAY = "mealtray/labeled/20220308112654_000042_059_0000000001_B______xx_C ({n}).jpg"
ECUSTFD = "ecustfd/JPEGImages/{name}.JPG"


def model_path_for_tests() -> Path:
    """settings.model_path (the shipped model unless TRAYLENS_MODEL_PATH says otherwise);
    before the shipped model exists, the development model."""
    configured = load_settings().model_path
    if configured.is_file():
        return configured
    if DEV_MODEL.is_file():
        return DEV_MODEL
    pytest.skip(f"no model: neither {configured} nor {DEV_MODEL} exists (train/export first)")


# Photos whose output maps the session's model keeps (~1.2 MB each): enough for every
# fixture photo a test module sends again and again.
REMEMBERED_PHOTOS = 64


@pytest.fixture(scope="session")
def loaded_model() -> LoadedModel:
    """The model, loaded once and shared by every app in the session. It answers a photo it
    has already run from memory (tests/remembering.py: the service tests send the same
    fixture photos hundreds of times); tests of memory or time under load use `fresh()`."""
    loaded = load_model(model_path_for_tests())
    model = RememberingTrayModel(loaded.path, limit=REMEMBERED_PHOTOS, memory_arena=False)
    return replace(loaded, model=model)


def _postgres_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL server, dropped afterwards (skips if none)."""
    base = make_engine(POSTGRES_URL)
    try:
        with base.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # no server: skip, saying why
        base.dispose()
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL} ({exc.__class__.__name__}); "
                    "run scripts/test-services.sh")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with base.begin() as conn:
        conn.execute(text(f'create schema "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with base.begin() as conn:
            conn.execute(text(f'drop schema "{schema}" cascade'))
        base.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database per test module, of each supported kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'traylens.db'}"
        return
    yield from _postgres_url()


@dataclass
class Service:
    """A running app and helpers to set up tenants."""

    client: TestClient
    settings: Settings

    @property
    def admin(self) -> dict[str, str]:
        """Headers of the bootstrap admin key."""
        return {"Authorization": f"Bearer {ADMIN_KEY}"}

    def ok(self, response: Any, status: int = 200) -> Any:
        """The JSON of a response that must have this status."""
        assert response.status_code == status, response.text
        return response.json()

    def canteen(self, name: str = "canteen") -> str:
        """A new canteen's id."""
        body = {"name": f"{name}-{uuid.uuid4().hex[:6]}"}
        return str(self.ok(self.client.post("/v1/canteens", json=body, headers=self.admin),
                           201)["id"])

    def key(self, role: str, canteen_id: str | None) -> dict[str, str]:
        """Headers for a new key of this role."""
        body = {"name": f"{role} key", "role": role, "canteen_id": canteen_id}
        created = self.ok(self.client.post("/v1/keys", json=body, headers=self.admin), 201)
        return {"Authorization": f"Bearer {created['key']}"}

    def user(self, headers: dict[str, str], **fields: Any) -> str:
        """A new user created with these headers."""
        return str(self.ok(self.client.post("/v1/users", json=fields, headers=headers),
                           201)["id"])


def make_settings(database_url: str, data_dir: Path, model: LoadedModel, **extra: Any
                  ) -> Settings:
    """Test settings: this database, a temporary data dir, the shared model's file."""
    return load_settings(database_url=database_url, data_dir=data_dir, model_path=model.path,
                         bootstrap_admin_key=ADMIN_KEY, **extra)


def model_variant(model: LoadedModel, path: Path,
                  edit: Callable[[dict[str, Any]], None]) -> Path:
    """Another valid model file: the same network with its TrayLens metadata changed by
    `edit` (a new version, other labels or metrics, another input mean...), written to
    `path` (needs the onnx package)."""
    import onnx

    proto = onnx.load(str(model.path))
    for prop in proto.metadata_props:
        if prop.key == "traylens":
            meta = json.loads(prop.value)
            edit(meta)
            prop.value = json.dumps(meta)
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def service(
    database_url: str, loaded_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The app with its lifespan running (migrations, admin bootstrap), per module and DB."""
    settings = make_settings(database_url, tmp_path_factory.mktemp("data"), loaded_model)
    with TestClient(create_app(settings, model=loaded_model)) as client:
        yield Service(client, settings)


@pytest.fixture(scope="module")
def refining(service: Service, database_url: str,
             loaded_model: LoadedModel) -> Iterator[Service]:
    """A second app on the module's database and photos with TRAYLENS_REFINE_MASKS on: the
    service after an operator turned the setting on."""
    settings = make_settings(database_url, service.settings.data_dir, loaded_model,
                             refine_masks=True, model_sync_seconds=0)
    with TestClient(create_app(settings, model=loaded_model)) as client:
        yield Service(client, settings)


@pytest.fixture(scope="session")
def photo_bytes(fixtures_dir: Path) -> dict[str, bytes]:
    """Real photos: mealtray canteen trays and ECUSTFD plates with a coin."""
    files = {
        "tray": MEALTRAY.format(n=2770), "tray2": MEALTRAY.format(n=2775),
        "tray3": MEALTRAY.format(n=2771),
        "apple": ECUSTFD.format(name="apple003T(1)"), "mix": ECUSTFD.format(name="mix001T(1)"),
    }
    return {name: (fixtures_dir / rel).read_bytes() for name, rel in files.items()}
