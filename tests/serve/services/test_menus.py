"""serve.services.menus and .enrolment without a model: relative grams and the enrolled
areas that may size them, box checks, label lookup, box parsing."""
from __future__ import annotations

import numpy as np
import pytest

from model.infer.enrolment import EnrolledRegion
from model.infer.refine import MODEL_MASKS, REFINED_MASKS
from serve.core.errors import ApiError
from serve.db.tables.menus import Enrolment, Menu, MenuDish
from serve.services.enrolment import check_box, parse_box
from serve.services.menus import (
    CanteenMenu,
    DishInfo,
    label_index_for,
    menu_context,
    offline_dish,
    relative_grams,
)
from serve.services.pipeline import ENROLLED, MENU_SERVING


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



RICE = "mfds:D301-022000000-0001"
# One enrolled example per way of measuring its area (px): a plate's model mask is the
# whole plate (1000), its refined mask the rice on it (600).
EVERY_SOURCE = (("mask", 500.0), ("model_mask", 1000.0), ("refined_mask", 600.0),
                ("box", 800.0), ("image", 90000.0))


def _stored_menu(sources: tuple[tuple[str, float], ...]) -> Menu:
    """A menu of one 200 g rice dish with these enrolments, all by model v1 (not stored)."""
    enrolments = [Enrolment(area_from=f, area_px=a, embedding=[1.0, 0.0], model_version="v1")
                  for f, a in sources]
    dish = MenuDish(id="d1", food_id=RICE, name="쌀밥", serving_g=200.0, tray_slot=None,
                    enrolments=enrolments)
    return Menu(id="m1", canteen_id="c1", dishes=[dish])


def _context_menu(sources: tuple[tuple[str, float], ...], masks: str) -> CanteenMenu:
    return CanteenMenu(menu_context(_stored_menu(sources), model_food_ids=[None],
                                    model_version="v1", masks=masks))


@pytest.mark.parametrize("masks, areas", [
    (MODEL_MASKS, (500.0, 1000.0, 800.0)),
    (REFINED_MASKS, (500.0, 600.0, 800.0)),
])
def test_menu_context_sizes_with_areas_measured_like_the_items(
        masks: str, areas: tuple[float, ...]) -> None:
    ctx = _context_menu(EVERY_SOURCE, masks).context
    assert ctx.masks == masks
    (dish,) = ctx.dishes
    assert dish.area_px == areas
    assert (dish.enrolled, dish.stale) == (5, 0)  # every example still identifies


def test_refined_items_are_not_sized_by_model_mask_examples() -> None:
    """The bug: a plate's rice refined to 600 px against the plate's 1000 px model mask gave
    120 g of a 200 g serving; now such a dish falls back to its menu serving."""
    only_model = (("model_mask", 1000.0),)
    refined = _context_menu(only_model, REFINED_MASKS)
    grams = refined.serving_grams("d1", 600.0)
    assert grams is not None and (grams.source, grams.value) == (MENU_SERVING, 200.0)
    plain = _context_menu(only_model, MODEL_MASKS).serving_grams("d1", 1000.0)
    assert plain is not None and (plain.source, plain.value) == (ENROLLED, 200.0)
    matched = _context_menu((("refined_mask", 600.0),), REFINED_MASKS).serving_grams("d1", 600.0)
    assert matched is not None and (matched.source, matched.value) == (ENROLLED, 200.0)


def test_offline_dish_sizes_with_areas_measured_like_the_items() -> None:
    regions = [EnrolledRegion(np.array([1.0, 0.0], np.float32), a, f) for f, a in EVERY_SOURCE]
    plain, _ = offline_dish("d1", RICE, None, 200.0, regions, label=None)
    refined, _ = offline_dish("d1", RICE, None, 200.0, regions, label=None,
                              masks=REFINED_MASKS)
    assert plain.area_px == (500.0, 1000.0, 800.0)
    assert refined.area_px == (500.0, 600.0, 800.0)

