"""Liveness and readiness answers."""
from __future__ import annotations

from pydantic import BaseModel


class Health(BaseModel):
    """The process is up."""

    status: str


class Readiness(BaseModel):
    """Ready or not, with each check's outcome ("ok..." or the reason)."""

    status: str
    checks: dict[str, str]
