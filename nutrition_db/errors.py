"""Errors the public API raises for bad input."""
from __future__ import annotations


class UnknownFoodError(LookupError):
    """A food id that is not in the table; .suggestions holds close ids."""

    def __init__(self, food_id: str, suggestions: list[str]) -> None:
        self.food_id = food_id
        self.suggestions = suggestions
        hint = f"; did you mean: {', '.join(suggestions)}" if suggestions else ""
        super().__init__(f"unknown food id {food_id!r}{hint}")

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidAmountError(ValueError):
    """An amount in grams that is not a finite number in [0, MAX_GRAMS]."""
