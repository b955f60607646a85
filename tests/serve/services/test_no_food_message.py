"""The words an analysis without food answers (services.analyses.no_food_message), case by
case, on unsaved rows: no database, no model."""
from __future__ import annotations

import pytest

from serve.db.tables.analyses import Analysis, AnalysisItem
from serve.services.analyses import (
    NO_FOOD_AFTER,
    NO_FOOD_BEFORE,
    NO_FOOD_MANUAL,
    analysis_payload,
    no_food_message,
)

FOUND = ("No food found on this photo{}: 0 items, so every total is 0 because nothing was "
         "found, not because the meal has no nutrients. If the photo does show food, add it "
         "by hand.")


def _analysis(items: int = 0, **fields: str | None) -> Analysis:
    return Analysis(source=fields.pop("source", "photo"), totals={}, items=[
        AnalysisItem(position=n, label="apple", confidence=1.0, box=[]) for n in range(items)],
        **fields)


@pytest.mark.parametrize(("fields", "pair_id", "expected"), [
    ({}, None, FOUND.format("")),
    ({"layout": "registered"}, None,
     FOUND.format(" (every compartment of the kiosk's tray is empty)")),
    ({"layout": "not_found"}, None,
     FOUND.format(" (the kiosk's tray was not found on it either)")),
    ({"meal_state": "before"}, None, FOUND.format("") + NO_FOOD_BEFORE),
    # a before photo paired while it held food, whose items a user then removed
    ({"meal_state": "before"}, "p1", FOUND.format("")),
    ({"meal_state": "after"}, "p1", FOUND.format("") + NO_FOOD_AFTER),
    ({"meal_state": "after"}, None, FOUND.format("")),
    ({"source": "manual"}, None, NO_FOOD_MANUAL),
])
def test_each_case_says_what_the_zeros_mean(fields: dict[str, str], pair_id: str | None,
                                            expected: str) -> None:
    analysis = _analysis(**fields)
    assert no_food_message(analysis, pair_id) == expected
    payload = analysis_payload(analysis, pair_id=pair_id)
    assert (payload["no_food_found"], payload["message"]) == (True, expected)


def test_an_analysis_with_an_item_says_nothing() -> None:
    payload = analysis_payload(_analysis(items=1, meal_state="before"))
    assert (payload["no_food_found"], payload["message"]) == (False, None)
