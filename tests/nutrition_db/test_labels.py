"""The label map: order, kinds, and that every mapped id exists."""
from __future__ import annotations

import json

import pytest

import nutrition_db as ndb
from nutrition_db.labels import LabelMapError, parse_label_map, validate_label_map
from nutrition_db.paths import LABEL_MAP_PATH

EXPECTED = ["Plate", "Starter", "Bread", "Drink", "Yogurt", "Dessert", "Fruit", "Cheese",
            "apple", "banana", "bread", "bun", "doughnut", "egg", "fired_dough_twist", "grape",
            "lemon", "litchi", "mango", "mooncake", "orange", "peach", "pear", "plum", "qiwi",
            "sachima", "tomato", "coin"]


def test_shipped_label_map_is_valid_and_ordered() -> None:
    lm = ndb.label_map()
    validate_label_map(lm)
    assert lm.labels == EXPECTED
    assert {lm.entry(x).kind for x in EXPECTED[:8]} == {"course"}
    assert lm.food_id("coin") is None and lm.entry("coin").kind == "reference"
    assert lm.food_id("apple") == "sr28:09003"
    assert ndb.get_food(lm.food_id("Bread") or "").name_en == "Bread, French or Vienna"
    assert json.loads(lm.to_json())[0]["label"] == "Plate"
    with pytest.raises(KeyError, match="unknown label"):
        lm.entry("pizza")


def _doc(entries: list[dict[str, object]]) -> dict[str, object]:
    return {"labels": entries}


def _entry(label: str, food_id: str | None, kind: str = "food") -> dict[str, object]:
    return {"label": label, "food_id": food_id, "kind": kind, "note": "why"}


@pytest.mark.parametrize(("entries", "message"), [
    ([_entry("apple", "sr28:09003"), _entry("apple", "sr28:09040")], "unique"),
    ([_entry("apple", "sr28:99999")], "not in the table"),
    ([_entry("apple", None)], "not in the table"),
    ([_entry("coin", "sr28:09003", "reference")], "reference"),
    ([_entry("apple", "sr28:09003", "fruit")], "kind"),
    ([_entry("", "sr28:09003")], "unique non-empty"),
])
def test_validation_catches_broken_maps(entries: list[dict[str, object]], message: str) -> None:
    with pytest.raises(LabelMapError, match=message):
        validate_label_map(parse_label_map(_doc(entries)))


def test_structure_errors() -> None:
    with pytest.raises(LabelMapError, match="'labels' list"):
        parse_label_map([])
    with pytest.raises(LabelMapError, match="exactly"):
        parse_label_map({"labels": [{"label": "x"}]})
    raw = json.loads(LABEL_MAP_PATH.read_text(encoding="utf-8"))
    assert [e["label"] for e in raw["labels"]] == EXPECTED
