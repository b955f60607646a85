"""model.infer.enrolment with a stand-in model: which area an enrolment photo gets."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from model.infer.enrolment import enrolled_region, model_area
from model.infer.runtime import Item, Prediction

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

    def predict(self, images: list[Image.Image]) -> list[Prediction]:
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
