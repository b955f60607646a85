"""Before/after pairing of stored items (serve.services.pairing) on hand-checked trays: pairs by
slot or by appearance and place, leftovers from region ratios times the served grams."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from model.infer.menu_match import UNIDENTIFIED
from nutrition_db import meal_nutrients
from serve.services.leftovers import Measure
from serve.services.matching import MatchMethod
from serve.services.pairing import PairFlag, TrayItem, TrayPhoto, pair_meal

RICE, SOUP, KIMCHI = "rice", "soup", "kimchi"
DIM = 16
# Orthonormal "looks": cosine exactly 0 between different dishes.
BASIS = np.linalg.qr(np.random.default_rng(3).normal(size=(DIM, DIM)))[0].T
LOOK = {name: BASIS[k] for k, name in enumerate([RICE, SOUP, KIMCHI, "bread", "napkin"])}
# Three dishes well apart; 100-px boxes.
SPOT = {RICE: (100.0, 100.0), SOUP: (400.0, 100.0), KIMCHI: (250.0, 350.0)}


def look(name: str, cosine: float = 1.0) -> tuple[float, ...]:
    """An embedding whose cosine with the dish's look is exactly `cosine`."""
    vec = cosine * LOOK[name] + math.sqrt(1 - cosine**2) * BASIS[DIM - 1]
    return tuple(float(v) for v in vec)


def item(name: str, grams: float | None, area: float | None, *, at: tuple[float, float] | None
         = None, ref: str | None = None, emb: tuple[float, ...] | None = None,
         food_id: str | None = None, half: float = 50.0) -> TrayItem:
    """An item of food `F-<name>` centred on its spot (or `at`)."""
    x, y = at or SPOT[name]
    return TrayItem(key=food_id or f"F-{name}", food_id=food_id or f"F-{name}", grams=grams,
                    box=(x - half, y - half, x + half, y + half), area_px=area,
                    embedding=emb, ref=ref or name, label=name)


def test_three_dish_tray_hand_checked() -> None:
    # legacy items (no embeddings): pair by place; mask areas give the leftovers
    before = [item(RICE, 210, 8400, ref="b1"), item(SOUP, 300, 9000, ref="b2"),
              item(KIMCHI, 50, 2000, ref="b3")]
    after = [item(SOUP, 120, 3600, ref="a2"), item(RICE, 30, 1200, ref="a1"),
             item(KIMCHI, 50, 2000, ref="a3")]
    res = pair_meal(before, after)
    rice, soup, kimchi = res.items
    assert (rice.before_ref, rice.after_ref) == ("b1", "a1")
    assert (rice.served_g, rice.eaten_g, rice.leftover_g) == (210, 180, 30)  # 1200/8400
    assert (rice.leftover_fraction, rice.leftover_pct) == (0.1429, 14.3)
    assert (soup.eaten_g, soup.leftover_g, soup.leftover_pct) == (180, 120, 40.0)
    assert (kimchi.eaten_g, kimchi.leftover_pct) == (0, 100.0)
    assert all(p.method is MatchMethod.POSITION and p.measure is Measure.AREA
               and p.match_score == 1.0 and not p.flags for p in res.items)
    assert (res.served_g, res.leftover_g, res.eaten_g, res.leftover_pct) == (560, 200, 360, 35.7)


def test_leftover_comes_from_the_area_ratio_not_the_after_grams() -> None:
    # the bread roll: 817 g before (kiosk scale), 116 g after (enrolment-relative): the two
    # grams say 14 % left, the two masks say half is left
    before = [item("bread", 817, 5000, at=(100, 100), emb=look("bread"))]
    after = [item("bread", 116, 2500, at=(100, 100), emb=look("bread", 0.95))]
    (roll,) = pair_meal(before, after).items
    assert roll.leftover_fraction == 0.5 and roll.leftover_g == 408.5
    assert roll.method is MatchMethod.APPEARANCE and roll.measure is Measure.AREA


def test_moved_dishes_pair_by_appearance() -> None:
    # rice and soup swapped places on the tray; the kimchi stayed
    before = [item(n, 100, 8000, emb=look(n)) for n in (RICE, SOUP, KIMCHI)]
    after = [item(RICE, 10, 4000, at=SPOT[SOUP], emb=look(RICE, 0.9)),
             item(SOUP, 10, 2000, at=SPOT[RICE], emb=look(SOUP, 0.95)),
             item(KIMCHI, 10, 8000, emb=look(KIMCHI))]
    res = pair_meal(before, after)
    assert [(p.before_ref, p.after_ref, p.leftover_fraction) for p in res.items] == [
        (RICE, RICE, 0.5), (SOUP, SOUP, 0.25), (KIMCHI, KIMCHI, 1.0)]
    assert all(p.method is MatchMethod.APPEARANCE for p in res.items)


def test_renamed_dish_keeps_the_before_dish() -> None:
    before = [TrayItem("dish-1", "F-rice", 200.0, (0, 0, 100, 100), 8000, look(RICE), "b1",
                       "rice", "dish-1", "Rice", "쌀밥")]
    after = [item(SOUP, 999, 2000, at=(50, 50), emb=look(RICE, 0.8), ref="a1")]
    (rice,) = pair_meal(before, after).items
    assert (rice.key, rice.dish_id, rice.food_id, rice.name_en) == ("dish-1", "dish-1",
                                                                    "F-rice", "Rice")
    assert rice.after_food_id == "F-soup" and rice.flags == (PairFlag.RELABELLED,)
    assert (rice.leftover_fraction, rice.leftover_g, rice.eaten_g) == (0.25, 50, 150)


def test_an_unidentified_side_is_no_renaming() -> None:
    # The after photo's rice left unidentified (no food, label "unidentified"): paired by
    # place and look as before, with no label cost and no "relabelled" flag.
    before = [item(n, 100, 8000, emb=look(n)) for n in (RICE, SOUP)]
    after = [replace(item(RICE, 10, 4000, emb=look(RICE, 0.9)), key="label:unidentified",
                     food_id=None, label=UNIDENTIFIED),
             item(SOUP, 10, 8000, emb=look(SOUP))]
    res = pair_meal(before, after)
    assert [(p.after_ref, p.leftover_fraction, p.flags) for p in res.items] == [
        (RICE, 0.5, ()), (SOUP, 1.0, ())]
    assert res.items[0].match_score == res.items[1].match_score
    # A real renaming still costs and is flagged.
    renamed = [replace(after[0], food_id="F-soup", label=SOUP), after[1]]
    assert pair_meal(before, renamed).items[0].flags == (PairFlag.RELABELLED,)


def test_removed_dish_is_fully_eaten_and_a_same_label_stranger_is_not_it() -> None:
    # the bread roll was eaten; an unrelated item the model also calls bread lies elsewhere
    before = [item("bread", 80, 3000, at=(100, 100), emb=look("bread")),
              item(SOUP, 300, 9000, emb=look(SOUP))]
    after = [item("bread", 60, 2800, at=(300, 350), emb=look("napkin"), ref="stranger"),
             item(SOUP, 100, 3000, emb=look(SOUP, 0.9))]
    res = pair_meal(before, after)
    bread, soup, stranger = res.items
    assert bread.flags == (PairFlag.FULLY_EATEN,) and bread.after_ref is None
    assert (bread.eaten_g, bread.leftover_g, bread.leftover_fraction) == (80, 0, 0.0)
    assert bread.method is MatchMethod.NONE and bread.match_score >= 0.45
    assert stranger.flags == (PairFlag.UNMATCHED_AFTER,) and stranger.after_ref == "stranger"
    assert soup.after_ref == SOUP and soup.leftover_g == 100
    assert (res.served_g, res.leftover_g, res.eaten_g) == (380, 100, 280)


def test_unmatched_after_region_is_listed_not_counted() -> None:
    before = [item(RICE, 200, 8000, emb=look(RICE))]
    after = [item(RICE, 20, 800, emb=look(RICE)),
             item("napkin", 80, 5000, at=(500, 400), emb=look("napkin"), ref="n")]
    res = pair_meal(before, after)
    napkin = res.items[1]
    assert napkin.flags == (PairFlag.UNMATCHED_AFTER,)
    assert (napkin.before_ref, napkin.after_ref, napkin.served_g, napkin.eaten_g,
            napkin.leftover_g, napkin.leftover_fraction) == (None, "n", 0, 0, 0, None)
    assert (res.served_g, res.eaten_g, res.leftover_g) == (200, 180, 20)
    assert res.eaten() == [("F-rice", 180.0)]


def test_after_larger_than_before_is_clipped_and_flagged() -> None:
    (soup,) = pair_meal([item(SOUP, 150, 5000)], [item(SOUP, 175, 6000)]).items
    assert soup.flags == (PairFlag.AFTER_EXCEEDS_BEFORE,)
    assert (soup.eaten_g, soup.leftover_g, soup.leftover_pct) == (0, 150, 100.0)


def test_legacy_items_pair_by_place_and_a_stranger_far_away_is_not_matched() -> None:
    res = pair_meal([item(RICE, 200, 8000)], [item("porridge", 40, 2000, at=(400, 400))])
    assert [p.flags for p in res.items] == [(PairFlag.FULLY_EATEN,), (PairFlag.UNMATCHED_AFTER,)]
    relabelled = pair_meal([item(RICE, 200, 8000)], [item("porridge", 40, 2000, at=(104, 98))])
    (rice,) = relabelled.items
    assert rice.method is MatchMethod.POSITION and rice.flags == (PairFlag.RELABELLED,)
    assert rice.leftover_g == 50


def test_unknown_area_is_not_measurable_and_counted_eaten() -> None:
    (rice,) = pair_meal([item(RICE, 200, 8000)], [item(RICE, 40, None)]).items
    assert rice.flags == (PairFlag.NOT_MEASURABLE,) and rice.after_ref == RICE
    assert (rice.leftover_fraction, rice.leftover_pct, rice.eaten_g, rice.measure) == (
        None, None, 200, None)
    (soup,) = pair_meal([item(SOUP, 100, None)], [item(SOUP, 40, 900)]).items
    assert soup.flags == (PairFlag.NOT_MEASURABLE,) and soup.eaten_g == 100


def test_after_photo_of_another_size_is_rescaled() -> None:
    before = TrayPhoto((item(RICE, 200, 8000, emb=look(RICE)),), width=1000)
    small = item(RICE, 40, 1000, at=(50, 50), emb=look(RICE), half=25)  # half-size photo
    (rice,) = pair_meal(before, TrayPhoto((small,), width=500)).items
    assert rice.leftover_fraction == 0.5 and rice.match_score == 1.0


def test_embeddings_of_different_models_are_not_compared() -> None:
    before = TrayPhoto((item(RICE, 200, 8000, emb=look(RICE)),), model_version="1.3.0")
    after = TrayPhoto((item(RICE, 20, 4000, emb=look(SOUP)),), model_version="1.4.0")
    (rice,) = pair_meal(before, after).items
    assert rice.method is MatchMethod.POSITION and rice.leftover_fraction == 0.5


def test_areas_measured_on_other_masks_pair_but_give_no_leftover() -> None:
    """Before refined to the food (small areas), after on the model's masks (None: stored
    before the column, the whole plate at 4x the rice's food area): the rice still pairs -
    the size bound would have refused a 4x larger partner - and no leftover comes from the
    two areas; the kimchi, gone, is fully eaten as ever."""
    before = TrayPhoto((item(RICE, 200, 2000, emb=look(RICE)),
                        item(KIMCHI, 50, 1500, emb=look(KIMCHI))), masks="refined")
    after = TrayPhoto((item(RICE, 20, 8000, emb=look(RICE, 0.95), ref="a-rice"),))
    res = pair_meal(before, after)
    rice, kimchi = res.items
    assert (rice.before_ref, rice.after_ref, rice.method) == (RICE, "a-rice",
                                                              MatchMethod.APPEARANCE)
    assert rice.flags == (PairFlag.NOT_MEASURABLE, PairFlag.MASKS_DIFFER)
    assert (rice.leftover_fraction, rice.leftover_pct, rice.measure) == (None, None, None)
    assert (rice.served_g, rice.eaten_g, rice.leftover_g) == (200, 200, 0)  # as not_measurable
    assert kimchi.flags == (PairFlag.FULLY_EATEN,) and kimchi.eaten_g == 50
    assert (res.served_g, res.eaten_g, res.leftover_g) == (250, 250, 0)
    # The same areas on one mask method: a plate 4x larger is no partner (size bound).
    same = pair_meal(replace(before, masks=None), after)
    assert [p.flags for p in same.items] == [(PairFlag.FULLY_EATEN,)] * 2 + [
        (PairFlag.UNMATCHED_AFTER,)]


def test_photos_on_the_same_masks_compare_areas_as_ever() -> None:
    after = (item(RICE, 20, 1000, emb=look(RICE, 0.95)),)
    for masks in (("refined", "refined"), ("model", None), (None, None)):
        before = TrayPhoto((item(RICE, 200, 4000, emb=look(RICE)),), masks=masks[0])
        (rice,) = pair_meal(before, TrayPhoto(after, masks=masks[1])).items
        assert (rice.leftover_fraction, rice.leftover_g, rice.measure) == (
            0.25, 50, Measure.AREA), masks
        assert not rice.flags, masks


def slotted(name: str, slot: str, fill: float, grams: float | None = None,
            **kw: object) -> TrayItem:
    """A layout-mode item: in compartment `slot`, `fill` of it food."""
    base = item(name, grams, 1000.0, **kw)  # type: ignore[arg-type]
    return TrayItem(base.key, base.food_id, base.grams, base.box, base.area_px, base.embedding,
                    base.ref, base.label, None, None, None, slot, fill)


def test_layout_mode_pairs_by_slot_and_uses_fill() -> None:
    before = TrayPhoto((slotted(RICE, "A", 0.8, 210), slotted(SOUP, "B", 0.9, 300),
                        slotted(KIMCHI, "C", 0.5, 50)), layout="registered")
    # after: rice (named soup) and soup moved nowhere - slots decide; C is empty and not read;
    # something lies in the empty slot D
    after = TrayPhoto((slotted(SOUP, "A", 0.2, 999, at=SPOT[RICE], ref="aA"),
                       slotted(RICE, "B", 0.45, 1, at=SPOT[SOUP], ref="aB"),
                       slotted("napkin", "D", 0.3, 5, at=(600, 400), ref="aD")),
                      layout="registered")
    res = pair_meal(before, after)
    rice, soup, kimchi, extra = res.items
    assert (rice.after_ref, rice.leftover_fraction, rice.leftover_g) == ("aA", 0.25, 52.5)
    assert (soup.after_ref, soup.leftover_fraction, soup.leftover_g) == ("aB", 0.5, 150)
    assert kimchi.flags == (PairFlag.FULLY_EATEN,) and kimchi.eaten_g == 50
    assert all(p.method is MatchMethod.SLOT and p.measure is Measure.FILL for p in res.items)
    assert extra.flags == (PairFlag.UNMATCHED_AFTER,) and extra.after_ref == "aD"
    assert (res.served_g, res.leftover_g) == (560, 202.5)


def test_layout_needs_both_photos_registered() -> None:
    before = TrayPhoto((slotted(RICE, "A", 0.8, 200),), layout="registered")
    after = TrayPhoto((slotted(RICE, "A", 0.2, 50, at=(100, 100)),), layout="not_found")
    (rice,) = pair_meal(before, after).items
    assert rice.method is MatchMethod.POSITION and rice.leftover_fraction == 1.0  # areas


def test_masks_do_not_touch_layout_slots() -> None:
    before = TrayPhoto((slotted(RICE, "A", 0.8, 200),), layout="registered", masks="model")
    after = TrayPhoto((slotted(RICE, "A", 0.2, 50),), layout="registered", masks="refined")
    (rice,) = pair_meal(before, after).items
    assert (rice.method, rice.measure, rice.leftover_fraction, rice.flags) == (
        MatchMethod.SLOT, Measure.FILL, 0.25, ())


def test_empty_tray() -> None:
    res = pair_meal([], [])
    assert res.items == () and res.served_g == 0 and res.leftover_pct is None


@pytest.mark.parametrize("field, value", [("grams", -1.0), ("grams", float("nan")),
                                          ("area_px", float("inf")), ("fill", -0.1)])
def test_bad_numbers_are_rejected(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{field} must be"):
        TrayItem("k", None, **{"grams": 1.0, field: value})  # type: ignore[arg-type]


def test_nutrients_eaten_from_real_table() -> None:
    # 배추김치 (MFDS): 38 kcal and 551 mg sodium per 100 g; 80 g eaten -> 30.4 kcal, 440.8 mg
    kimchi = "mfds:D315-670000000-0001"
    res = pair_meal([item(KIMCHI, 100, 5000, food_id=kimchi)],
                    [item(KIMCHI, 20, 1000, food_id=kimchi),
                     item("cake", 80, 4000, at=(600, 600), food_id="n5k:54")])
    assert res.eaten() == [(kimchi, 80.0)]  # the unmatched after item is not intake
    totals = meal_nutrients(res.eaten()).totals
    assert totals["energy_kcal"] == pytest.approx(30.4)
    assert totals["sodium_mg"] == pytest.approx(440.8)
