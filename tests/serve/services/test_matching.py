"""serve.services.matching: before/after pairing by place and appearance, leftovers from
region ratios, layout slots. Hand-built regions with exact cosines, plus the shipped model
on real fixture photos with a synthetic "after" (part of a food painted out, photo turned)."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from model.infer.images import load_image
from model.infer.runtime import TrayModel, full_item_mask
from serve.services import matching
from serve.services.leftovers import LeftoverFlag, Measure, SlotFill, leftovers, slot_leftovers
from serve.services.matching import (
    MatchConfig,
    MatchInputError,
    MatchMethod,
    Region,
    TrayShift,
    estimate_tray_shift,
    match_regions,
)

DIM = 64
# Orthonormal directions: the first 8 are "dishes" (cosine exactly 0 between different
# dishes), the rest perturb a dish's look by an exact angle (see `looks_like`).
BASIS = np.linalg.qr(np.random.default_rng(7).normal(size=(DIM, DIM)))[0].T
DISH = {name: BASIS[k] for k, name in
        enumerate(["pasta", "salad", "bread", "yoghurt", "apple", "napkin", "cookie", "soup"])}


def looks_like(dish: str, cosine: float, k: int = 0) -> np.ndarray:
    """An embedding whose cosine with the dish's is exactly `cosine` (k: which perturbation)."""
    return cosine * DISH[dish] + math.sqrt(1 - cosine**2) * BASIS[10 + k]


def reg(key: str, centre: tuple[float, float], half: float, embedding: np.ndarray | None,
        label: str | None = None, *, area: float | None = None, grams: float | None = None,
        food_id: str | None = None, volume_ml: float | None = None,
        container: str | None = None) -> Region:
    """A region with a square box of half-side `half` around `centre`."""
    x, y = centre
    box = (x - half, y - half, x + half, y + half)
    return Region(key, box, (2 * half) ** 2 if area is None else area, embedding, label,
                  food_id, volume_ml, grams, container)


# The "before" tray: five dishes well apart, 80-px boxes (radius ~57 px).
TRAY = {"pasta": (150.0, 150.0), "salad": (400.0, 150.0), "bread": (650.0, 150.0),
        "yoghurt": (250.0, 400.0), "apple": (550.0, 400.0)}


def before_tray() -> list[Region]:
    return [reg(name, c, 40, DISH[name], name, grams=100.0 + 10 * k)
            for k, (name, c) in enumerate(TRAY.items())]


def pairs_by_key(before: list[Region], after: list[Region],
                 m: matching.Matching) -> dict[str, str]:
    return {before[p.before_index].key: after[p.after_index].key for p in m.pairs}


def moved(point: tuple[float, float], degrees: float, shift: tuple[float, float],
          about: tuple[float, float] = (400.0, 275.0)) -> tuple[float, float]:
    """A tray point after turning the tray by `degrees` about `about` and shifting it."""
    t = math.radians(degrees)
    dx, dy = point[0] - about[0], point[1] - about[1]
    return (about[0] + math.cos(t) * dx - math.sin(t) * dy + shift[0],
            about[1] + math.sin(t) * dx + math.cos(t) * dy + shift[1])


# --- pairing -------------------------------------------------------------------------------


def test_renamed_dish_in_place_pairs_and_keeps_the_before_dish() -> None:
    before = before_tray()
    # the pasta, half eaten, now looks a bit different and the model calls it "soup"
    after = [reg("a-soup", TRAY["pasta"], 28, looks_like("pasta", 0.75), "soup",
                 grams=999.0),
             *[reg(f"a-{n}", TRAY[n], 40, DISH[n], n) for n in ("salad", "bread")]]
    m = match_regions(before, after)
    assert pairs_by_key(before, after, m) == {"pasta": "a-soup", "salad": "a-salad",
                                              "bread": "a-bread"}
    out = leftovers(before, after, m)
    pasta = out[0]
    assert (pasta.key, pasta.before_index, pasta.after_index) == ("pasta", 0, 0)
    assert LeftoverFlag.RELABELLED in pasta.flags
    assert pasta.method is MatchMethod.APPEARANCE and pasta.measure is Measure.AREA
    # 56x56 of 80x80 left, applied to the before grams; the after item's 999 g are ignored
    assert pasta.fraction == pytest.approx(0.49)
    assert pasta.leftover_g == pytest.approx(49.0)
    assert pasta.eaten_g == pytest.approx(51.0)
    assert 0 < pasta.score < 1


@pytest.mark.parametrize("degrees", [10.0, -10.0])
def test_whole_tray_shifted_80px_and_turned_10_degrees_still_pairs(degrees: float) -> None:
    before = before_tray()
    after = [reg(f"a-{n}", moved(c, degrees, (80.0, 0.0)), 30, looks_like(n, 0.85, k), None)
             for k, (n, c) in enumerate(reversed(TRAY.items()))]  # order says nothing
    m = match_regions(before, after)
    assert pairs_by_key(before, after, m) == {n: f"a-{n}" for n in TRAY}
    assert m.unmatched_before == () and m.unmatched_after == ()
    assert m.tray_shift.rotation_deg == pytest.approx(degrees, abs=0.5)
    assert m.tray_shift.votes == 5
    predicted = m.tray_shift.apply([r.centre for r in before])
    expected = np.array([moved(c, degrees, (80.0, 0.0)) for c in TRAY.values()])
    np.testing.assert_allclose(predicted, expected, atol=1.0)
    assert all(p.distance_px < 1.0 and p.position_cost < 0.02 for p in m.pairs)


def _lookalike_rolls(shift_x: float) -> tuple[list[Region], list[Region]]:
    """Two bread rolls that look the same (cosine 1) next to three distinct dishes; the tray
    moves right by `shift_x`, so the left roll lands near the right roll's old place."""
    spots = {"pasta": (150.0, 150.0), "salad": (400.0, 150.0), "yoghurt": (250.0, 400.0),
             "roll-L": (500.0, 400.0), "roll-R": (620.0, 400.0)}
    look = {n: DISH["bread" if n.startswith("roll") else n] for n in spots}
    before = [reg(n, c, 40, look[n], "bread" if n.startswith("roll") else n)
              for n, c in spots.items()]
    after = [reg(f"a-{n}", moved(c, 0.0, (shift_x, 0.0)), 30, look[n],
                 "bread" if n.startswith("roll") else n) for n, c in spots.items()]
    return before, after


def test_lookalike_dishes_pair_by_place_relative_to_the_tray_shift(
        monkeypatch: pytest.MonkeyPatch) -> None:
    before, after = _lookalike_rolls(80.0)
    m = match_regions(before, after)
    assert pairs_by_key(before, after, m)["roll-L"] == "a-roll-L"
    assert pairs_by_key(before, after, m)["roll-R"] == "a-roll-R"
    assert m.tray_shift.tx == pytest.approx(80.0, abs=1.0)
    # the test can fail: comparing raw positions (no tray shift) swaps the two rolls
    monkeypatch.setattr(matching, "estimate_tray_shift", lambda *a, **k: TrayShift())
    raw = match_regions(before, after)
    assert pairs_by_key(before, after, raw)["roll-L"] == "a-roll-R"


def test_two_dishes_swapped_on_the_tray_pair_by_appearance() -> None:
    before = before_tray()
    spots = dict(TRAY)
    spots["salad"], spots["apple"] = TRAY["apple"], TRAY["salad"]
    # both eaten a little; each stands where the other was, named as the other was
    after = [reg(f"a-{n}", c, 34, looks_like(n, 0.8, k), {"salad": "apple",
                                                          "apple": "salad"}.get(n, n))
             for k, (n, c) in enumerate(spots.items())]
    m = match_regions(before, after)
    assert pairs_by_key(before, after, m) == {n: f"a-{n}" for n in TRAY}
    assert m.tray_shift.rotation_deg == pytest.approx(0.0, abs=0.5)  # three stayed put
    swapped = [p for p in m.pairs if before[p.before_index].key in ("salad", "apple")]
    assert all(p.position_cost == 1.0 and p.method is MatchMethod.APPEARANCE
               for p in swapped)


def test_removed_roll_is_fully_eaten_and_a_stranger_with_its_label_is_not_it() -> None:
    """The painted-out bread roll: the after photo has no roll, but a cookie elsewhere that
    the model calls "bread". Label matching took it for 98% of the roll."""
    before = before_tray()
    after = [reg(f"a-{n}", TRAY[n], 40, DISH[n], n) for n in ("pasta", "salad", "yoghurt")]
    after.append(reg("a-cookie", (650.0, 400.0), 30, DISH["cookie"], "bread"))
    m = match_regions(before, after)
    assert "bread" not in pairs_by_key(before, after, m)
    out = {lo.key: lo for lo in leftovers(before, after, m)}
    bread = out["bread"]
    assert bread.flags == (LeftoverFlag.FULLY_EATEN,)
    assert (bread.fraction, bread.leftover_g, bread.eaten_g) == (0.0, 0.0, 120.0)
    assert bread.method is MatchMethod.NONE and bread.after_index is None
    assert bread.score > 0.3  # 1 - the best score any after region offered
    assert out["a-cookie"].flags == (LeftoverFlag.UNMATCHED_AFTER,)


def test_a_stranger_in_the_eaten_dishs_very_place_is_not_it() -> None:
    before = before_tray()
    after = [reg("a-napkin", TRAY["bread"], 40, DISH["napkin"], "napkin"),
             *[reg(f"a-{n}", TRAY[n], 40, DISH[n], n) for n in ("pasta", "salad")]]
    m = match_regions(before, after)
    assert pairs_by_key(before, after, m) == {"pasta": "a-pasta", "salad": "a-salad"}
    assert m.unmatched_after == (0,)
    assert [before[i].key for i in m.unmatched_before] == ["bread", "yoghurt", "apple"]
    # it stands where the roll stood, so it is a less clear stranger than one elsewhere:
    # cost (0.6 * 1 + 0.3 * 0 + 0.1 * 1) = 0.7, score 0.3, unmatched with certainty 0.7
    napkin = leftovers(before, after, m)[-1]
    assert napkin.flags == (LeftoverFlag.UNMATCHED_AFTER,)
    assert napkin.score == pytest.approx(0.7)


def test_extra_after_region_is_unmatched_after_and_not_served() -> None:
    before = before_tray()[:2]
    after = [reg("a-pasta", TRAY["pasta"], 30, DISH["pasta"], "pasta"),
             reg("a-salad", TRAY["salad"], 30, DISH["salad"], "salad"),
             reg("napkin", (400.0, 400.0), 50, DISH["napkin"], "napkin", grams=15.0)]
    m = match_regions(before, after)
    assert m.unmatched_after == (2,) and m.unmatched_before == ()
    out = leftovers(before, after, m)
    assert [lo.key for lo in out] == ["pasta", "salad", "napkin"]
    napkin = out[2]
    assert napkin.flags == (LeftoverFlag.UNMATCHED_AFTER,)
    assert (napkin.before_index, napkin.after_index) == (None, 2)
    assert napkin.fraction is None and napkin.leftover_g is None and napkin.eaten_g is None
    assert napkin.score == pytest.approx(1.0)  # nothing served looks like it or stood there
    served = sum(lo.leftover_g or 0.0 for lo in out) + sum(lo.eaten_g or 0.0 for lo in out)
    assert served == pytest.approx(100.0 + 110.0)


def test_weak_look_in_place_still_pairs_but_is_flagged_weak() -> None:
    """A dish whose look changed a lot as it was eaten (cosine 0.4) stays paired by place."""
    before = before_tray()[:1]
    after = [reg("a", TRAY["pasta"], 30, looks_like("pasta", 0.4), "pasta")]
    m = match_regions(before, after)
    assert len(m.pairs) == 1
    # cost = (0.6 * (0.9 - 0.4) / 0.7 + 0.3 * 0 + 0.1 * 0) / 1.0 = 0.43: score 0.57 < 0.6
    assert m.pairs[0].cost == pytest.approx(0.6 * 0.5 / 0.7)
    assert LeftoverFlag.WEAK_MATCH in leftovers(before, after, m)[0].flags
    moved_away = [reg("a", (650.0, 400.0), 30, looks_like("pasta", 0.4), "pasta")]
    assert match_regions(before, moved_away).pairs == ()  # changed look AND elsewhere: no


def test_one_good_pair_beats_a_chain_of_mediocre_ones() -> None:
    """The assignment may leave regions alone: pasta A stays put; gnocchi B (looks a bit like
    pasta) is eaten; an extra pasta-like plate X appears elsewhere. A forced full assignment
    prefers A-X + B-A' (0.34 + 0.53, each under the threshold) to A-A' + B-X (0 + 0.92)."""
    u = BASIS[20]
    before = [reg("A", (150, 150), 40, DISH["pasta"], "pasta"),
              reg("B", (650, 400), 40, 0.75 * DISH["pasta"] + math.sqrt(1 - 0.75**2) * u,
                  "gnocchi")]
    after = [reg("A'", (150, 150), 40, DISH["pasta"], "pasta"),
             reg("X", (400, 150), 40, 0.85 * DISH["pasta"] - math.sqrt(1 - 0.85**2) * u,
                 "pasta")]
    m = match_regions(before, after)
    assert pairs_by_key(before, after, m) == {"A": "A'"}
    assert m.unmatched_before == (1,) and m.unmatched_after == (1,)


def test_without_embeddings_pairs_by_position_and_says_so() -> None:
    before = [reg("pasta", (150, 150), 40, None, "pasta", grams=200.0)]
    after = [reg("a", (160, 150), 30, None, "pasta")]
    m = match_regions(before, after)
    assert [p.method for p in m.pairs] == [MatchMethod.POSITION]
    assert m.pairs[0].cosine is None and m.tray_shift.votes == 0
    assert leftovers(before, after, m)[0].method is MatchMethod.POSITION


# --- leftovers -----------------------------------------------------------------------------


def test_leftover_is_the_area_ratio_times_the_before_grams() -> None:
    before = [reg("pasta", (150, 150), 40, DISH["pasta"], area=4000.0, grams=300.0)]
    # kiosk-scale grams on one photo, enrolment-relative on the other: never subtracted
    after = [reg("a", (150, 150), 40, DISH["pasta"], area=2000.0, grams=20.0)]
    out = leftovers(before, after, match_regions(before, after))
    assert out[0].fraction == 0.5 and out[0].ratio == 0.5
    assert out[0].leftover_g == 150.0 and out[0].eaten_g == 150.0
    assert out[0].measure is Measure.AREA and out[0].flags == ()


def test_volume_ratio_is_used_when_both_photos_have_depth() -> None:
    before = [reg("soup", (150, 150), 40, DISH["soup"], area=4000.0, grams=250.0,
                  volume_ml=240.0)]
    after = [reg("a", (150, 150), 40, DISH["soup"], area=3900.0, volume_ml=60.0)]
    lo = leftovers(before, after, match_regions(before, after))[0]
    assert lo.measure is Measure.VOLUME and lo.fraction == 0.25 and lo.leftover_g == 62.5
    only_one = [reg("a", (150, 150), 40, DISH["soup"], area=3900.0)]
    lo = leftovers(before, only_one, match_regions(before, only_one))[0]
    assert lo.measure is Measure.AREA and lo.fraction == pytest.approx(0.975)


def test_after_larger_than_before_is_clipped_and_flagged() -> None:
    before = [reg("rice", (150, 150), 40, DISH["pasta"], area=4000.0, grams=200.0)]
    after = [reg("a", (150, 150), 40, DISH["pasta"], area=5000.0)]
    lo = leftovers(before, after, match_regions(before, after))[0]
    assert lo.ratio == 1.25 and lo.fraction == 1.0
    assert lo.leftover_g == 200.0 and lo.eaten_g == 0.0
    assert lo.flags == (LeftoverFlag.AFTER_EXCEEDS_BEFORE,)
    # more than MAX_AREA_GROWTH times larger: not the same dish at all
    huge = [reg("a", (150, 150), 40, DISH["pasta"], area=4000.0 * 2.5)]
    m = match_regions(before, huge)
    assert m.pairs == () and m.unmatched_after == (0,)


def test_before_without_grams_or_area() -> None:
    before = [reg("x", (150, 150), 40, DISH["pasta"], area=0.0, grams=None),
              reg("y", (400, 150), 40, DISH["salad"], grams=None)]
    after = [reg("a", (150, 150), 40, DISH["pasta"], area=10.0),
             reg("b", (400, 150), 20, DISH["salad"])]
    out = leftovers(before, after, match_regions(before, after))
    assert out[0].fraction is None and LeftoverFlag.NOT_MEASURABLE in out[0].flags
    assert out[1].fraction == 0.25 and out[1].leftover_g is None and out[1].eaten_g is None


def test_regions_measured_on_other_masks_are_paired_but_not_compared() -> None:
    """comparable=False (one photo on the model's masks, the other refined to the food):
    neither the area nor the depth volume, both integrated over the mask, gives a leftover;
    the pair and a fully eaten dish stay."""
    before = [reg("soup", (150, 150), 40, DISH["soup"], area=4000.0, grams=250.0,
                  volume_ml=240.0),
              reg("bread", (650, 150), 40, DISH["bread"], grams=80.0)]
    after = [reg("a", (150, 150), 40, DISH["soup"], area=1000.0, volume_ml=60.0)]
    m = match_regions(before, after)
    same = leftovers(before, after, m)
    assert same[0].measure is Measure.VOLUME and same[0].fraction == 0.25 and not same[0].flags
    soup, bread = leftovers(before, after, m, comparable=False)
    assert (soup.before_index, soup.after_index, soup.method) == (0, 0, same[0].method)
    assert (soup.fraction, soup.ratio, soup.measure, soup.leftover_g, soup.eaten_g) == (
        None, None, None, None, None)
    assert soup.flags == (LeftoverFlag.NOT_MEASURABLE, LeftoverFlag.MASKS_DIFFER)
    assert soup.score == same[0].score
    assert bread.flags == (LeftoverFlag.FULLY_EATEN,) and bread.eaten_g == 80.0
    without_depth = [reg("s", (150, 150), 40, DISH["soup"], area=4000.0, grams=250.0)]
    (lo,) = leftovers(without_depth, after[:1], match_regions(without_depth, after),
                      comparable=False)
    assert lo.fraction is None and LeftoverFlag.MASKS_DIFFER in lo.flags  # areas alike


def test_an_emptied_container_is_eaten_whatever_the_areas() -> None:
    """A plate-shaped mask keeps the plate's area full or empty: a before box showing food in
    its container and an after box showing it empty is eaten (share 0, all grams), also
    across mask kinds; food before and after, or no verdict on either side, keeps the ratio."""
    def pair(b_state: str | None, a_state: str | None, comparable: bool = True):
        before = [reg("plate", (150, 150), 40, DISH["pasta"], area=4000.0, grams=300.0,
                      container=b_state)]
        after = [reg("a", (152, 150), 40, DISH["pasta"], area=3900.0, container=a_state)]
        (lo,) = leftovers(before, after, match_regions(before, after), comparable=comparable)
        return lo
    lo = pair("food", "empty")
    assert (lo.fraction, lo.ratio, lo.measure, lo.leftover_g, lo.eaten_g) == (
        0.0, None, None, 0.0, 300.0)
    assert lo.flags == (LeftoverFlag.CONTAINER_EMPTIED,) and lo.after_index == 0
    assert pair("food", "empty", comparable=False).flags == (LeftoverFlag.CONTAINER_EMPTIED,)
    for states in (("food", "food"), (None, "empty"), ("empty", "empty"), ("food", None)):
        lo = pair(*states)
        assert lo.fraction == 3900.0 / 4000.0 and lo.measure is Measure.AREA, states
        assert LeftoverFlag.CONTAINER_EMPTIED not in lo.flags


def test_leftovers_refuses_a_matching_of_other_regions() -> None:
    before, after = before_tray(), before_tray()
    m = match_regions(before, after)
    with pytest.raises(MatchInputError):
        leftovers(before[:2], after, m)


# --- layout mode ---------------------------------------------------------------------------


def test_slot_leftovers_by_hand() -> None:
    before = {"main": SlotFill(0.8, 300.0), "side": (0.5, 120.0), "soup": SlotFill(1.0),
              "dessert": SlotFill(0.6, 90.0), "empty": SlotFill(0.0, None)}
    after = {"main": 0.2, "side": 0.0, "soup": 0.5, "dessert": 0.75, "empty": 0.3}
    out = {lo.key: lo for lo in slot_leftovers(before, after)}
    assert out["main"].fraction == pytest.approx(0.25)
    assert out["main"].leftover_g == pytest.approx(75.0)
    assert out["main"].eaten_g == pytest.approx(225.0)
    assert out["side"].fraction == 0.0 and out["side"].flags == (LeftoverFlag.FULLY_EATEN,)
    assert out["soup"].fraction == 0.5 and out["soup"].leftover_g is None
    assert out["dessert"].fraction == 1.0 and out["dessert"].ratio == pytest.approx(1.25)
    assert out["dessert"].flags == (LeftoverFlag.AFTER_EXCEEDS_BEFORE,)
    assert out["empty"].flags == (LeftoverFlag.UNMATCHED_AFTER,)
    assert out["empty"].leftover_g is None
    assert all(lo.method is MatchMethod.SLOT and lo.measure is Measure.FILL
               and lo.score == 1.0 for lo in out.values())


def test_slot_leftovers_need_every_served_slot_measured() -> None:
    with pytest.raises(MatchInputError, match="main"):
        slot_leftovers({"main": SlotFill(0.8, 300.0)}, {})
    with pytest.raises(MatchInputError, match="finite"):
        slot_leftovers({"main": SlotFill(0.8, 300.0)}, {"main": float("nan")})
    with pytest.raises(MatchInputError):
        slot_leftovers({"main": SlotFill(-0.1, 300.0)}, {"main": 0.0})


# --- edges and bad input -------------------------------------------------------------------


def test_empty_inputs() -> None:
    empty = match_regions([], [])
    assert (empty.pairs, empty.unmatched_before, empty.unmatched_after) == ((), (), ())
    assert leftovers([], [], empty) == [] and slot_leftovers({}, {}) == []
    before = before_tray()
    gone = match_regions(before, [])
    out = leftovers(before, [], gone)
    assert [lo.flags for lo in out] == [(LeftoverFlag.FULLY_EATEN,)] * 5
    assert sum(lo.eaten_g or 0 for lo in out) == pytest.approx(600.0)
    new = match_regions([], before)
    assert new.unmatched_after == (0, 1, 2, 3, 4)
    assert all(lo.flags == (LeftoverFlag.UNMATCHED_AFTER,) for lo in leftovers([], before, new))


@pytest.mark.parametrize("kwargs", [
    {"embedding": np.array([1.0, np.nan, 0.0])},
    {"embedding": np.array([np.inf, 0.0])},
    {"embedding": np.zeros(4)},
    {"embedding": np.ones((2, 2))},
    {"box": (10.0, 10.0, 5.0, 20.0)},
    {"box": (0.0, 0.0, float("nan"), 1.0)},
    {"box": (0.0, 0.0, 1.0)},
    {"area_px": -1.0},
    {"area_px": float("inf")},
    {"grams": float("nan")},
    {"volume_ml": -5.0},
])
def test_invalid_regions_raise_a_clear_value_error(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"key": "x", "box": (0.0, 0.0, 10.0, 10.0), "area_px": 50.0,
                                 "embedding": np.ones(4)}
    fields.update(kwargs)
    with pytest.raises(MatchInputError) as err:
        Region(**fields)  # type: ignore[arg-type]
    assert isinstance(err.value, ValueError) and "'x'" in str(err.value)


def test_mismatched_embedding_dimensions_raise() -> None:
    before = [Region("b", (0, 0, 10, 10), 100.0, np.ones(8))]
    after = [Region("a", (0, 0, 10, 10), 100.0, np.ones(16))]
    with pytest.raises(MatchInputError, match="dimensions"):
        match_regions(before, after)
    with pytest.raises(MatchInputError, match="Region"):
        match_regions(before, [(0, 0, 10, 10)])  # type: ignore[list-item]


@pytest.mark.parametrize("kwargs", [{"w_appearance": -1.0}, {"cos_same": 0.1},
                                    {"max_match_cost": 0.0}, {"position_radii": 0.0},
                                    {"w_label": float("nan")}])
def test_invalid_config_raises(kwargs: dict[str, float]) -> None:
    with pytest.raises(MatchInputError):
        MatchConfig(**kwargs)


def test_embeddings_are_normalised_and_read_only() -> None:
    r = Region("x", (0, 0, 10, 10), 100.0, [3.0, 4.0])
    assert r.embedding is not None
    np.testing.assert_allclose(r.embedding, [0.6, 0.8])
    with pytest.raises(ValueError):
        r.embedding[0] = 1.0


def test_shift_estimate_without_votes_is_identity() -> None:
    before = [reg("p", (100, 100), 40, DISH["pasta"])]
    after = [reg("q", (300, 300), 40, DISH["salad"])]
    assert estimate_tray_shift(before, after) == TrayShift()


def test_all_hypotheses_scored_at_once_match_the_one_to_one_count() -> None:
    # Lookalike dishes make votes that share a region, so some hypotheses take the
    # one-to-one path and some the summed one; both must give what `_agreeing` gives.
    rng = np.random.default_rng(3)
    cfg = matching.MatchConfig()
    checked = clashing = 0
    for _ in range(30):
        n = int(rng.integers(2, 8))
        cb = rng.uniform(50, 750, size=(n, 2))
        ca = cb + rng.normal(20, 15, size=(n, 2))
        votes = sorted({(float(rng.uniform(0.8, 1)), int(rng.integers(n)), int(rng.integers(n)))
                        for _ in range(2 * n)}, key=lambda v: -v[0])
        radii = rng.uniform(30, 120, size=n)
        hyp = matching._hypotheses(votes, cb, ca, cfg)
        dist = matching._distances(hyp, votes, cb, ca)
        scored = matching._supports(dist, votes, radii)
        for h in range(len(hyp)):
            agree = matching._agreeing(dist[h], votes, radii)
            assert scored[h] == pytest.approx(sum(v[0] for v in agree))
            clashing += len(agree) < int((dist[h] <= radii[[i for _, i, _ in votes]]).sum())
        checked += len(hyp)
    assert checked > 300 and clashing > 20


def test_a_two_vote_hypothesis_is_the_motion_that_took_the_pair() -> None:
    cb = np.array([[100.0, 100.0], [300.0, 180.0]])
    ca = TrayShift(12.0, 30.0, -20.0).apply(cb)
    hyp = matching._hypotheses([(0.9, 0, 0), (0.9, 1, 1)], cb, ca, matching.MatchConfig())
    assert len(hyp) == 4  # identity, two translations, one pair
    np.testing.assert_allclose(hyp[0], 0)
    np.testing.assert_allclose(hyp[1], [0, *(ca[0] - cb[0])])
    np.testing.assert_allclose(hyp[3], [math.radians(12.0), 30.0, -20.0], atol=1e-9)


# --- the shipped model on real photos ------------------------------------------------------

REPO = Path(__file__).resolve().parents[3]
MODEL = REPO / "model" / "artifacts" / "traylens.onnx"
PHOTOS = REPO / "tests" / "fixtures" / "ecustfd" / "JPEGImages"
# PIL's rotate(10) turns the photo counter-clockwise on screen: -10 degrees in the
# (x right, y down) frame of TrayShift.
TURN, SHIFT = 10.0, (40, 25)
# Measured with the shipped model (1.4.0): left shares 0.70 and 0.50 read back as
# 0.70-0.72 and 0.52-0.61 over turns of -10, 0 and +10 degrees.
AREA_TOLERANCE = 0.12


@pytest.fixture(scope="module")
def tray_model() -> TrayModel:
    if not MODEL.is_file():
        pytest.skip(f"no shipped model at {MODEL}")
    return TrayModel(MODEL, threads=1)


def _regions(model: TrayModel, img: Image.Image) -> list[Region]:
    items = model.predict([img])[0].items
    return [Region(f"{k}:{it.label}", it.box, it.area_px, it.embedding, it.label)
            for k, it in enumerate(items)]


def _after_photo(img: Image.Image, mask: np.ndarray, keep: np.ndarray) -> Image.Image:
    """Paint the region (its mask, grown a little) out with the plate around it, except
    within the half-plane `keep`, then turn and shift the whole photo. The plate comes from
    inpainting the whole region, so the eaten part looks like empty plate, not a smear of
    the food's edge."""
    arr = np.asarray(img).copy()
    whole = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    plate = cv2.inpaint(arr, whole.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    cut = whole & ~keep
    arr[cut] = plate[cut]
    table = tuple(int(v) for v in np.median(np.concatenate([arr[0], arr[-1]]), axis=0))
    return Image.fromarray(arr).rotate(TURN, resample=Image.Resampling.BILINEAR,
                                       translate=SHIFT, fillcolor=table)


def _real_case(model: TrayModel, photo: str, food: str, left: float,
               side: str) -> tuple[list[Region], list[Region], int, float]:
    """Before regions, after regions, the food's before index and its true left share."""
    img = load_image(PHOTOS / photo)
    items = model.predict([img])[0].items
    index = next(k for k, it in enumerate(items) if it.label == food)
    mask = full_item_mask(items[index], img.size)
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    if side == "bottom":  # keep the lower `left` share of the mask's rows
        keep = np.arange(h)[:, None] > np.quantile(ys, 1 - left)
    else:  # keep the left-hand share
        keep = np.arange(w)[None, :] < np.quantile(xs, left)
    keep = np.broadcast_to(keep, mask.shape)
    true_left = float((mask & keep).sum() / mask.sum())
    after = _regions(model, _after_photo(img, mask, keep))
    return _regions(model, img), after, index, true_left


@pytest.mark.slow
def test_real_photo_partly_eaten_turned_tray(tray_model: TrayModel) -> None:
    before, after, orange, true_left = _real_case(tray_model, "mix001T(1).JPG", "orange",
                                                  0.7, "bottom")
    m = match_regions(before, after)
    labels = {before[p.before_index].label: after[p.after_index].label for p in m.pairs}
    assert labels == {"coin": "coin", "apple": "apple", "orange": "orange"}
    out = leftovers(before, after, m)
    assert out[orange].fraction == pytest.approx(true_left, abs=AREA_TOLERANCE)
    assert m.unmatched_after == ()


@pytest.mark.slow
def test_real_photo_food_removed_is_fully_eaten(tray_model: TrayModel) -> None:
    before, after, apple, _ = _real_case(tray_model, "mix001T(1).JPG", "apple", 0.0,
                                         "bottom")
    m = match_regions(before, after)
    assert apple in m.unmatched_before
    assert leftovers(before, after, m)[apple].flags == (LeftoverFlag.FULLY_EATEN,)
    assert sorted(before[p.before_index].label or "" for p in m.pairs) == ["coin", "orange"]
    # the two untouched regions fix the turn of the photo
    assert m.tray_shift.rotation_deg == pytest.approx(-TURN, abs=1.5)
    w, h = Image.open(PHOTOS / "mix001T(1).JPG").size
    centre = np.array([w / 2, h / 2])
    t = math.radians(TURN)
    for r in before:
        d = np.asarray(r.centre) - centre
        turned = np.array([math.cos(t) * d[0] + math.sin(t) * d[1],
                           -math.sin(t) * d[0] + math.cos(t) * d[1]])
        expected = centre + turned + np.array(SHIFT)
        np.testing.assert_allclose(m.tray_shift.apply(r.centre)[0], expected, atol=10.0)


@pytest.mark.slow
def test_real_photo_renamed_half_eaten_dish_keeps_its_name(tray_model: TrayModel) -> None:
    # The lower half of the orange left: the model finds it again but calls it a mango.
    # (With the left half left, 1.6.0 does not find it at all, as it misses most half-eaten
    # dishes; 1.5.0, whose plate-sized mask painted more of the plate, called it a mango.)
    before, after, orange, true_left = _real_case(tray_model, "mix012T(4).JPG", "orange",
                                                  0.5, "bottom")
    m = match_regions(before, after)
    pair = next(p for p in m.pairs if p.before_index == orange)
    lo = leftovers(before, after, m)[orange]
    assert lo.key == before[orange].key and lo.after_index == pair.after_index
    assert lo.fraction == pytest.approx(true_left, abs=AREA_TOLERANCE)
