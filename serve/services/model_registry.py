"""The served ONNX model: loaded once, swapped atomically by an admin, rolled back on demand."""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from serve.core.errors import ApiError
from serve.db.base import utcnow

if TYPE_CHECKING:
    from model.infer.runtime import TrayModel


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model and where it came from."""

    model: TrayModel
    path: Path
    sha256: str
    loaded_at: datetime = field(default_factory=utcnow)

    @property
    def version(self) -> str:
        """The version string from the ONNX metadata."""
        return str(self.model.meta.version)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(path: Path, *, intra_op_threads: int = 0) -> LoadedModel:
    """Load an ONNX file with model.infer.runtime; ApiError 422 when it is no TrayLens model."""
    from model.infer.runtime import ModelFileError, TrayModel

    if not path.is_file():
        raise ApiError(422, "model_missing", f"model file not found: {path}")
    try:
        # No ORT memory arena: with it a worker kept the peak of its largest batch for good
        # (~0.9 GB after one batch of 8); without, memory falls back after each run at no
        # measurable cost in speed (docs/RELIABILITY.md).
        model = TrayModel(path, threads=intra_op_threads or None, memory_arena=False)
        # One run on a small blank photo: a file whose graph cannot run is refused here,
        # before it replaces a working model.
        model.predict([Image.new("RGB", (64, 48), (128, 128, 128))])
    except ModelFileError as exc:
        raise ApiError(422, "model_invalid", f"not a usable TrayLens ONNX model: {exc}") from exc
    except Exception as exc:  # ORT runtime errors have no common base class
        raise ApiError(422, "model_invalid", f"the model fails on a test photo: {exc}") from exc
    return LoadedModel(model=model, path=path, sha256=file_sha256(path))


class ModelRegistry:
    """Holds the active model; requests take a reference, so a swap never disturbs them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: LoadedModel | None = None
        self._previous: list[LoadedModel] = []
        # Held across a swap and its record in the database (services.model_admin), so that
        # the model sync never sees one without the other and swaps back.
        self.changing = threading.RLock()

    @property
    def active(self) -> LoadedModel:
        """The model new requests use; 503 while none is loaded."""
        current = self._active  # one attribute read: atomic under the GIL
        if current is None:
            raise ApiError(503, "model_not_loaded", "no model is loaded yet")
        return current

    @property
    def ready(self) -> bool:
        """True once a model is loaded."""
        return self._active is not None

    def activate(self, loaded: LoadedModel) -> LoadedModel | None:
        """Make a loaded model active; the old one is kept for rollback and returned."""
        with self._lock:
            old = self._active
            if old is not None:
                self._previous.append(old)
            self._active = loaded
            return old

    def rollback(self) -> LoadedModel:
        """Return to the previously active model; 409 when there is none."""
        with self._lock:
            if not self._previous:
                raise ApiError(
                    409, "no_previous_model", "there is no earlier model to roll back to"
                )
            self._active = self._previous.pop()
            return self._active

    @property
    def history(self) -> list[LoadedModel]:
        """Earlier models, oldest first (the rollback stack)."""
        return list(self._previous)
