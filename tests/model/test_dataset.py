"""model.dataset: dense training targets by hand, and real fixture images through the dataset."""
from __future__ import annotations

import math

import pytest
import torch

from model.data.coco import CocoDataset
from model.dataset import InputSpec, TrayDataset, build_targets, train_transforms

SPEC = InputSpec(size=(256, 192), stride=8, mean=(0.5,) * 3, std=(0.5,) * 3)


def _targets(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    masks = torch.zeros(len(boxes), 192, 256, dtype=torch.uint8)
    return build_targets(torch.tensor(boxes), torch.tensor(labels), masks, 3, SPEC)


def test_small_object_regresses_on_the_3x3_cells_round_its_centre() -> None:
    t = _targets([[100.0, 60.0, 116.0, 76.0]], [1])  # 2x2 cells, centre cell (13, 8)
    cells = torch.nonzero(t["reg_w"] > 0).tolist()
    assert sorted(cells) == [[y, x] for y in (7, 8, 9) for x in (12, 13, 14)]
    assert t["heat"][1].max() == 1.0 and t["heat"][0].max() == 0.0
    y, x = torch.nonzero(t["heat"][1] == 1.0)[0].tolist()
    assert t["reg_box"][:, y, x].tolist() == [100.0, 60.0, 116.0, 76.0]


def test_long_object_regresses_along_its_length_inside_the_box() -> None:
    box = [120.0, 8.0, 144.0, 184.0]  # a bottle: 3 cells wide, 22 tall
    t = _targets([box], [2])
    ys, xs = torch.nonzero(t["reg_w"] > 0, as_tuple=True)
    assert int(ys.max() - ys.min()) + 1 == 11  # the inner half of its 22 cells of length
    assert int(xs.max() - xs.min()) + 1 == 3
    centres_y, centres_x = (ys + 0.5) * 8, (xs + 0.5) * 8
    assert bool(((centres_x > box[0]) & (centres_x < box[2])).all())
    assert bool(((centres_y > box[1]) & (centres_y < box[3])).all())
    assert bool((t["reg_box"][:, ys, xs] == torch.tensor(box).view(4, 1)).all())
    w = t["reg_w"][ys, xs]
    assert float(w.sum()) == pytest.approx(math.log(24 * 176))
    assert float(w.max()) == float(t["reg_w"][12, 16])  # centre cell weighs most...
    assert float(w.min()) == pytest.approx(0.3 * float(w.max()))  # ...the ends at the floor


def test_each_object_weighs_log_of_its_area_however_many_cells_it_has() -> None:
    plate, roll = [8.0, 8.0, 248.0, 184.0], [16.0, 16.0, 32.0, 32.0]
    t = _targets([plate, roll], [0, 1])
    roll_cells = (t["reg_box"] == torch.tensor(roll).view(4, 1, 1)).all(dim=0)
    plate_cells = (t["reg_w"] > 0) & ~roll_cells
    assert int(plate_cells.sum()) > 15 * int(roll_cells.sum())
    assert float(t["reg_w"][roll_cells].sum()) == pytest.approx(math.log(16 * 16))
    assert float(t["reg_w"][plate_cells].sum()) == pytest.approx(math.log(240 * 176))


def test_a_shared_cell_regresses_the_smaller_object() -> None:
    t = _targets([[40.0, 40.0, 200.0, 160.0], [112.0, 92.0, 128.0, 108.0]], [0, 1])
    y, x = torch.nonzero(t["heat"][1] == 1.0)[0].tolist()
    assert t["reg_box"][:, y, x].tolist() == [112.0, 92.0, 128.0, 108.0]


def test_real_fixture_images_give_aligned_targets(mealtray_ds: CocoDataset) -> None:
    from nutrition_db import label_map

    labels = label_map().labels
    for transforms in (None, train_transforms()):
        torch.manual_seed(0)
        image, t = TrayDataset(mealtray_ds, labels, SPEC, transforms)[0]
        assert image.shape == (3, 192, 256)
        n = int((t["labels"] >= 0).sum())
        assert n >= 1 and t["heat"].shape == (len(labels), 24, 32)
        for box, lab in zip(t["boxes"][:n], t["labels"][:n], strict=True):
            cx, cy = int((box[0] + box[2]) / 16), int((box[1] + box[3]) / 16)
            assert float(t["heat"][lab, min(cy, 23), min(cx, 31)]) > 0.5
