"""Helpers every importer shares: errors, image discovery and sizes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def read_json_object(path: Path, must_have_list: str, kind: str) -> dict[str, Any]:
    """A JSON object file that holds a list under must_have_list; clear errors otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceFormatError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get(must_have_list), list):
        raise SourceFormatError(f"{path}: not a {kind} file (no {must_have_list!r} list)")
    return data
