"""The served model as GET/POST /v1/model describe it."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ModelLabel(BaseModel):
    """One class of the model and the food it stands for."""

    index: int
    label: str
    food_id: str | None


class ModelRef(BaseModel):
    """An earlier model a rollback would return to."""

    version: str
    sha256: str


class ModelInfo(BaseModel):
    """Version, labels with their food ids, metrics and provenance of a loaded model."""

    version: str
    sha256: str
    loaded_at: str
    fingerprint: str
    input_size: list[int]
    labels: list[ModelLabel]
    metrics: dict[str, Any]
    embedding_dim: int
    flip_test: bool  # each photo is also run mirrored (twice the network time)
    portion_calibrated_labels: list[str]
    # Upload answers only: the activation gate's comparison with the model active before.
    gate: dict[str, Any] | None = None


class ActiveModel(ModelInfo):
    """The active model and the ones a rollback would return to (newest last)."""

    previous: list[ModelRef]
