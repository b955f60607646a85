"""notebooks/retrain.ipynb and explore.ipynb run end to end on tiny parameters (nbclient).

A live service on loopback (uvicorn in a thread, SQLite in a temporary folder) stores a real
analysis of a fixture photo with a user's correction; its `POST /v1/exports` archive feeds
both notebooks; retrain.ipynb fine-tunes the shipped model (init_from its ONNX file) two
epochs at 128x96 on the fixture photos plus the export, then its mask head one epoch, exports
ONNX + INT8 with held-out metrics and the open-set check and registers the file through
`POST /v1/model`, whose gate refuses it (a tiny model is not better).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serve.main import create_app
from serve.services.model_registry import LoadedModel
from tests.serve.conftest import ADMIN_KEY, make_settings

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbmake (dev extra)")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbmake (dev extra)")
uvicorn = pytest.importorskip("uvicorn")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
APPLE, BANANA = "sr28:09003", "sr28:09040"
pytestmark = pytest.mark.slow
TIMEOUT_S = 300  # per cell; each notebook takes well under a minute on 2 cores


@pytest.fixture(scope="module")
def api(loaded_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[str]:
    """The service on a free loopback port."""
    data = tmp_path_factory.mktemp("nb-service")
    settings = make_settings(f"sqlite:///{data / 'traylens.db'}", data, loaded_model,
                             model_sync_seconds=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings, model=loaded_model),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def export_zip(api: str, photo_bytes: dict[str, bytes],
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export holding one analysed photo with a corrected item (food and grams)."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=api, timeout=120) as c:
        canteen = c.post("/v1/canteens", json={"name": "nb"}, headers=admin).json()["id"]
        key = c.post("/v1/keys", json={"name": "k", "role": "kiosk", "canteen_id": canteen},
                     headers=admin).json()["key"]
        kiosk = {"Authorization": f"Bearer {key}"}
        body = c.post("/v1/analyze", files={"image": ("mix.jpg", photo_bytes["mix"])},
                      headers=kiosk).json()
        item = body["items"][0]
        food = BANANA if item["food_id"] == APPLE else APPLE
        fixed = c.patch(f"/v1/analyses/{body['id']}/items/{item['id']}",
                        json={"food_id": food, "grams": 140}, headers=kiosk)
        assert fixed.status_code == 200, fixed.text
        answer = c.post("/v1/exports", json={"format": "coco"}, headers=kiosk)
        assert answer.status_code == 200, answer.text
    path = tmp_path_factory.mktemp("nb-export") / "export.zip"
    path.write_bytes(answer.content)
    return path


def _run(name: str, out: Path, monkeypatch: pytest.MonkeyPatch, **env: str
         ) -> tuple[Any, float]:
    """Execute a notebook in a fresh kernel (cwd notebooks/); returns it and its seconds."""
    for key, value in {"TRAYLENS_NB_TINY": "1", "TRAYLENS_NB_OUT": str(out), **env}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(REPO))
    # The kernel imports this checkout's model/, whatever the environment's install points at.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    start = time.monotonic()
    nbclient.NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb, time.monotonic() - start


def _text(nb: Any) -> str:
    """Everything the code cells printed or returned, as text."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _images(nb: Any) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def test_retrain_notebook_trains_evaluates_exports_and_registers(
    api: str, export_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    loaded_model: LoadedModel,
) -> None:
    from model.export import read_meta

    nb, seconds = _run("retrain.ipynb", tmp_path, monkeypatch, TRAYLENS_EXPORT_ZIP=str(export_zip),
                       TRAYLENS_API_URL=api, TRAYLENS_API_KEY=ADMIN_KEY)
    text = _text(nb)
    assert "export: 1 photos" in text and "(1 corrected)" in text
    for path in (tmp_path / "traylens.onnx", tmp_path / "traylens.int8.onnx"):
        meta = read_meta(path)
        assert meta.metrics["evaluated_file"] == path.name
        assert "mealtray_map50" in meta.metrics["held_out"]
        assert meta.fingerprint.startswith("sha256:")
        # names only when sure, as the shipped model: the borrowed check, fitted on each file's own
        # regions of its training photos (this two-epoch model finds none there: an empty bank)
        assert meta.open_set["thresholds"] == "borrowed" and "bank" in meta.open_set
    training = read_meta(tmp_path / "traylens.onnx").training
    assert training["data"][-1]["kind"] == "coco"
    # Two stages, as the shipped model was made: the recipe fine-tuned from the shipped file,
    # then its mask head alone on the food inside each container.
    first = read_meta(tmp_path / "stage1.onnx").training
    shipped = read_meta(REPO / "model" / "artifacts" / "traylens.onnx")
    assert first["init_from"]["file"] == "traylens.onnx"  # fine-tuned from the shipped one
    assert first["init_from"]["version"] == shipped.version
    assert "train_only" not in first and first["data"][-1]["kind"] == "coco"
    assert training["init_from"]["file"] == "stage1.onnx"
    assert (training["train_only"], training["real_masks"]) == (["mask"], "refined")
    assert "parent: {" in text
    # The gate: a two-epoch model is not better than the shipped one, so it is refused.
    assert "409 model_not_better" in text and "WORSE" in text
    active = httpx.get(f"{api}/v1/model", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert active.json()["version"] == loaded_model.version
    print(f"retrain.ipynb: {seconds:.1f} s")


def test_explore_notebook_draws_the_data_and_the_errors(
    export_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    nb, seconds = _run("explore.ipynb", tmp_path, monkeypatch,
                       TRAYLENS_EXPORT_ZIP=str(export_zip))
    text = _text(nb)
    assert "1 corrected" in text and "corrections changed the food" in text
    assert _images(nb) == 3  # photos, worst items, grams error by food
    print(f"explore.ipynb: {seconds:.1f} s")
