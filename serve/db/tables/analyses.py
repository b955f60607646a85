"""Analyses and their items: one analysed photo, one row per food on it."""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from serve.db.base import Base, enum_check, new_id, utcnow


class Provenance(enum.StrEnum):
    """Where an item's food and grams come from."""

    MODEL = "model_estimate"
    DATABASE = "database_value"
    USER = "user_correction"


class MealState(enum.StrEnum):
    """A tray photographed before or after eating."""

    BEFORE = "before"
    AFTER = "after"


class MealSource(enum.StrEnum):
    """How a meal was logged: an analysed photo, or food ids and grams sent by hand."""

    PHOTO = "photo"
    MANUAL = "manual"


class ReanalysisStatus(enum.StrEnum):
    """Where one analysis stands in the re-analysis for one model activation."""

    CLAIMED = "claimed"  # a worker is on it (until lease_until)
    DONE = "done"  # items replaced by the activated model's
    SKIPPED = "skipped"  # left as it was (reason says why)


class CorrectionAction(enum.StrEnum):
    """What a user did to an analysed item (item_corrections.action)."""

    PATCH = "patch"
    ADD = "add"
    REMOVE = "remove"


class Analysis(Base):
    """One logged meal: an analysed photo (who sent it, the context, the scale used) or a
    manual log without a photo (source "manual": no image, no model), with the totals."""

    __tablename__ = "analyses"
    __table_args__ = (
        CheckConstraint("meal_state IS NULL OR meal_state IN ('before', 'after')",
                        name="meal_state_valid"),
        enum_check("source", MealSource),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    canteen_id: Mapped[str | None] = mapped_column(
        ForeignKey("canteens.id", ondelete="CASCADE"), index=True
    )
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # Menus and kiosks are the canteen domain's tables; kept as plain ids here.
    menu_id: Mapped[str | None] = mapped_column(String(32), index=True)
    kiosk_id: Mapped[str | None] = mapped_column(String(32), index=True)
    meal_state: Mapped[str | None] = mapped_column(String(8))
    # Indexed: the re-analysis after a model change takes the photos of the last days.
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                  index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # photo | manual; a manual meal has no image, image size or model version.
    source: Mapped[str] = mapped_column(String(8), default=MealSource.PHOTO.value,
                                        server_default=MealSource.PHOTO.value)
    image_sha256: Mapped[str | None] = mapped_column(ForeignKey("images.sha256"), index=True)
    depth_sha256: Mapped[str | None] = mapped_column(ForeignKey("images.sha256"))
    image_width: Mapped[int | None] = mapped_column(Integer)
    image_height: Mapped[int | None] = mapped_column(Integer)
    model_version: Mapped[str | None] = mapped_column(String(200))
    scale_source: Mapped[str | None] = mapped_column(String(32))
    px_per_cm: Mapped[float | None] = mapped_column(Float)
    totals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    incomplete_nutrients: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The kiosk's tray layout: "registered" (compartments read by place), "not_found" (the
    # photo holds no tray like the reference; plain detector) or None (no layout to use).
    layout: Mapped[str | None] = mapped_column(String(16))
    # Which masks the items' areas and outlines come from: "model" (the model's own) or
    # "refined" (to the food inside its container, settings.refine_masks). None: analysed
    # before this column existed, i.e. the model's. Two photos' areas are compared (a pair's
    # leftover) only when both were measured on the same masks (services.pairing).
    masks: Mapped[str | None] = mapped_column(String(16))
    # Audit of a re-analysis (services.reanalysis): the model version that made the items
    # before they were replaced by another model's, and when (both None: never re-analysed).
    previous_model_version: Mapped[str | None] = mapped_column(String(200))
    reanalyzed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # The current items: an item a user removed (removed_at set) stays in the table for the
    # correction history but is no item of the analysis (payload, totals, diary, pairs).
    items: Mapped[list[AnalysisItem]] = relationship(
        back_populates="analysis",
        primaryjoin="and_(Analysis.id == AnalysisItem.analysis_id, "
                    "AnalysisItem.removed_at.is_(None))",
        order_by="AnalysisItem.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class AnalysisItem(Base):
    """One food on the tray; a user correction overwrites food/grams and keeps the original."""

    __tablename__ = "analysis_items"
    __table_args__ = (
        enum_check("provenance", Provenance),
        UniqueConstraint("analysis_id", "position", name="uq_analysis_items_position"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    analysis_id: Mapped[str] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(200))
    food_id: Mapped[str | None] = mapped_column(String(64), index=True)
    name_ko: Mapped[str | None] = mapped_column(String(300))
    name_en: Mapped[str | None] = mapped_column(String(300))
    confidence: Mapped[float] = mapped_column(Float)
    detection_score: Mapped[float | None] = mapped_column(Float)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    identified_by: Mapped[str] = mapped_column(String(16), default="model")  # model | menu
    # What named the item: class_scores | embedding | none (unidentified) | user.
    evidence: Mapped[str | None] = mapped_column(String(16))
    menu_dish_id: Mapped[str | None] = mapped_column(String(32))
    alternatives: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    box: Mapped[list[float]] = mapped_column(JSON)
    polygon: Mapped[list[list[float]]] = mapped_column(JSON, default=list)
    area_px: Mapped[float | None] = mapped_column(Float)
    area_cm2: Mapped[float | None] = mapped_column(Float)
    # Layout mode: the compartment the item fills and the share of it that is food.
    tray_slot: Mapped[str | None] = mapped_column(String(32))
    fill: Mapped[float | None] = mapped_column(Float)
    # What the box shows (model.infer.refine.container_state): "food" in a container, an
    # "empty" one, or null (neither, or analysed before it was recorded).
    container: Mapped[str | None] = mapped_column(String(8))
    # The region's appearance (L2-normalised, rounded): before/after pairing compares it.
    embedding: Mapped[list[float] | None] = mapped_column(JSON)
    grams: Mapped[float | None] = mapped_column(Float)
    grams_low: Mapped[float | None] = mapped_column(Float)
    grams_high: Mapped[float | None] = mapped_column(Float)
    grams_source: Mapped[str | None] = mapped_column(String(32))
    nutrients: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    provenance: Mapped[str] = mapped_column(String(24), default=Provenance.MODEL.value)
    # The model's estimate, kept when a user corrects the item.
    original: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    corrected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A user removed the item (the model invented it): kept for the history, read by nothing
    # else (Analysis.items and services.pairing leave it out).
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    removed_by_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"))

    analysis: Mapped[Analysis] = relationship(back_populates="items")


class ItemCorrection(Base):
    """One user change to an analysed item - corrected (patch), added or removed - with the
    item as it was before and after (null before an add, null after a remove), who and when."""

    __tablename__ = "item_corrections"
    __table_args__ = (enum_check("action", CorrectionAction),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    analysis_id: Mapped[str] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), index=True
    )
    item_id: Mapped[str] = mapped_column(
        ForeignKey("analysis_items.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(8))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Reanalysis(Base):
    """One analysis in the re-analysis for one model activation (a model_versions row): the
    claim a worker holds while it runs the photo, then what came of it. The unique
    (activation, analysis) pair makes each analysis re-analysed at most once per activation,
    whichever worker gets there first; a claim whose lease ran out may be taken over."""

    __tablename__ = "reanalyses"
    __table_args__ = (
        enum_check("status", ReanalysisStatus),
        UniqueConstraint("model_version_id", "analysis_id", name="uq_reanalyses_analysis"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_version_id: Mapped[str] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    analysis_id: Mapped[str] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(8))
    # Why it was skipped: photo_missing | photo_unreadable | changed | pair_partner | failed.
    reason: Mapped[str | None] = mapped_column(String(32))
    from_version: Mapped[str | None] = mapped_column(String(200))  # the version it had
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_token: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
