"""model.infer.enrolment with a stand-in model: which area an enrolment photo gets, and
which areas may size which items; with the real model: a refined area on a real tray."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from model.data.importers.mealtray import read_names, read_yolo
from model.infer.enrolment import (
    AREA_SOURCES,
    enrolled_region,
    model_area,
    size_references,
)
from model.infer.images import load_image
from model.infer.runtime import Item, PostConfig, Prediction, TrayModel

EMB = np.array([1.0, 0.0], dtype=np.float32)


def _item(box: tuple[float, float, float, float], area: float, label_index: int = 0) -> Item:
    return Item(box=box, label="x", label_index=label_index, score=0.9,
                class_scores=np.array([1.0, 0.0]), mask=None, polygon=None, area_px=area,
                embedding=EMB)


class StandIn:
    """The two TrayModel calls enrolment makes, answering fixed items."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.meta = SimpleNamespace(food_ids=["food:1", None])
        self.embedded: list[dict[str, Any]] = []
        self.configs: list[PostConfig | None] = []

    def predict(self, images: list[Image.Image],
                cfg: PostConfig | None = None) -> list[Prediction]:
        self.configs.append(cfg)
        return [Prediction(images[0].width, images[0].height, self.items)]

    def embed_enrolment(self, img: Image.Image, **region: Any) -> list[np.ndarray]:
        self.embedded.append(region)
        return [EMB]


IMG = Image.new("RGB", (100, 50))


def test_mask_area_is_the_masks_own() -> None:
    mask = np.zeros((50, 100), dtype=bool)
    mask[10:20, 10:30] = True
    region = enrolled_region(StandIn([]), IMG, mask=mask)  # type: ignore[arg-type]
    assert (region.area_px, region.area_from) == (200.0, "mask")


def test_box_takes_the_overlapping_items_mask_area() -> None:
    model = StandIn([_item((0, 0, 40, 40), 900.0), _item((50, 0, 90, 40), 700.0)])
    region = enrolled_region(model, IMG, box=(52, 0, 90, 40))  # type: ignore[arg-type]
    assert (region.area_px, region.area_from) == (700.0, "model_mask")
    assert model.embedded == [{"boxes": [(52, 0, 90, 40)]}]
    assert model.configs == [PostConfig(refine_masks=False)]


def test_refine_measures_on_refined_masks_and_says_so() -> None:
    model = StandIn([_item((50, 0, 90, 40), 400.0)])
    region = enrolled_region(model, IMG, box=(52, 0, 90, 40),  # type: ignore[arg-type]
                             refine=True)
    assert (region.area_px, region.area_from) == (400.0, "refined_mask")
    assert model.configs == [PostConfig(refine_masks=True)]
    # a given mask is its own area: refining changes nothing and asks the model nothing
    mask = np.zeros((50, 100), dtype=bool)
    mask[0:5, 0:8] = True
    region = enrolled_region(model, IMG, mask=mask, refine=True)  # type: ignore[arg-type]
    assert (region.area_px, region.area_from) == (40.0, "mask")
    assert len(model.configs) == 1


def test_fallbacks_box_then_whole_image() -> None:
    model = StandIn([_item((0, 0, 40, 40), 900.0, label_index=1)])  # class without a food
    assert model_area(model, IMG, None) is None  # type: ignore[arg-type]
    region = enrolled_region(model, IMG, box=(0, 0, 10, 20))  # type: ignore[arg-type]
    assert (region.area_px, region.area_from) == (200.0, "box")
    region = enrolled_region(model, IMG)  # type: ignore[arg-type]
    assert (region.area_px, region.area_from) == (5000.0, "image")


def test_box_and_mask_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        enrolled_region(StandIn([]), IMG, box=(0, 0, 1, 1),  # type: ignore[arg-type]
                        mask=np.ones((50, 100), dtype=bool))


@pytest.mark.parametrize("masks, allowed", [
    ("model", {"mask", "model_mask", "box"}),
    ("refined", {"mask", "refined_mask", "box"}),
])
def test_size_references_pair_like_with_like(masks: str, allowed: set[str]) -> None:
    assert size_references(masks) == allowed
    # every other source is refused: the other kind of model mask, and the whole photo
    assert set(AREA_SOURCES) - size_references(masks) == (
        {"image", "refined_mask" if masks == "model" else "model_mask"})


def test_size_references_refuse_unknown_masks() -> None:
    with pytest.raises(ValueError, match="masks must be one of"):
        size_references("model_mask")


def test_area_sources_best_first() -> None:
    assert AREA_SOURCES == ("mask", "model_mask", "refined_mask", "box", "image")


def test_refined_enrolment_of_the_salad_on_a_real_tray(model_path: Path,
                                                       fixtures_dir: Path) -> None:
    """The 2770 tray's salad (the annotated Starter) in its bowl: refined, the area is the
    salad's, well under the model's mask of the whole bowl, and says it was refined."""
    labeled = fixtures_dir / "mealtray" / "labeled"
    photo = next(labeled.glob("*(2770).jpg"))
    names = read_names(fixtures_dir / "mealtray" / "obj.names")
    rows = read_yolo(photo.with_suffix(".txt"), len(names))
    _, cx, cy, w, h = next(r for r in rows if names[r[0]] == "Starter")
    model = TrayModel(model_path)
    img = load_image(photo)
    box = ((cx - w / 2) * img.width, (cy - h / 2) * img.height,
           (cx + w / 2) * img.width, (cy + h / 2) * img.height)
    plain = enrolled_region(model, img, box=box)
    refined = enrolled_region(model, img, box=box, refine=True)
    assert (plain.area_from, refined.area_from) == ("model_mask", "refined_mask")
    # The ellipse in the box is the bowl's size (48,490 px). 1.5.0's mask was the bowl
    # (47,975 px), refined to the salad (32,018); 1.6.0's mask already follows the salad
    # (36,880), and at this full decode the refinement finds no rim to cut it at.
    bowl = np.pi / 4 * (box[2] - box[0]) * (box[3] - box[1])
    assert 0 < refined.area_px <= plain.area_px, (plain.area_px, refined.area_px)
    assert refined.area_px < 0.85 * bowl, (refined.area_px, bowl)
    assert np.array_equal(plain.embedding, refined.embedding)  # refining changes no embedding
