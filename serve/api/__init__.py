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
    layouts,
    menus,
    models,
    pages,
    pairs,
    users,
    waste,
    webhooks,
)

# Every route of the app, in this order (a static list: each route is visible from here).
ROUTERS = (health, keys, canteens, users, analyze, analyses, models, menus, kiosks, layouts,
           pairs, diary, waste, webhooks, pages)

api_router = APIRouter()
for _module in ROUTERS:
    api_router.include_router(_module.router)
