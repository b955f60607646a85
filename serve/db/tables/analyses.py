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


class Analysis(Base):
    """One analysed photo: who sent it, the context, the scale used and the totals."""

    __tablename__ = "analyses"
    __table_args__ = (
        CheckConstraint("meal_state IS NULL OR meal_state IN ('before', 'after')",
                        name="meal_state_valid"),
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
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), index=True)
    depth_sha256: Mapped[str | None] = mapped_column(ForeignKey("images.sha256"))
    image_width: Mapped[int] = mapped_column(Integer)
    image_height: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str] = mapped_column(String(200))
    scale_source: Mapped[str | None] = mapped_column(String(32))
    px_per_cm: Mapped[float | None] = mapped_column(Float)
    totals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    incomplete_nutrients: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The kiosk's tray layout: "registered" (compartments read by place), "not_found" (the
    # photo holds no tray like the reference; plain detector) or None (no layout to use).
    layout: Mapped[str | None] = mapped_column(String(16))

    items: Mapped[list[AnalysisItem]] = relationship(
        back_populates="analysis",
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

    analysis: Mapped[Analysis] = relationship(back_populates="items")
