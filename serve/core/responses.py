"""The service's JSON response: every number rounded in this one place (docs/API.md).

- portions in grams (keys in GRAM_KEYS: an item's `grams` {value, low, high}, totals'
  `grams`, a pair's served/eaten/left grams, a dish's serving): to 0.1 g;
- every other number (nutrients, scores, fractions, pixels, ...): to 4 significant digits
  but never coarser than 0.01 (455.52000000000004 -> 455.52, 0.042 -> 0.042,
  0.123456 -> 0.1235).

Float noise of sums (455.52000000000004) never reaches a client, and a number means the
same on every route.
"""
from __future__ import annotations

import math
from typing import Any

from fastapi.responses import JSONResponse

GRAM_KEYS = frozenset({"grams", "value", "low", "high", "before_g", "served_g", "eaten_g",
                       "leftover_g", "serving_g"})


def round_number(value: float, key: str | None) -> float:
    """One number as answered, by what it measures (its JSON key)."""
    if not math.isfinite(value) or value == 0:
        return value
    if key in GRAM_KEYS:
        return round(value, 1)
    digits = max(2, 3 - math.floor(math.log10(abs(value))))
    return round(value, digits)


def rounded(content: Any, key: str | None = None) -> Any:
    """`content` with every float rounded (a list's numbers by the key holding the list)."""
    if isinstance(content, float):
        return round_number(content, key)
    if isinstance(content, dict):
        return {k: rounded(v, k) for k, v in content.items()}
    if isinstance(content, list | tuple):
        return [rounded(v, key) for v in content]
    return content


class ApiJSONResponse(JSONResponse):
    """JSON with the service's rounding (the app's default response class)."""

    def render(self, content: Any) -> bytes:
        """Round, then encode as FastAPI's JSONResponse does."""
        return super().render(rounded(content))
