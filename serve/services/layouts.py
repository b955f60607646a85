"""Kiosk tray layouts: the empty-tray reference photo and its compartments (model.infer.tray),
stored per kiosk, proposed from a photo, and prepared once per process for analyze.

Who may manage a layout is who may manage the kiosk's calibration (services.kiosks).
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from model.infer.images import ImageError, load_image
from model.infer.tray import (
    MIN_INLIERS,
    LayoutError,
    RegistrationConfig,
    TrayLayout,
    TrayReference,
    layout_to_json,
    parse_layout,
    prepare_reference,
    propose_compartments,
)
from serve.core.auth import Principal
from serve.core.errors import ApiError, not_found, unprocessable
from serve.core.storage import ImageStore, record_image
from serve.core.uploads import decode_photo
from serve.db.base import as_utc, utcnow
from serve.db.tables.core import StoredImage
from serve.db.tables.kiosks import KioskLayout
from serve.services.kiosks import load_kiosk

REFERENCE_KIND = "tray_reference"  # images.kind of a layout's empty-tray photo
# Prepared references kept per process: each holds a 640 px image pair and ~3000 SIFT
# descriptors (~2 MB); a worker serves a handful of kiosks, 16 leaves room for re-layouts.
CACHE_SIZE = 16
# Registration in the service: 360 px without the ECC polish, fast path first (ECC near this
# kiosk's last pose or the reference's, verified; model.infer.tray.register). On the test bed
# (6 kiosks, 96 photos with food, shifted, +-15 deg, tilted) the fast path placed 85 of 96
# trays (mean corner error 0.55 px, max 1.47), SIFT the rest; no plate, backdrop or other
# tray was taken (see docs/BENCHMARKS.md "Layout mode").
REGISTRATION = RegistrationConfig(work_side=360, refine=False, fast=True)


@dataclass(frozen=True)
class LayoutInput:
    """A layout as sent: reference photo bytes, compartments JSON text, tray size text."""

    reference: bytes
    compartments: str
    tray_width_cm: str | None = None
    tray_height_cm: str | None = None


def _cm(value: str | None, name: str) -> float | None:
    """An optional tray size field: a number in (0, 1000] cm, else a 422."""
    if value is None or value.strip() == "":
        return None
    try:
        cm = float(value)
    except ValueError as exc:
        raise unprocessable(f"{name} must be a number of cm, got {value!r}",
                            code="invalid_layout") from exc
    if not 0 < cm <= 1000:
        raise unprocessable(f"{name} must be > 0 and <= 1000 cm, got {cm:g}",
                            code="invalid_layout")
    return cm


def check_layout(text: str, size: tuple[int, int], tray_size_cm: tuple[float, float] | None
                 ) -> TrayLayout:
    """Parse the compartments JSON (model.infer.tray.parse_layout) and check that every
    point lies in the (w, h) reference photo; 422 `invalid_layout` saying what is wrong."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise unprocessable(f"compartments is not valid JSON: {exc}",
                            code="invalid_layout") from exc
    if not isinstance(raw, list):
        raise unprocessable('compartments must be a JSON list [{"slot": ..., "polygon": '
                            '[[x, y], ...]}, ...]', code="invalid_layout")
    try:
        layout = parse_layout(raw, tray_size_cm=tray_size_cm)
    except LayoutError as exc:
        raise unprocessable(str(exc), code="invalid_layout") from exc
    w, h = size
    for c in layout.compartments:
        if any(not (0 <= x <= w and 0 <= y <= h) for x, y in c.polygon):
            raise unprocessable(f"slot {c.slot!r}: polygon leaves the {w}x{h} reference photo",
                                code="invalid_layout")
    return layout


def _usable(image: Image.Image, layout: TrayLayout) -> TrayReference:
    """The prepared reference, or 422 when its tray has too few features to register on."""
    ref = prepare_reference(image, layout, REGISTRATION)
    if len(ref.points) < MIN_INLIERS:
        raise unprocessable(
            f"no tray features found in the reference photo ({len(ref.points)} keypoints on "
            f"the tray, at least {MIN_INLIERS} needed): photograph the empty tray in focus, "
            "lit, filling most of the frame", code="layout_reference_unusable")
    return ref


def load_layout(session: Session, principal: Principal, kiosk_id: str) -> KioskLayout:
    """The layout of a kiosk the caller may manage; 404 when the kiosk has none."""
    load_kiosk(session, principal, kiosk_id)
    row = session.get(KioskLayout, kiosk_id)
    if row is None:
        raise not_found("layout for kiosk", kiosk_id)
    return row


def put_layout(session: Session, principal: Principal, kiosk_id: str, body: LayoutInput, *,
               store: ImageStore, max_pixels: int) -> KioskLayout:
    """Create or replace a kiosk's layout (the reference photo is stored content-addressed)."""
    with session.begin():
        load_kiosk(session, principal, kiosk_id)
    image, content_type = decode_photo(body.reference, max_pixels)
    width = _cm(body.tray_width_cm, "tray_width_cm")
    height = _cm(body.tray_height_cm, "tray_height_cm")
    size_cm = (width, height) if width is not None and height is not None else None
    layout = check_layout(body.compartments, image.size, size_cm)
    ref = _usable(image, layout)
    sha = store.put(body.reference)
    with session.begin():
        load_kiosk(session, principal, kiosk_id)  # still there, still the caller's
        record_image(session, sha256=sha, kind=REFERENCE_KIND, content_type=content_type,
                     size_bytes=len(body.reference), width=image.width, height=image.height)
        row = session.get(KioskLayout, kiosk_id)
        if row is None:
            row = KioskLayout(kiosk_id=kiosk_id)
            session.add(row)
        row.reference_sha256, row.compartments = sha, layout_to_json(layout)
        row.tray_width_cm, row.tray_height_cm, row.updated_at = width, height, utcnow()
        session.flush()
        _CACHE.put(_cache_key(row), ref)
        return row


def delete_layout(session: Session, principal: Principal, kiosk_id: str) -> None:
    """Remove a kiosk's layout (its reference photo is then purged with the retention)."""
    with session.begin():
        session.delete(load_layout(session, principal, kiosk_id))


def layout_public(session: Session, row: KioskLayout) -> dict[str, Any]:
    """The LayoutPublic body of a stored layout."""
    image = session.get(StoredImage, row.reference_sha256)
    return {
        "kiosk_id": row.kiosk_id, "compartments": row.compartments,
        "tray_width_cm": row.tray_width_cm, "tray_height_cm": row.tray_height_cm,
        "reference": {"sha256": row.reference_sha256,
                      "width": image.width if image else None,
                      "height": image.height if image else None},
        "reference_url": f"/v1/kiosks/{row.kiosk_id}/layout/reference",
        "created_at": as_utc(row.created_at), "updated_at": as_utc(row.updated_at),
    }


def reference_bytes(session: Session, store: ImageStore, row: KioskLayout) -> tuple[bytes, str]:
    """The stored reference photo and its content type; 404 when its file is gone."""
    data = store.get(row.reference_sha256)
    image = session.get(StoredImage, row.reference_sha256)
    if data is None or image is None:
        raise ApiError(404, "not_found", f"the reference photo of kiosk {row.kiosk_id!r} "
                       "is no longer stored: upload the layout again")
    return data, image.content_type


def propose(session: Session, principal: Principal, kiosk_id: str, reference: bytes | None, *,
            store: ImageStore, max_pixels: int) -> dict[str, Any]:
    """Suggested compartments (slot-1..) of the sent or the stored reference photo."""
    with session.begin():
        if reference is None:
            reference, _ = reference_bytes(session, store, load_layout(session, principal,
                                                                       kiosk_id))
        else:
            load_kiosk(session, principal, kiosk_id)
    image, _ = decode_photo(reference, max_pixels)
    proposals = propose_compartments(image)
    return {"width": image.width, "height": image.height,
            "compartments": layout_to_json(TrayLayout(tuple(proposals)))}


# ------------------------------------------------------------------- prepared references


class _ReferenceCache:
    """A bounded LRU of prepared references, shared by the threads of one process."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], TrayReference] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> TrayReference | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], ref: TrayReference) -> None:
        with self._lock:
            self._items[key] = ref
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_CACHE = _ReferenceCache(CACHE_SIZE)


class PoseMemory:
    """Per process, each kiosk's last accepted tray pose: the fast path's first start.

    Kept with the reference it was found against (a new layout starts afresh) and the photo
    size (a pose in photo px scales with the photo); bounded like the reference cache.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[TrayReference, np.ndarray, tuple[int, int]]] = (
            OrderedDict())
        self._lock = threading.Lock()

    def get(self, kiosk_id: str, reference: TrayReference, photo_size: tuple[int, int]
            ) -> np.ndarray | None:
        """The last pose (reference -> photo px of this size), or None."""
        with self._lock:
            found = self._items.get(kiosk_id)
        if found is None or found[0] is not reference:
            return None
        hom, (w, _) = found[1], found[2]
        k = photo_size[0] / w
        return np.diag([k, k, 1.0]) @ hom

    def put(self, kiosk_id: str, reference: TrayReference, homography: np.ndarray,
            photo_size: tuple[int, int]) -> None:
        with self._lock:
            self._items[kiosk_id] = (reference, np.asarray(homography, np.float64), photo_size)
            self._items.move_to_end(kiosk_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


POSES = PoseMemory(CACHE_SIZE * 4)


def _cache_key(row: KioskLayout) -> tuple[Any, ...]:
    """What a prepared reference depends on: kiosk, photo, compartments, tray size."""
    return (row.kiosk_id, row.reference_sha256, json.dumps(row.compartments, sort_keys=True),
            row.tray_width_cm, row.tray_height_cm)


def prepared_reference(row: KioskLayout, store: ImageStore, max_pixels: int
                       ) -> TrayReference | None:
    """The kiosk's prepared reference (cached); None when its photo is gone or unusable."""
    key = _cache_key(row)
    ref = _CACHE.get(key)
    if ref is not None:
        return ref
    data = store.get(row.reference_sha256)
    if data is None:
        return None
    size = ((row.tray_width_cm, row.tray_height_cm)
            if row.tray_width_cm is not None and row.tray_height_cm is not None else None)
    try:
        ref = prepare_reference(load_image(data, max_pixels=max_pixels),
                                parse_layout(row.compartments, tray_size_cm=size),
                                REGISTRATION)
    except (ImageError, LayoutError):
        return None
    _CACHE.put(key, ref)
    return ref
