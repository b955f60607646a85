"""Activation is gated on held-out metrics: worse or missing -> 409 unless forced (recorded);
rollback stays one call. Real model files: the shipped one and copies whose metadata
metrics are rewritten."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from serve.db.tables.core import ModelVersion
from serve.services.model_admin import GATE, compare
from serve.services.model_registry import LoadedModel
from tests.serve.conftest import Service, model_variant

pytest.importorskip("onnx", reason="writing model variants needs the onnx package")


def _variant(model: LoadedModel, folder: Path, name: str,
             held_out: dict[str, float] | None, **shift: float) -> bytes:
    """The shipped network under a new version whose held-out figures are shifted by `shift`
    (held_out=None: a file without metrics)."""

    def edit(meta: dict[str, Any]) -> None:
        meta["version"] = f"{meta['version']}+{name}"
        if held_out is None:
            meta["metrics"] = {}
        else:
            figures = dict(held_out)
            for key, delta in shift.items():
                figures[key] += delta
            meta["metrics"] = {"evaluated_file": f"{name}.onnx", "held_out": figures}

    return model_variant(model, folder / f"{name}.onnx", edit).read_bytes()


@pytest.fixture(scope="module")
def shipped_figures(loaded_model: LoadedModel) -> dict[str, float]:
    figures = loaded_model.model.meta.metrics.get("held_out") or {}
    if not all(g.key in figures for g in GATE):
        pytest.skip("the test model carries no held-out headline (a dev model)")
    return dict(figures)


def _upload(service: Service, data: bytes, force: bool = False) -> Any:
    return service.client.post("/v1/model", params={"force": "true"} if force else {},
                               files={"model": ("m.onnx", data)}, headers=service.admin)


def _active(service: Service) -> str:
    return str(service.ok(service.client.get("/v1/model", headers=service.admin))["version"])


def test_compare_rule() -> None:
    active = {"held_out": {"mealtray_map50": 0.88, "ecustfd_grams_mae_pct": 13.0,
                           "menu_accuracy": 0.90, "menu_ece": 0.03}}

    def with_(**changes: float) -> dict[str, Any]:
        return {"held_out": {**active["held_out"], **changes}}

    assert compare(with_(), active)["passed"]
    assert compare(with_(mealtray_map50=0.875), active)["passed"]  # within 0.01
    assert compare(with_(ecustfd_grams_mae_pct=13.4), active)["passed"]  # within 0.5 pp
    worse = compare(with_(mealtray_map50=0.86, ecustfd_grams_mae_pct=12.0), active)
    assert not worse["passed"] and "mealtray_map50" in worse["reason"]
    assert [r["metric"] for r in worse["figures"] if r["worse"]] == ["mealtray_map50"]
    assert not compare(with_(ecustfd_grams_mae_pct=14.0), active)["passed"]  # error up 1 pp
    assert not compare(with_(menu_accuracy=0.89), active)["passed"]
    assert compare(with_(menu_ece=0.5), active)["passed"]  # not a gated figure
    assert not compare({}, active)["passed"] and not compare(None, active)["passed"]
    # Only figures both carry are compared; an active dev model without metrics gates nothing.
    assert compare({"held_out": {"mealtray_map50": 0.9}}, active)["passed"]
    assert compare(with_(), {})["passed"] and compare(with_(), {})["figures"] == []


def test_worse_or_missing_metrics_are_refused_unless_forced(
    service: Service, loaded_model: LoadedModel, shipped_figures: dict[str, float],
    tmp_path: Path,
) -> None:
    old = _active(service)
    worse = _variant(loaded_model, tmp_path, "worse", shipped_figures, mealtray_map50=-0.05)
    refused = _upload(service, worse)
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["error"] == "model_not_better" and "mealtray_map50" in body["detail"]
    rows = {r["metric"]: r for r in body["comparison"]["figures"]}
    assert set(rows) == {g.key for g in GATE}
    assert rows["mealtray_map50"]["worse"] and rows["mealtray_map50"]["delta"] == \
        pytest.approx(-0.05)
    assert not rows["menu_accuracy"]["worse"]
    assert _active(service) == old

    bare = _variant(loaded_model, tmp_path, "bare", None)
    missing = _upload(service, bare)
    assert missing.status_code == 409 and "no held-out metrics" in missing.json()["detail"]
    assert _active(service) == old

    forced = service.ok(_upload(service, worse, force=True), 201)
    assert forced["version"] == f"{old}+worse" and forced["gate"]["forced"] is True
    assert _active(service) == forced["version"]
    factory = service.client.app.state.session_factory  # type: ignore[attr-defined]
    with factory() as session:
        row = session.scalars(select(ModelVersion).where(ModelVersion.active.is_(True))).one()
        assert row.forced is True and row.gate and row.gate["passed"] is False
    rolled = service.ok(service.client.post("/v1/model/rollback", headers=service.admin))
    assert rolled["version"] == old == _active(service)  # one call back


def test_a_better_or_equal_model_activates_without_force(
    service: Service, loaded_model: LoadedModel, shipped_figures: dict[str, float],
    tmp_path: Path,
) -> None:
    old = _active(service)
    better = _variant(loaded_model, tmp_path, "better", shipped_figures, mealtray_map50=0.02,
                      ecustfd_grams_mae_pct=-1.0)
    done = service.ok(_upload(service, better), 201)
    assert done["gate"]["passed"] is True and done["gate"]["forced"] is False
    assert done["gate"]["active_version"] == old
    # A little worse than the now active one, within the tolerance: still activated.
    noise = _variant(loaded_model, tmp_path, "noise", shipped_figures, mealtray_map50=0.015,
                     ecustfd_grams_mae_pct=-0.7)
    assert service.ok(_upload(service, noise), 201)["version"] == f"{old}+noise"
    service.ok(service.client.post("/v1/model/rollback", headers=service.admin))
    service.ok(service.client.post("/v1/model/rollback", headers=service.admin))
    assert _active(service) == old
