"""The served model as GET/POST /v1/model describe it."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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


class ReanalysisSkipped(BaseModel):
    """Qualifying analyses left as they were, by reason."""

    photo_missing: int = Field(description="the store has no bytes for the photo (or its "
                               "depth map)")
    photo_unreadable: int
    changed: int = Field(description="corrected, re-analysed or deleted while it ran")
    pair_partner: int = Field(description="the other photo of its before/after pair does "
                              "not qualify: a pair is re-analysed whole or not at all")
    failed: int = Field(description="the model failed on the photo")


class ReanalysisNotEligible(BaseModel):
    """Photos of the window made with another model that the rules leave alone (one may
    count under several)."""

    corrected: int = Field(description="a user corrected, added or removed an item")
    menu: int = Field(description="made with a menu")
    layout: int = Field(description="made with a kiosk tray layout")
    photo_purged: int = Field(description="the photo is past its retention")


class ReanalysisProgress(BaseModel):
    """Where the re-analysis of stored photos with the active model stands."""

    model_version: str = Field(description="the active model: what photos are moved to")
    model_sha256: str
    activated_at: str
    enabled: bool = Field(description="TRAYLENS_REANALYSIS_LOOKBACK_DAYS > 0")
    lookback_days: int
    since: str | None = Field(description="photos captured from then on are in scope")
    remaining: int = Field(description="qualifying photos no worker has taken yet")
    in_progress: int = Field(description="claimed by a worker now")
    reanalyzed: int = Field(description="done for this activation")
    skipped: ReanalysisSkipped
    not_eligible: ReanalysisNotEligible
