"""Installing, activating and rolling back the served model, and which model is active,
shared through the database so every worker serves the same one.

An admin's upload or rollback reaches one worker; it records the new active model in
`model_versions`, and every worker's sync thread picks it up within
TRAYLENS_MODEL_SYNC_SECONDS. A restart keeps the admin's choice, unless the deployment's
own model file (TRAYLENS_MODEL_PATH) is new to this database: then that one takes over.

Activation is gated: an uploaded file must carry held-out metrics (model.export
record_metrics writes `metrics.held_out`) no worse than the active model's on the headline
figures both carry (GATE below, each with a small tolerance for evaluation noise), else 409
`model_not_better` with the comparison, unless the admin forces it (recorded). Rollback is
not gated: it returns to a model that was served before.
"""
from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from serve.core.errors import ApiError
from serve.core.metrics import ServiceMetrics
from serve.core.settings import Settings
from serve.core.storage import sha256_hex
from serve.db.session import transaction
from serve.db.tables.core import ModelVersion
from serve.schemas.base import utc_iso
from serve.services.model_registry import LoadedModel, ModelRegistry, load_model

log = logging.getLogger("traylens")


@dataclass(frozen=True)
class GateFigure:
    """A headline figure the gate compares: which way is better, and the noise it forgives."""

    key: str
    higher_is_better: bool
    tolerance: float  # in the figure's own unit


# The headline figures (model.evaluate.headline keys). Tolerances: about a tenth of
# each figure's 95% interval on the shipped held-out sets (mAP CI +-0.07, menu +-0.01).
GATE = (
    GateFigure("mealtray_map50", True, 0.01),       # mAP@0.5, absolute
    GateFigure("ecustfd_grams_mae_pct", False, 0.5),  # grams error, percentage points
    GateFigure("menu_accuracy", True, 0.005),       # menu-mode accuracy, absolute
)


class ModelNotBetter(ApiError):
    """409 with the figure-by-figure comparison in the body."""

    def __init__(self, detail: str, comparison: dict[str, Any]) -> None:
        super().__init__(409, "model_not_better", detail)
        self.comparison = comparison

    def body(self) -> dict[str, Any]:
        """The error plus the comparison."""
        return {**super().body(), "comparison": self.comparison}


def held_out(metrics: dict[str, Any] | None) -> dict[str, float]:
    """The finite held-out headline figures a model file carries."""
    figures = (metrics or {}).get("held_out") or {}
    return {k: float(v) for k, v in figures.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def compare(new: dict[str, Any] | None, active: dict[str, Any] | None) -> dict[str, Any]:
    """The gate's verdict: each GATE figure both files carry, and whether the new one passes.

    A new file without any GATE figure fails; an active file without any (a dev model) lets
    anything with metrics pass.
    """
    mine, theirs = held_out(new), held_out(active)
    rows: list[dict[str, Any]] = []
    for fig in GATE:
        if fig.key not in mine or fig.key not in theirs:
            continue
        delta = mine[fig.key] - theirs[fig.key]
        worse = (-delta if fig.higher_is_better else delta) > fig.tolerance + 1e-12
        rows.append({"metric": fig.key, "active": theirs[fig.key], "new": mine[fig.key],
                     "delta": delta, "higher_is_better": fig.higher_is_better,
                     "tolerance": fig.tolerance, "worse": worse})
    has_any = any(fig.key in mine for fig in GATE)
    reason: str | None
    if not has_any:
        reason = "the new model carries no held-out metrics (model.export --record-metrics)"
    elif any(r["worse"] for r in rows):
        reason = "worse than the active model on " + ", ".join(
            str(r["metric"]) for r in rows if r["worse"])
    else:
        reason = None
    return {"passed": reason is None, "reason": reason, "figures": rows}


def active_record(session: Session) -> ModelVersion | None:
    """The model marked active most recently."""
    return session.scalar(select(ModelVersion).where(ModelVersion.active.is_(True))
                          .order_by(ModelVersion.loaded_at.desc()).limit(1))


def record_active(session: Session, loaded: LoadedModel, gate: dict[str, Any] | None = None,
                  forced: bool = False) -> None:
    """Mark this model as the one every worker should serve (with its gate verdict)."""
    session.execute(update(ModelVersion).where(ModelVersion.active.is_(True))
                    .values(active=False))
    session.add(ModelVersion(sha256=loaded.sha256, path=str(loaded.path),
                             version=loaded.version, active=True, gate=gate, forced=forced))


def startup_model(factory: sessionmaker[Session], deployed: LoadedModel,
                  intra_op_threads: int = 0) -> LoadedModel:
    """The model to serve at startup: the recorded active one, or a newly deployed file."""
    with transaction(factory) as session:
        seen = session.scalar(select(ModelVersion.id)
                              .where(ModelVersion.sha256 == deployed.sha256).limit(1))
        if seen is None:
            record_active(session, deployed)
            return deployed
        row = active_record(session)
        if row is None or row.sha256 == deployed.sha256:
            return deployed
        path = Path(row.path)
    try:
        return load_model(path, intra_op_threads=intra_op_threads)
    except ApiError as exc:  # the recorded file vanished: serve the deployed one, say why
        log.warning("recorded active model %s unusable (%s); serving %s", path, exc.detail,
                    deployed.path)
        return deployed


def sync_once(factory: sessionmaker[Session], registry: ModelRegistry,
              metrics: ServiceMetrics, intra_op_threads: int = 0) -> bool:
    """Switch to the recorded active model if this worker serves another; True if switched.
    Not while this worker's own swap is between its registry and its record."""
    with registry.changing:
        with factory() as session:
            row = active_record(session)
            target = (row.sha256, Path(row.path)) if row is not None else None
        if target is None or target[0] == registry.active.sha256:
            return False
        earlier = next((m for m in registry.history if m.sha256 == target[0]), None)
        loaded = earlier or load_model(target[1], intra_op_threads=intra_op_threads)
        registry.activate(loaded)
    metrics.set_model(loaded.version, loaded.sha256)
    log.info("switched to model %s recorded by another worker", loaded.version)
    return True


class ModelSync:
    """A daemon thread running sync_once every `interval` seconds until stopped."""

    def __init__(self, interval: float, factory: sessionmaker[Session],
                 registry: ModelRegistry, metrics: ServiceMetrics, threads: int = 0) -> None:
        self._stop = threading.Event()
        self._args = (factory, registry, metrics, threads)
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True,
                                        name="traylens-model-sync")

    def _run(self, interval: float) -> None:
        """Poll; a failed poll is logged and retried, never fatal."""
        while not self._stop.wait(interval):
            try:
                sync_once(*self._args)
            except Exception:  # a DB hiccup or a bad file must not kill the thread
                log.exception("model sync failed; retrying in %.0f s", interval)

    def start(self) -> None:
        """Begin polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=10)


def model_info(loaded: LoadedModel) -> dict[str, Any]:
    """Version, labels with their food ids, metrics and provenance of a loaded model."""
    meta = loaded.model.meta
    return {
        "version": meta.version,
        "sha256": loaded.sha256,
        "loaded_at": utc_iso(loaded.loaded_at),
        "fingerprint": meta.fingerprint,
        "input_size": list(meta.input_size),
        "labels": [{"index": i, "label": label, "food_id": food_id}
                   for i, (label, food_id) in enumerate(zip(meta.labels, meta.food_ids,
                                                            strict=True))],
        "metrics": meta.metrics,
        "embedding_dim": meta.embedding_dim,
        "flip_test": meta.flip_test,  # each photo is also run mirrored (twice the network time)
        "portion_calibrated_labels": sorted(meta.portion),
    }


def active_info(registry: ModelRegistry) -> dict[str, Any]:
    """The active model and the ones a rollback would return to (newest last)."""
    info = model_info(registry.active)
    info["previous"] = [{"version": m.version, "sha256": m.sha256} for m in registry.history]
    return info


def _record(factory: sessionmaker[Session], metrics: ServiceMetrics, loaded: LoadedModel,
            gate: dict[str, Any] | None = None, forced: bool = False) -> None:
    """Record the active model (other workers follow it; it survives restarts)."""
    with transaction(factory) as session:
        record_active(session, loaded, gate, forced)
    metrics.set_model(loaded.version, loaded.sha256)


def install(data: bytes, *, settings: Settings, registry: ModelRegistry,
            factory: sessionmaker[Session], metrics: ServiceMetrics,
            force: bool = False, on_activated: Callable[[], object] | None = None
            ) -> dict[str, Any]:
    """Save an uploaded ONNX file under its hash, load and test it, gate it on its held-out
    metrics (409 model_not_better unless forced), then swap it in atomically (requests in
    flight finish on the old one), record it with the gate's verdict and call
    `on_activated` (the API enqueues the re-analysis of recent photos)."""
    settings.model_dir.mkdir(parents=True, exist_ok=True)
    path = settings.model_dir / f"{sha256_hex(data)}.onnx"
    if not path.exists():
        tmp = path.with_suffix(".uploading")
        tmp.write_bytes(data)
        tmp.replace(path)
    loaded = load_model(path, intra_op_threads=settings.intra_op_threads)
    gate = compare(loaded.model.meta.metrics, registry.active.model.meta.metrics)
    gate["active_version"] = registry.active.version
    if not gate["passed"] and not force:
        raise ModelNotBetter(f"not activated: {gate['reason']}; send force=true to activate "
                             "it anyway", gate)
    forced = not gate["passed"]
    if forced:
        log.warning("admin forced model %s: %s", loaded.version, gate["reason"])
    with registry.changing:
        registry.activate(loaded)
        _record(factory, metrics, loaded, gate, forced)
    if on_activated is not None:
        on_activated()
    return {**model_info(loaded), "gate": {**gate, "forced": forced}}


def rollback(*, registry: ModelRegistry, factory: sessionmaker[Session],
             metrics: ServiceMetrics, on_activated: Callable[[], object] | None = None
             ) -> dict[str, Any]:
    """Return to the previous model (409 when there is none), record it and call
    `on_activated`."""
    with registry.changing:
        loaded = registry.rollback()
        _record(factory, metrics, loaded)
    if on_activated is not None:
        on_activated()
    return model_info(loaded)
