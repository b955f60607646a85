"""Mask encodings: hand-checked RLE, round trips, polygons on a real box."""
from __future__ import annotations

import numpy as np
import pytest

from model.data.coco import CocoFormatError
from model.data.masks import (
    compress_rle,
    mask_bbox,
    mask_to_polygons,
    polygons_to_mask,
    rle_decode,
    rle_encode,
    rle_string_to_counts,
    segmentation_to_mask,
)


def test_rle_by_hand() -> None:
    mask = np.array([[0, 1, 1], [0, 1, 0]], dtype=bool)
    # Column-major: col0 = 0,0  col1 = 1,1  col2 = 1,0 -> runs 2 zeros, 3 ones, 1 zero.
    assert rle_encode(mask) == {"size": [2, 3], "counts": [2, 3, 1]}
    starts_with_one = np.array([[1, 0]], dtype=bool)
    assert rle_encode(starts_with_one)["counts"] == [0, 1, 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rle_round_trips_compressed_and_not(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((37, 53)) > 0.6
    rle = rle_encode(mask)
    assert np.array_equal(rle_decode(rle), mask)
    packed = compress_rle(rle)
    assert isinstance(packed["counts"], str)
    assert rle_string_to_counts(packed["counts"]) == rle["counts"]
    assert np.array_equal(rle_decode(packed), mask)


def test_rle_errors_are_clear() -> None:
    with pytest.raises(CocoFormatError, match="sum to 5, expected h\\*w = 6"):
        rle_decode({"size": [2, 3], "counts": [2, 3]})
    with pytest.raises(CocoFormatError, match="needs 'size'"):
        rle_decode({"counts": [1]})
    with pytest.raises(CocoFormatError, match="differs from image"):
        segmentation_to_mask({"size": [2, 3], "counts": [6]}, 3, 2)


def test_polygon_round_trip_and_box() -> None:
    mask = np.zeros((60, 80), dtype=bool)
    mask[10:30, 20:50] = True
    polys = mask_to_polygons(mask)
    assert len(polys) == 1
    back = polygons_to_mask(polys, 60, 80)
    assert np.array_equal(back, mask)
    assert mask_bbox(mask) == [20.0, 10.0, 30.0, 20.0]
    assert np.array_equal(segmentation_to_mask(polys, 60, 80), mask)
    with pytest.raises(ValueError, match="empty mask"):
        mask_bbox(np.zeros((3, 3), dtype=bool))


@pytest.mark.parametrize("seed", range(10))
def test_rle_strings_match_pycocotools(seed: int) -> None:
    mask_utils = pytest.importorskip("pycocotools.mask")  # a [dev] dependency
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 80)), int(rng.integers(1, 80)))
    m = rng.random(shape) > rng.random()
    ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    mine = compress_rle(rle_encode(m))
    assert mine == {"size": list(ref["size"]), "counts": ref["counts"].decode()}
    assert np.array_equal(rle_decode({"size": ref["size"], "counts": ref["counts"]}), m)
