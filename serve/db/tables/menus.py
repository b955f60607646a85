"""Menu tables: a canteen's menus, their dishes and the enrolled example photos per dish."""
from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from serve.db.base import Base, new_id, utcnow


class Meal(enum.StrEnum):
    """Which meal of the day a menu is for."""

    BREAKFAST = "breakfast"
    LUNCH = "lunch"
    DINNER = "dinner"


class RegionKind(enum.StrEnum):
    """Which part of an enrolment photo shows the dish."""

    IMAGE = "image"
    BOX = "box"
    MASK = "mask"


class Menu(Base):
    """A canteen's dishes for one meal of one day."""

    __tablename__ = "menus"
    __table_args__ = (
        CheckConstraint("meal IN ('breakfast', 'lunch', 'dinner')", name="meal_valid"),
        UniqueConstraint("canteen_id", "date", "meal", name="uq_menus_canteen_date_meal"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    canteen_id: Mapped[str] = mapped_column(
        ForeignKey("canteens.id", ondelete="CASCADE"), index=True
    )
    date: Mapped[dt.date] = mapped_column(Date, index=True)
    meal: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    dishes: Mapped[list[MenuDish]] = relationship(
        back_populates="menu", order_by="MenuDish.position", cascade="all, delete-orphan",
        lazy="selectin",
    )


class MenuDish(Base):
    """One dish of a menu: the food it is, its standard serving and where it sits on the tray."""

    __tablename__ = "menu_dishes"
    __table_args__ = (
        CheckConstraint("serving_g > 0", name="serving_positive"),
        UniqueConstraint("menu_id", "position", name="uq_menu_dishes_position"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    menu_id: Mapped[str] = mapped_column(ForeignKey("menus.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    food_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(300))
    serving_g: Mapped[float] = mapped_column(Float)
    tray_slot: Mapped[str | None] = mapped_column(String(32))

    menu: Mapped[Menu] = relationship(back_populates="dishes")
    enrolments: Mapped[list[Enrolment]] = relationship(
        back_populates="dish", order_by="Enrolment.created_at", cascade="all, delete-orphan",
        lazy="selectin",
    )


class Enrolment(Base):
    """An example photo of a dish (whole image, box or mask) and the model's embedding of it."""

    __tablename__ = "enrolments"
    __table_args__ = (
        CheckConstraint("region IN ('image', 'box', 'mask')", name="region_valid"),
        CheckConstraint("area_px > 0", name="area_positive"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    dish_id: Mapped[str] = mapped_column(
        ForeignKey("menu_dishes.id", ondelete="CASCADE"), index=True
    )
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), index=True)
    mask_sha256: Mapped[str | None] = mapped_column(ForeignKey("images.sha256"))
    region: Mapped[str] = mapped_column(String(8))
    box: Mapped[list[float] | None] = mapped_column(JSON)
    # Region area in pixels: the reference for grams relative to the standard serving.
    area_px: Mapped[float] = mapped_column(Float)
    # How area_px was measured (model.infer.enrolment.AREA_SOURCES); a whole-photo area is
    # no food's.
    area_from: Mapped[str] = mapped_column(String(16), server_default="box")
    embedding: Mapped[list[float]] = mapped_column(JSON)
    # Layout mode: the fill (food / compartment area) of the analysed item enrolled; None for
    # a photo upload. The dish's standard fill is learned from these (services.layout_mode).
    fill: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Embeddings of another model are not comparable: re-embedded when the model changes.
    model_version: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    dish: Mapped[MenuDish] = relationship(back_populates="enrolments")
