"""model.training.sources: composed trays come from the training side of the split only; the
calibration share is carved from that side, by whole groups."""
from __future__ import annotations

from pathlib import Path

from model.data.splits import group_of
from model.train import parse_args
from model.training.meta import meta_for
from model.training.sources import (
    compose_training_trays,
    load_sources,
    split_sources,
    split_with_calibration,
)
from tests.model.conftest import tiny_args


def test_composed_trays_come_from_training_crops_only(fixtures_dir: Path, tmp_path: Path) -> None:
    args = parse_args(tiny_args(fixtures_dir, tmp_path))
    sources = load_sources(args.data)
    train_parts, val_parts = split_sources(sources, args.val_fraction, args.seed)
    composed = compose_training_trays(train_parts, 3, 2, 0, tmp_path / "cache")
    assert len(composed.images) == 3 and composed.annotations
    trained_files = {im.file_name for ds in train_parts for im in ds.images}
    held_out = {im.file_name for ds in val_parts for im in ds.images}
    origins = {str(a.object_id).split("#")[0] for a in composed.annotations}
    assert origins <= trained_files and not origins & held_out
    assert all(composed.image_path(im).is_file() for im in composed.images)
    index = next((tmp_path / "cache").glob("composed-*/composed.json"))
    stamp = index.stat().st_mtime_ns
    again = compose_training_trays(train_parts, 3, 2, 0, tmp_path / "cache")
    assert index.stat().st_mtime_ns == stamp and len(again.images) == 3  # reused, not redone


def test_calibration_split_is_carved_from_the_training_side(fixtures_dir: Path,
                                                            tmp_path: Path) -> None:
    args = parse_args(tiny_args(fixtures_dir, tmp_path, "--calibration-fraction", "0.5"))
    sources = load_sources(args.data)
    train_parts, val_parts = split_sources(sources, args.val_fraction, args.seed)
    trained, calibration, held_out = split_with_calibration(
        sources, args.val_fraction, args.calibration_fraction, args.seed)
    assert held_out == val_parts  # the held-out side does not move
    for whole, t, c in zip(train_parts, trained, calibration, strict=True):
        names = [{im.file_name for im in ds.images} for ds in (whole, t, c)]
        assert names[1] | names[2] == names[0] and not names[1] & names[2]
        assert not {group_of(im) for im in t.images} & {group_of(im) for im in c.images}
    assert any(c.images for c in calibration) and all(t.images for t in trained)
    # None at 0: the training side whole, as before the setting existed.
    plain, none, _ = split_with_calibration(sources, args.val_fraction, 0.0, args.seed)
    assert plain == train_parts and not any(c.images for c in none)
    # The exported file records it, so the fit finds the same photos again.
    assert meta_for(args, ["a"], ["f"], "fp").training["calibration_fraction"] == 0.5
