"""Photo decoding for inference: bytes or a path -> an upright RGB image, bounded in pixels,
decoded no larger than the model needs (a JPEG at the DCT scale that covers the letterbox,
PNG/WebP box-reduced right after decoding), remembering the photo's own size.

Used by the runtime, the service's uploads, the evaluator and `python -m model.predict`.
Imports only Pillow and numpy.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """An input that is not a usable image (empty, truncated, not an image, too large)."""


FULL_SIZE_KEY = "traylens_full_size"
_SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that turn the stored image by 90 degrees


def load_image(
    data: bytes | str | os.PathLike[str] | IO[bytes],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fit: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode bytes/path/file to an EXIF-upright RGB image; ImageError when unusable.

    With `fit` (a network input size), a JPEG is decoded at the smallest DCT scale that
    still covers its letterbox at that size (see `reduce_jpeg`): several times faster, and
    the pixels the network sees are the same averaging of the photo. `full_size(img)` then
    gives the photo's own size, in which predictions are reported.
    """
    raw = _read_bytes(data)
    if not raw:
        raise ImageError("empty file: zero bytes")
    try:
        img = Image.open(io.BytesIO(raw))
    except UnidentifiedImageError as exc:
        raise ImageError("not an image (format not recognised)") from exc
    except (OSError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot read image: {exc}") from exc
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(f"image too large: {width}x{height} exceeds {max_pixels} pixels")
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels: {width}x{height}")
    try:
        img.seek(0)  # animated files: the first frame is the photo
        full = reduce_jpeg(img, fit) if fit is not None else None
        img.load()
        decoded = reduce_decoded(img, fit) if fit is not None else img
        upright: Image.Image = ImageOps.exif_transpose(decoded) or decoded
        out = _to_rgb(upright)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"truncated or corrupt image: {exc}") from exc
    if full is not None and full != out.size:
        out.info[FULL_SIZE_KEY] = full
    return out


def reduce_jpeg(img: Image.Image, fit: tuple[int, int]) -> tuple[int, int]:
    """Ask the JPEG decoder for a 1/2, 1/4 or 1/8 scale that still covers the letterbox.

    Returns the upright full size. A no-op for other formats (Image.draft ignores them).
    """
    orientation = img.getexif().get(0x0112, 1)
    stored_w, stored_h = img.size
    up_w, up_h = (stored_h, stored_w) if orientation in _SWAPS_AXES else (stored_w, stored_h)
    scale = min(fit[0] / up_w, fit[1] / up_h)
    if scale < 1 and img.format == "JPEG":
        # The letterbox needs at least scale x the photo along each stored axis.
        img.draft(img.mode, (math.ceil(stored_w * scale), math.ceil(stored_h * scale)))
    return up_w, up_h


# Modes Image.reduce averages; others are converted first (a palette index cannot be averaged).
_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "I", "F", "CMYK"}


def reduce_decoded(img: Image.Image, fit: tuple[int, int]) -> Image.Image:
    """PNG, WebP (any format without JPEG's DCT scaling): box-average the decoded image by the
    largest factor up to 8 that still covers the letterbox at `fit`, as `reduce_jpeg` does
    for a JPEG, so that a big photo is held (and converted, turned upright) small.

    EXIF is kept (Image.reduce copies `info`); a JPEG is returned as it is.
    """
    if img.format == "JPEG":
        return img
    orientation = img.getexif().get(0x0112, 1)
    up_w, up_h = (img.height, img.width) if orientation in _SWAPS_AXES else img.size
    factor = min(8, math.floor(min(up_w / fit[0], up_h / fit[1])))
    if factor < 2:
        return img
    if img.mode not in _REDUCIBLE:
        has_alpha = img.mode in ("P", "PA") and (img.mode == "PA" or "transparency" in img.info)
        target = "RGBA" if has_alpha else "I" if img.mode.startswith("I;16") else "RGB"
        img = img.convert("L" if img.mode == "1" else target)
    return img.reduce(factor)


def full_size(img: Image.Image) -> tuple[int, int]:
    """The (width, height) of the photo a possibly reduced decode came from."""
    size = img.info.get(FULL_SIZE_KEY)
    return (int(size[0]), int(size[1])) if size else img.size


def full_scale(img: Image.Image, letterbox_scale: float) -> float:
    """Letterbox scale of the full-size photo, given the one of the decoded image."""
    return letterbox_scale * img.width / full_size(img)[0]


def _read_bytes(data: bytes | str | os.PathLike[str] | IO[bytes]) -> bytes:
    """Bytes of the input, whatever form it came in."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str | os.PathLike):
        try:
            return Path(data).read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read {data}: {exc.strerror or exc}") from exc
    return data.read()


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; alpha composited on white, 16-bit scaled down."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        gray = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        gray = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
