"""Before/after pairs: a tray's before photo and its after photo."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    DateTime,
    ForeignKey,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from serve.db.base import Base, new_id, utcnow


class MealPair(Base):
    """A tray's before photo and, once taken, its after photo; results are computed on read
    so that corrections to either photo's items always apply."""

    __tablename__ = "meal_pairs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    canteen_id: Mapped[str | None] = mapped_column(
        ForeignKey("canteens.id", ondelete="CASCADE"), index=True
    )
    kiosk_id: Mapped[str | None] = mapped_column(
        ForeignKey("kiosks.id", ondelete="SET NULL"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    before_analysis_id: Mapped[str] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), unique=True
    )
    after_analysis_id: Mapped[str | None] = mapped_column(
        ForeignKey("analyses.id", ondelete="SET NULL"), unique=True
    )
    before_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    after_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
