"""Before/after arithmetic on hand-checked trays (serve.services.pairing)."""
from __future__ import annotations

import pytest

from nutrition_db import meal_nutrients
from serve.services.pairing import PairFlag, TrayItem, match_items, pair_meal, paired_item

RICE, SOUP, KIMCHI = "rice", "soup", "kimchi"


def _item(key: str, grams: float, box: tuple[float, float, float, float] | None = None,
          ref: int | None = None, emb: tuple[float, ...] | None = None,
          food_id: str | None = None) -> TrayItem:
    return TrayItem(key=key, food_id=food_id or f"F-{key}", grams=grams, box=box,
                    embedding=emb, ref=ref)


def test_three_dish_tray_hand_checked() -> None:
    before = [_item(RICE, 210, ref=1), _item(SOUP, 300, ref=2), _item(KIMCHI, 50, ref=3)]
    after = [_item(SOUP, 120, ref=12), _item(RICE, 30, ref=11), _item(KIMCHI, 50, ref=13)]
    res = pair_meal(before, after)
    rice, soup, kimchi = res.items
    assert (rice.before_ref, rice.after_ref) == (1, 11)
    assert (rice.served_g, rice.eaten_g, rice.leftover_g) == (210, 180, 30)
    assert rice.leftover_pct == 14.3  # 30/210 = 14.29 %
    assert (soup.eaten_g, soup.leftover_g, soup.leftover_pct) == (180, 120, 40.0)
    assert (kimchi.eaten_g, kimchi.leftover_pct) == (0, 100.0)
    assert all(not p.flags for p in res.items)
    # tray: 560 g served, 200 g left (35.7 %), 360 g eaten
    assert (res.served_g, res.leftover_g, res.eaten_g) == (560, 200, 360)
    assert res.leftover_pct == 35.7


def test_item_absent_after_is_fully_eaten() -> None:
    res = pair_meal([_item(RICE, 200, ref=1), _item(SOUP, 250, ref=2)],
                    [_item(SOUP, 50, ref=12)])
    rice = res.items[0]
    assert rice.key == RICE and rice.after_ref is None
    assert (rice.eaten_g, rice.leftover_g, rice.leftover_pct) == (200, 0, 0.0)
    assert rice.flags == (PairFlag.FULLY_EATEN,)
    assert res.eaten_g == 400


def test_item_only_after_is_flagged_not_counted() -> None:
    res = pair_meal([_item(RICE, 200)], [_item(RICE, 20), _item("cake", 80, ref=99)])
    assert len(res.items) == 2
    cake = res.items[1]
    assert cake.flags == (PairFlag.ONLY_AFTER,)
    assert (cake.before_ref, cake.after_ref, cake.after_g) == (None, 99, 80)
    assert (cake.served_g, cake.eaten_g, cake.leftover_g) == (0, 0, 0)
    assert cake.leftover_pct is None
    assert (res.served_g, res.eaten_g, res.leftover_g) == (200, 180, 20)


def test_after_heavier_than_before_is_clamped_and_flagged() -> None:
    res = pair_meal([_item(SOUP, 150)], [_item(SOUP, 175)])
    soup = res.items[0]
    assert soup.flags == (PairFlag.AFTER_EXCEEDS_BEFORE,)
    assert (soup.before_g, soup.after_g) == (150, 175)
    assert (soup.eaten_g, soup.leftover_g, soup.leftover_pct) == (0, 150, 100.0)
    assert res.eaten_g == 0  # never a negative intake


def test_same_dish_twice_is_matched_by_box_overlap() -> None:
    left, right = (0, 0, 100, 100), (300, 0, 400, 100)
    before = [_item("bread", 60, left, ref=1), _item("bread", 40, right, ref=2)]
    after = [_item("bread", 10, (305, 5, 395, 100), ref=22)]
    res = pair_meal(before, after)
    by_ref = {p.before_ref: p for p in res.items}
    assert by_ref[2].after_ref == 22 and by_ref[2].eaten_g == 30
    assert by_ref[1].flags == (PairFlag.FULLY_EATEN,) and by_ref[1].eaten_g == 60


def test_same_dish_twice_without_boxes_is_matched_by_embedding() -> None:
    before = [_item("bread", 60, ref=1, emb=(1.0, 0.0)), _item("bread", 40, ref=2, emb=(0.0, 1.0))]
    after = [_item("bread", 25, ref=21, emb=(0.1, 0.99)),
             _item("bread", 5, ref=22, emb=(1.0, 0.05))]
    matches, lone_b, lone_a = match_items(before, after)
    assert matches == [(0, 1, False), (1, 0, False)]
    assert lone_b == [] and lone_a == []


def test_relabelled_leftover_is_paired_by_position() -> None:
    # the leftover rice was read as porridge on the after photo, in the same place
    before = [_item(RICE, 200, (10, 10, 110, 110), ref=1)]
    after = [_item("porridge", 40, (15, 12, 112, 108), ref=11)]
    res = pair_meal(before, after)
    assert len(res.items) == 1
    rice = res.items[0]
    assert rice.key == RICE and rice.food_id == "F-rice"  # the before photo names the dish
    assert rice.flags == (PairFlag.RELABELLED,)
    assert (rice.eaten_g, rice.leftover_g) == (160, 40)


def test_same_food_matches_when_only_one_photo_used_the_menu() -> None:
    # before analysed with the menu (key = dish id), after without it (key = food id)
    before = [TrayItem("dish-1", "F-rice", 200.0, (0, 0, 100, 100)),
              TrayItem("dish-2", "F-soup", 300.0, (200, 0, 300, 100))]
    after = [TrayItem("F-soup", "F-soup", 100.0, (400, 300, 500, 400)),
             TrayItem("F-rice", "F-rice", 50.0, (500, 300, 600, 400))]
    res = pair_meal(before, after)
    assert [(p.key, p.eaten_g, p.flags) for p in res.items] == [
        ("dish-1", 150.0, ()), ("dish-2", 200.0, ())]


def test_different_labels_far_apart_are_not_paired() -> None:
    res = pair_meal([_item(RICE, 200, (0, 0, 100, 100))],
                    [_item("porridge", 40, (200, 200, 300, 300))])
    assert [p.flags for p in res.items] == [(PairFlag.FULLY_EATEN,), (PairFlag.ONLY_AFTER,)]


def test_empty_before_tray() -> None:
    res = pair_meal([], [])
    assert res.items == () and res.served_g == 0 and res.leftover_pct is None


@pytest.mark.parametrize("grams", [-1.0, float("nan"), float("inf")])
def test_bad_grams_are_rejected(grams: float) -> None:
    with pytest.raises(ValueError, match="grams must be"):
        _item(RICE, grams)


def test_paired_item_needs_one_side() -> None:
    with pytest.raises(ValueError, match="needs a before item"):
        paired_item(None, None)


def test_nutrients_eaten_from_real_table() -> None:
    # 배추김치 (MFDS): 38 kcal and 551 mg sodium per 100 g; 80 g eaten -> 30.4 kcal, 440.8 mg
    kimchi = "mfds:D315-670000000-0001"
    res = pair_meal([TrayItem(kimchi, kimchi, 100.0)],
                    [TrayItem(kimchi, kimchi, 20.0), TrayItem("cake", "n5k:54", 80.0)])
    assert res.eaten() == [(kimchi, 80.0)]  # the after-only item is not intake
    totals = meal_nutrients(res.eaten()).totals
    assert totals["energy_kcal"] == pytest.approx(30.4)
    assert totals["sodium_mg"] == pytest.approx(440.8)
