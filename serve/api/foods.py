"""The nutrient database: search foods by name, read one (every key may read)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from serve.deps import CurrentPrincipal
from serve.schemas.foods import FoodPublic
from serve.services import foods as service

router = APIRouter(prefix="/v1/foods", tags=["foods"])


@router.get("", response_model=list[FoodPublic])
def search(
    _: CurrentPrincipal,
    q: Annotated[str, Query(min_length=1, max_length=service.MAX_QUERY,
                            description="Korean or English name, or part of one")],
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 20,
) -> list[dict[str, Any]]:
    """Foods matching q, best first: exact, prefix, word start, substring, all words; then
    canteen recipes, analysed rows, computed rows, company data; then shorter names."""
    return service.search_foods(q, limit)


@router.get("/{food_id}", response_model=FoodPublic)
def get(
    food_id: Annotated[str, Path(min_length=1, max_length=64)], _: CurrentPrincipal
) -> dict[str, Any]:
    """One food with its nutrients per 100 g; 404 names close ids when it is unknown."""
    return service.food_detail(food_id)
