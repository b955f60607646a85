"""serve.services.menus and .enrolment without a model: relative grams, box checks, label
lookup, box parsing."""
from __future__ import annotations

import pytest

from serve.core.errors import ApiError
from serve.services.enrolment import check_box, parse_box
from serve.services.menus import DishInfo, label_index_for, relative_grams


def _dish(areas: tuple[float, ...], serving: float = 200.0) -> DishInfo:
    return DishInfo("d1", "mfds:D301-022000000-0001", "쌀밥", serving, None, None,
                    len(areas), 0, areas)


def test_relative_grams_hand_checked() -> None:
    # enrolled areas 1000 and 1200 px (mean 1100) for a 200 g serving; the item covers 550 px
    rel = relative_grams(_dish((1000.0, 1200.0)), 550.0)
    assert rel is not None
    assert (rel.grams, rel.low, rel.high) == (100.0, 91.7, 110.0)
    assert rel.source == "relative_to_enrolled_serving"


@pytest.mark.parametrize("areas, item", [((), 500.0), ((1000.0,), None), ((1000.0,), 0.0)])
def test_relative_grams_needs_both_areas(areas: tuple[float, ...], item: float | None) -> None:
    assert relative_grams(_dish(areas), item) is None


def test_label_index_for_first_match() -> None:
    ids = [None, "sr28:09003", "sr28:09200", "sr28:09003"]
    assert label_index_for("sr28:09003", ids) == 1
    assert label_index_for("kfct:사과, 생것", ids) is None


def test_check_box() -> None:
    assert check_box([1, 2, 30, 40], (100, 50)) == (1.0, 2.0, 30.0, 40.0)
    for bad in ([1, 2, 3], [5, 5, 5, 9], [0, 0, 101, 10], [0, 0, float("nan"), 10]):
        with pytest.raises(ApiError) as err:
            check_box(bad, (100, 50))
        assert err.value.status_code == 422 and err.value.code == "invalid_box"


def test_parse_box() -> None:
    assert parse_box("1, 2.5,3,4") == [1.0, 2.5, 3.0, 4.0]
    assert parse_box("[10,20,30,40]") == [10.0, 20.0, 30.0, 40.0]
    for bad in ("1,2,3", "a,b,c,d", ""):
        with pytest.raises(ApiError, match="box must be four numbers") as err:
            parse_box(bad)
        assert err.value.status_code == 422 and err.value.code == "invalid_box"

