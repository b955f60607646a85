"""Before/after pairs: Create, Close and Public with the eaten/left result."""
from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from serve.services.pairing import PairedItem


class PairCreate(BaseModel):
    """Pair a before photo with (optionally) its after photo, by analysis id."""

    model_config = ConfigDict(extra="forbid")
    before_analysis_id: str = Field(min_length=1, max_length=32)
    after_analysis_id: str | None = Field(None, min_length=1, max_length=32)


class PairClose(BaseModel):
    """The after photo that closes an open pair."""

    model_config = ConfigDict(extra="forbid")
    after_analysis_id: str = Field(min_length=1, max_length=32)


class PairResultPublic(BaseModel):
    """Per item and tray totals of served, eaten and left grams, and nutrients eaten."""

    items: list[PairedItem]
    served_g: float
    eaten_g: float
    leftover_g: float
    leftover_pct: float | None
    eaten_nutrients: dict[str, float | None]
    incomplete_nutrients: list[str]


class PairPublic(BaseModel):
    """A pair; `result` is null until the after photo is in."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    canteen_id: str | None
    kiosk_id: str | None
    user_id: str | None
    before_analysis_id: str
    after_analysis_id: str | None
    before_at: dt.datetime
    after_at: dt.datetime | None
    result: PairResultPublic | None = None
