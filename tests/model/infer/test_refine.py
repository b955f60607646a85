"""model.infer.refine: the food inside its container, on drawn scenes with known answers, and
through TrayModel.predict on real fixture photos."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from model.infer.images import load_image
from model.infer.refine import (
    EMPTY_CONTAINER,
    FOOD_IN_CONTAINER,
    MODEL_MASKS,
    REFINED_MASKS,
    container_state,
    holds_food,
    mask_kind,
    refine_item_mask,
)
from model.infer.runtime import PostConfig, Prediction, TrayModel, full_item_mask
from model.metrics import mask_iou

SIZE = (300, 400)  # (height, width) of the drawn scenes
BOX = (100.0, 50.0, 300.0, 250.0)  # a 200 x 200 item box
GREY, WHITE = (120, 125, 130), (235, 235, 232)


def _scene(rng: np.random.Generator, container: tuple[int, int, int] | None,
           food: tuple[int, int, int], food_radius: int) -> np.ndarray:
    """A grey tray, optionally a plate of `container` colour filling BOX, and a food disc
    at its centre; a little noise so the colour models have something to fit."""
    img = np.empty((*SIZE, 3), np.uint8)
    img[:] = GREY
    if container is not None:
        cv2.circle(img, (200, 150), 100, container, -1)
    cv2.circle(img, (200, 150), food_radius, food, -1)
    noise = rng.integers(-6, 7, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def _disc(radius: int) -> np.ndarray:
    """A full-image bool disc at the scene's centre."""
    out = np.zeros(SIZE, np.uint8)
    cv2.circle(out, (200, 150), radius, 1, -1)
    return out.astype(bool)


def _crop(full: np.ndarray) -> np.ndarray:
    """The BOX crop of a full-image mask (Item.mask's convention)."""
    return full[50:250, 100:300]


def test_food_on_a_plate_loses_the_plate() -> None:
    # The model's mask is the plate (as mealtray's boxes teach it); the food is a red disc of
    # half the plate's radius: the refined mask is the food, within a few pixels.
    rgb = _scene(np.random.default_rng(0), WHITE, (200, 40, 30), 50)
    plate = _crop(_disc(100))
    refined = refine_item_mask(rgb, BOX, plate)
    assert refined.shape == plate.shape
    assert mask_iou(plate, _crop(_disc(50))) == pytest.approx(0.25, abs=0.01)
    assert mask_iou(refined, _crop(_disc(50))) > 0.9


def test_salad_in_a_dark_bowl() -> None:
    # A neutral dark container counts as much as a white one.
    rgb = _scene(np.random.default_rng(1), (25, 25, 28), (90, 170, 60), 60)
    refined = refine_item_mask(rgb, BOX, _crop(_disc(100)))
    assert mask_iou(refined, _crop(_disc(60))) > 0.9


def test_food_without_a_container_keeps_the_model_mask() -> None:
    # An apple filling its own box on a white plate: its rim is as coloured as its core, so
    # there is no container to remove and the model's mask stays as it is.
    rgb = _scene(np.random.default_rng(2), None, (190, 50, 40), 100)
    rgb[_disc(100) == 0] = WHITE
    apple = _crop(_disc(98))
    assert not holds_food(rgb[50:250, 100:300], apple, _crop(_disc(70)))
    assert np.array_equal(refine_item_mask(rgb, BOX, apple), apple)


def test_sealed_white_pot_keeps_the_model_mask() -> None:
    # A yogurt pot's white lid with a small print: the core shows little colour, so GrabCut
    # (which would keep only the print) is not asked.
    rgb = _scene(np.random.default_rng(3), WHITE, (40, 60, 200), 20)
    pot = _crop(_disc(100))
    assert np.array_equal(refine_item_mask(rgb, BOX, pot), pot)


def test_degenerate_inputs_come_back_unchanged() -> None:
    rgb = _scene(np.random.default_rng(4), WHITE, (200, 40, 30), 50)
    empty = np.zeros((200, 200), bool)
    assert np.array_equal(refine_item_mask(rgb, BOX, empty), empty)
    tiny = np.ones((3, 3), bool)
    assert np.array_equal(refine_item_mask(rgb, (10.0, 10.0, 13.0, 13.0), tiny), tiny)
    flat = np.full((*SIZE, 3), 128, np.uint8)  # one colour: nothing to learn from
    plate = _crop(_disc(100))
    assert np.array_equal(refine_item_mask(flat, BOX, plate), plate)


def test_reduced_decode_maps_back_to_original_pixels() -> None:
    # The same scene decoded at half size: the mask comes back in the box's original pixels
    # and agrees with the full-size answer.
    rgb = _scene(np.random.default_rng(5), WHITE, (200, 40, 30), 50)
    half = cv2.resize(rgb, (SIZE[1] // 2, SIZE[0] // 2), interpolation=cv2.INTER_AREA)
    plate = _crop(_disc(100))
    full, reduced = refine_item_mask(rgb, BOX, plate), refine_item_mask(half, BOX, plate, 0.5)
    assert reduced.shape == plate.shape and mask_iou(full, reduced) > 0.9


def test_container_states_of_full_emptied_and_other_boxes() -> None:
    # What a plate-shaped model mask's box shows: food on the plate, the plate eaten clean
    # (a few crumbs), a third of the food left (neither), an apple with no container.
    plate = _crop(_disc(100))
    full = _scene(np.random.default_rng(6), WHITE, (200, 40, 30), 60)
    assert container_state(full, BOX, plate) == FOOD_IN_CONTAINER
    clean = _scene(np.random.default_rng(7), WHITE, (200, 40, 30), 8)
    assert container_state(clean, BOX, plate) == EMPTY_CONTAINER
    third = _scene(np.random.default_rng(8), WHITE, (200, 40, 30), 40)  # ~25% of the core
    assert container_state(third, BOX, plate) is None
    apple = _scene(np.random.default_rng(2), None, (190, 50, 40), 100)
    assert container_state(apple, BOX, _crop(_disc(98))) is None
    # A white bowl of white rice shows no colour: "empty" alone, so pairing (food before,
    # empty after) never reads it as eaten unless it showed coloured food before.
    rice = _scene(np.random.default_rng(9), WHITE, (240, 240, 236), 70)
    assert container_state(rice, BOX, plate) == EMPTY_CONTAINER
    assert container_state(full, BOX, np.zeros((200, 200), bool)) is None
    half = cv2.resize(clean, (SIZE[1] // 2, SIZE[0] // 2), interpolation=cv2.INTER_AREA)
    assert container_state(half, BOX, plate, 0.5) == EMPTY_CONTAINER  # a reduced decode


def test_predict_records_containers_when_asked(model_path: Path, mealtray_photo: Path) -> None:
    # The fixture tray: its salad bowl holds coloured food, its yogurt pot is neither; items
    # record nothing unless PostConfig.containers asks.
    model = TrayModel(model_path)
    photo = load_image(mealtray_photo, fit=model.meta.input_size)
    plain = model.predict([photo])[0].items
    assert all(it.container is None for it in plain)
    (pred,) = model.predict([photo], cfg=PostConfig(containers=True))
    states = {it.label: it.container for it in pred.items}
    assert states["Starter"] == FOOD_IN_CONTAINER and states["Yogurt"] is None
    both = model.predict([photo], cfg=PostConfig(containers=True, refine_masks=True))[0].items
    assert [it.container for it in both] == [it.container for it in pred.items]  # model masks


@pytest.fixture(scope="module")
def mealtray_photo(fixtures_dir: Path) -> Path:
    return next((fixtures_dir / "mealtray" / "labeled").glob("*(2770).jpg"))


def test_predict_with_refined_masks(model_path: Path, mealtray_photo: Path,
                                    fixtures_dir: Path) -> None:
    model = TrayModel(model_path)
    photos = [load_image(mealtray_photo, fit=model.meta.input_size),
              load_image(fixtures_dir / "ecustfd" / "JPEGImages" / "mix001T(1).JPG",
                         fit=model.meta.input_size)]
    plain = model.predict(photos)
    refined = model.predict(photos, cfg=PostConfig(refine_masks=True))
    assert _same(plain, model.predict(photos, cfg=PostConfig(refine_masks=False)))
    changed = 0
    for a, b in zip(plain, refined, strict=True):
        assert [(i.box, i.label, i.score) for i in a.items] == [
            (i.box, i.label, i.score) for i in b.items]  # the same items, only masks differ
        for x, y in zip(a.items, b.items, strict=True):
            assert np.array_equal(x.embedding, y.embedding)
            if y.mask is None:
                continue
            assert y.mask.shape == x.mask.shape and y.area_px == float(y.mask.sum())
            x0, y0, x1, y1 = y.box
            assert all(x0 - 1 <= px <= x1 + 1 and y0 - 1 <= py <= y1 + 1 for px, py in y.polygon)
            if y.label == "coin":
                assert np.array_equal(x.mask, y.mask)
            changed += not np.array_equal(x.mask, y.mask)
            # The refined area lies mostly inside the model's own (a plate's food, not more).
            full_x = full_item_mask(x, (a.width, a.height))
            full_y = full_item_mask(y, (b.width, b.height))
            assert (full_x & full_y).sum() >= 0.8 * full_y.sum()
    assert changed >= 1  # the 2770 tray's main plate and salad bowl hold food
    assert _same(model.predict(photos, cfg=PostConfig(refine_masks=True)), refined)  # seeded


def _same(a: list[Prediction], b: list[Prediction]) -> bool:
    """Predictions equal field by field (arrays by value)."""
    def fields(p: Prediction) -> list[object]:
        return [v.tolist() if isinstance(v, np.ndarray) else v
                for it in p.items for v in vars(it).values()]
    return all(fields(x) == fields(y) for x, y in zip(a, b, strict=True))


def test_mask_kind_of_the_setting() -> None:
    assert (mask_kind(False), mask_kind(True)) == (MODEL_MASKS, REFINED_MASKS)
