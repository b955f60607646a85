"""Helpers every importer shares: errors, image discovery and sizes."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class SourceFormatError(ValueError):
    """A source file is missing or malformed; the message names the file (and line)."""


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError as exc:
        raise SourceFormatError(f"{path}: image file not found") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise SourceFormatError(f"{path}: not a readable image ({exc})") from exc


def list_images(folder: Path) -> list[Path]:
    """Image files under folder (recursive), sorted for determinism."""
    if not folder.is_dir():
        raise SourceFormatError(f"{folder}: not a folder")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def relative_name(path: Path, root: Path) -> str:
    """POSIX path of an image relative to the dataset's image root."""
    return path.relative_to(root).as_posix()
