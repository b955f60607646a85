"""HTTP only: one module per resource, each with its `router`; api_router holds them all."""
from __future__ import annotations

from fastapi import APIRouter

from serve.api import (
    analyses,
    analyze,
    canteens,
    diary,
    health,
    keys,
    kiosks,
    menus,
    models,
    pages,
    pairs,
    users,
    waste,
)

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(keys.router)
api_router.include_router(canteens.router)
api_router.include_router(users.router)
api_router.include_router(analyze.router)
api_router.include_router(analyses.router)
api_router.include_router(models.router)
api_router.include_router(menus.router)
api_router.include_router(kiosks.router)
api_router.include_router(pairs.router)
api_router.include_router(diary.router)
api_router.include_router(waste.router)
api_router.include_router(pages.router)
