"""model.training.sources: composed trays come from the training side of the split only."""
from __future__ import annotations

from pathlib import Path

from model.train import parse_args
from model.training.sources import compose_training_trays, load_sources, split_sources
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
