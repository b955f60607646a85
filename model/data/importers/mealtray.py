"""Mealtray (French canteen kiosk): YOLO txt labels + obj.names, grouped into capture runs.

The kiosk shoots each tray about five times in a row (full frame, two zoomed crops, two
more full frames), numbered consecutively. A run is a maximal stretch of consecutive
numbers showing the same tray; train/val splits must keep runs whole.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model.data.builder import DatasetBuilder
from model.data.coco import CocoDataset
from model.data.importers.common import SourceFormatError, image_size, list_images, relative_name

SOURCE = "mealtray"
# Bhattacharyya distance of centre hue/saturation histograms. Measured on the 375 images:
# neighbours of one tray whose labels differ by a missed box lie at 0.17-0.18; the closest
# pair of different trays lies at 0.28. Below this, a label change does not end a run.
SAME_TRAY_MAX_DISTANCE = 0.25
_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)(?P<suffix>\D*)$")
# Labels may overshoot [0, 1] by rounding in the labelling tool.
_REL_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Shot:
    """One labelled image: its series (file name without the number) and number."""

    path: Path
    series: str
    number: int
    labels: tuple[tuple[int, float, float, float, float], ...]

    def classes(self) -> Counter[int]:
        """Multiset of the class ids on this tray."""
        return Counter(lab[0] for lab in self.labels)


def read_names(path: Path) -> list[str]:
    """Class names, one per line, in class-id order (exactly as written)."""
    if not path.is_file():
        raise SourceFormatError(f"{path}: obj.names not found")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    if not names or len(set(names)) != len(names):
        raise SourceFormatError(f"{path}: expected unique class names, one per line")
    return names


def read_yolo(path: Path, n_classes: int) -> tuple[tuple[int, float, float, float, float], ...]:
    """Rows (class, cx, cy, w, h) relative to the image; errors name file and line."""
    if not path.is_file():
        raise SourceFormatError(f"{path}: label file not found for its image")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            cls, vals = int(parts[0]), [float(v) for v in parts[1:]]
        except ValueError as exc:
            raise SourceFormatError(f"{path}:{i}: not numbers: {line!r}") from exc
        if len(vals) != 4:
            raise SourceFormatError(f"{path}:{i}: expected 'class cx cy w h', got {line!r}")
        if not 0 <= cls < n_classes:
            raise SourceFormatError(
                f"{path}:{i}: class {cls} not in obj.names (0..{n_classes - 1})"
            )
        cx, cy, w, h = vals
        if w <= 0 or h <= 0 or min(vals) < -_REL_TOLERANCE or max(vals) > 1 + _REL_TOLERANCE:
            raise SourceFormatError(f"{path}:{i}: relative box out of range: {line!r}")
        rows.append((cls, cx, cy, w, h))
    return tuple(rows)


def _numbered(path: Path) -> re.Match[str]:
    """The file name split around its capture number (the last integer in it)."""
    m = _NUMBERED.match(path.stem)
    if m is None:
        raise SourceFormatError(f"{path}: no capture number in the file name")
    return m


def shot_number(path: str | Path) -> int:
    """A kiosk photo's capture number: the last integer in its file name ('... (1538).jpg')."""
    return int(_numbered(Path(path))["num"])


def parse_shot(path: Path, n_classes: int) -> Shot:
    """A Shot from an image path; its number is the last integer in the file name."""
    m = _numbered(path)
    series = str(path.parent / (m["prefix"] + "#" + m["suffix"]))
    labels = read_yolo(path.with_suffix(".txt"), n_classes)
    return Shot(path=path, series=series, number=int(m["num"]), labels=labels)


def tray_distance(a: Path, b: Path) -> float:
    """Appearance distance of two photos (centre hue/saturation histograms), 0 = equal."""
    return float(cv2.compareHist(_centre_hist(a), _centre_hist(b), cv2.HISTCMP_BHATTACHARYYA))


def _centre_hist(path: Path) -> np.ndarray:
    """Normalised hue/saturation histogram of the image centre."""
    img = cv2.imread(str(path))
    if img is None:
        raise SourceFormatError(f"{path}: not a readable image")
    h, w = img.shape[:2]
    # The centre holds the tray in the full frames and in the kiosk's zoomed crops alike.
    hsv = cv2.cvtColor(img[h // 6 : h * 5 // 6, w // 6 : w * 5 // 6], cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [30, 32], [0, 180, 0, 256])
    return cv2.normalize(hist, hist)


def capture_runs(shots: list[Shot]) -> list[list[Shot]]:
    """Group shots into runs: consecutive numbers of one series showing the same tray.

    A run ends at a gap in the numbers, or where the set of labelled items changes and
    the photos also look different (a label change alone can be a missed box).
    """
    runs: list[list[Shot]] = []
    for shot in sorted(shots, key=lambda s: (s.series, s.number)):
        prev = runs[-1][-1] if runs else None
        if prev is not None and _same_run(prev, shot):
            runs[-1].append(shot)
        else:
            runs.append([shot])
    return runs


def _same_run(prev: Shot, shot: Shot) -> bool:
    """Whether shot continues the run that prev ends."""
    if prev.series != shot.series or shot.number != prev.number + 1:
        return False
    if prev.classes() == shot.classes():
        return True
    return tray_distance(prev.path, shot.path) < SAME_TRAY_MAX_DISTANCE


def find_names_file(root: Path) -> Path:
    """obj.names in the image folder or the folder above it."""
    for cand in (root / "obj.names", root.parent / "obj.names"):
        if cand.is_file():
            return cand
    raise SourceFormatError(f"{root}: no obj.names here or in the parent folder")


def import_mealtray(root: str | Path, names_file: str | Path | None = None) -> CocoDataset:
    """Import a folder of mealtray images + YOLO txt files; split_group = capture run."""
    root = Path(root)
    names = read_names(Path(names_file) if names_file else find_names_file(root))
    paths = list_images(root)
    if not paths:
        raise SourceFormatError(f"{root}: no images found")
    shots = [parse_shot(p, len(names)) for p in paths]
    b = DatasetBuilder(image_root=root.resolve(), source=SOURCE, categories=names)
    for run in capture_runs(shots):
        group = run[0].path.stem  # a run is named after its first photo
        for shot in run:
            _add_shot(b, root, shot, names, group)
    return b.build()


def _add_shot(b: DatasetBuilder, root: Path, shot: Shot, names: list[str], group: str) -> None:
    """One shot -> an image record and its boxes in pixels."""
    width, height = image_size(shot.path)
    iid = b.image(relative_name(shot.path, root), width, height, split_group=group)
    for cls, cx, cy, w, h in shot.labels:
        x0 = max(0.0, (cx - w / 2) * width)
        y0 = max(0.0, (cy - h / 2) * height)
        x1 = min(float(width), (cx + w / 2) * width)
        y1 = min(float(height), (cy + h / 2) * height)
        b.annotation(iid, names[cls], [x0, y0, x1 - x0, y1 - y0])
