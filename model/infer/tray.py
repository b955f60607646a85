"""Tray layouts for fixed kiosks: compartments, registration to the empty-tray reference, fill.

A kiosk keeps a photo of its EMPTY tray (the reference) and the tray's compartments as
polygons in the reference's pixels. For each meal photo:

1. `register_tray` finds the tray and the homography reference -> photo (SIFT or ORB
   features on the tray only, ratio test, MAGSAC homography, pose plausibility checks,
   optional ECC refinement on the food-free ridges between compartments). No tray, a
   plate, too few inliers or an implausible pose: `found=False` with a reason.
2. `warp_compartments` puts the compartments (and the tray outline) into the photo.
3. `measure_fill` compares each compartment with the warped empty tray (brightness
   normalised per compartment from the ridge around it, Lab colour + texture difference
   tolerant to a few px of misregistration) -> food mask, fill = food / compartment area.
4. `leftover_fraction(before, after)` per slot.

`propose_compartments` suggests the compartments from the empty-tray photo for an admin.
All work runs at a bounded resolution (`WORK_SIDE`); results are in full-photo pixels.
Imports only numpy, OpenCV and Pillow (serve/ imports this module; never torch).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image

Point = tuple[float, float]
ImageLike = np.ndarray | Image.Image
Reason = Literal["no_features", "too_few_matches", "too_few_inliers", "low_inlier_ratio",
                 "degenerate_homography", "implausible_pose", "tray_out_of_view",
                 "ridges_disagree"]

# Every image is worked on with its longer side at most this many px: a kiosk photo is
# ~1-12 MP, the tray's ridges stay several px wide at 640, and time and memory stay bounded.
WORK_SIDE = 640
# Lowe's ratio test: a match counts if its best descriptor distance is clearly below the
# second best. 0.8 keeps more true matches on the repetitive steel than 0.7 and RANSAC
# removes the rest.
RATIO = 0.8
MAX_FEATURES = 3000
SIFT_CONTRAST = 0.01
RANSAC_PX = 3.0  # inlier reprojection tolerance at WORK_SIDE (about 0.5% of the tray)
# Trays with food gave 55-240 inliers on the test bed; random scenes (plates, other trays)
# up to ~30 that fit a degenerate pose. The floor only rules out hopeless fits: the pose
# checks and the ridge correlation (MIN_AGREEMENT) decide.
MIN_INLIERS = 15
MIN_INLIER_RATIO = 0.08  # share of ratio-test matches that agree with the homography
GOOD_INLIERS = 80  # "good" quality above this and MIN_GOOD_COVERAGE, else "fair"
MIN_GOOD_COVERAGE = 0.4  # inliers' convex hull / tray area: spread out, not in one corner
# Pose limits of a fixed kiosk: the tray lies on the same counter under the same camera, so
# its scale hardly changes (0.7-1.4 allows another camera height or a child's tray), it is
# turned by a hand (+-35 deg, beyond the +-15 deg expected, but excludes a 180 deg flip of
# a symmetric tray) and tilted mildly (scale across the tray varies <= 1.5x).
SCALE_RANGE = (0.7, 1.4)
MAX_ROTATION_DEG = 35.0
MAX_SCALE_SPREAD = 1.5
MIN_VISIBLE = 0.6  # share of the tray that must lie inside the photo
# Verification independent of the features: correlation of the reference's ridges with the
# photo mapped back. Trays with food on 5 kiosks x 2 poses: 0.77-0.98; plate photos and
# other trays whose features happened to fit: <= 0.15. 0.5 sits between; 0.7 for "good".
MIN_AGREEMENT = 0.5
GOOD_AGREEMENT = 0.7
# ECC refinement is kept only if it moves no tray corner by more than this (work px): it
# polishes, it must not jump to another optimum.
ECC_MAX_MOVE = 3.0
ECC_ITERATIONS = 40
TRAY_MARGIN = 0.04  # no tray outline given: hull of the compartments grown by 4% of its size


class LayoutError(ValueError):
    """A layout that is not usable: no compartments, bad polygons, duplicate slots."""


@dataclass(frozen=True)
class Compartment:
    """A named compartment: its polygon (x, y) in the reference photo's pixels."""

    slot: str
    polygon: tuple[Point, ...]


@dataclass(frozen=True)
class TrayLayout:
    """A kiosk's tray: compartments, optional tray outline (reference px) and size in cm."""

    compartments: tuple[Compartment, ...]
    tray_polygon: tuple[Point, ...] | None = None
    tray_size_cm: tuple[float, float] | None = None


def _as_polygon(points: Any, where: str) -> tuple[Point, ...]:
    """Validated polygon: >= 3 finite points with a non-zero area."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LayoutError(f"{where}: polygon must be [[x, y], ...]") from exc
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 3 or not np.isfinite(arr).all():
        raise LayoutError(f"{where}: polygon must be >= 3 finite [x, y] points")
    if abs(cv2.contourArea(arr.astype(np.float32))) < 1.0:
        raise LayoutError(f"{where}: polygon has no area")
    return tuple((float(x), float(y)) for x, y in arr)


def parse_layout(compartments: Sequence[Mapping[str, Any]], tray_polygon: Any = None,
                 tray_size_cm: Sequence[float] | None = None) -> TrayLayout:
    """A TrayLayout from `[{"slot": "rice", "polygon": [[x, y], ...]}, ...]`; LayoutError."""
    if not compartments:
        raise LayoutError("a layout needs at least one compartment")
    out, seen = [], set()
    for i, c in enumerate(compartments):
        slot = c.get("slot") if isinstance(c, Mapping) else None
        if not isinstance(slot, str) or not slot.strip():
            raise LayoutError(f"compartment {i}: 'slot' must be a non-empty string")
        if slot in seen:
            raise LayoutError(f"compartment {i}: duplicate slot {slot!r}")
        seen.add(slot)
        out.append(Compartment(slot, _as_polygon(c.get("polygon"), f"slot {slot!r}")))
    size = None
    if tray_size_cm is not None:
        size = (float(tray_size_cm[0]), float(tray_size_cm[1]))
        if not (np.isfinite(size).all() and min(size) > 0):
            raise LayoutError("tray_size_cm must be two positive numbers")
    tray = None if tray_polygon is None else _as_polygon(tray_polygon, "tray_polygon")
    return TrayLayout(tuple(out), tray, size)


def layout_to_json(layout: TrayLayout) -> list[dict[str, Any]]:
    """The compartments as `[{"slot": ..., "polygon": [[x, y], ...]}, ...]`."""
    return [{"slot": c.slot, "polygon": [[x, y] for x, y in c.polygon]}
            for c in layout.compartments]


def as_rgb(image: ImageLike) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from a PIL image or a gray/RGB/RGBA array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return arr[..., :3]
    raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")


def work_scale(size: tuple[int, int], side: int = WORK_SIDE) -> float:
    """Factor bringing an image of size (w, h) to at most `side` px on its longer side."""
    return min(1.0, side / max(size))


def downscale(rgb: np.ndarray, side: int = WORK_SIDE) -> tuple[np.ndarray, float]:
    """(image with longer side <= side, scale factor); area interpolation when shrinking."""
    s = work_scale((rgb.shape[1], rgb.shape[0]), side)
    if s >= 1.0:
        return rgb, 1.0
    size = (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), s


def polygon_mask(polygon: Any, size: tuple[int, int]) -> np.ndarray:
    """Bool mask (h, w) of a polygon (N, 2) in pixel coordinates, filled with 1/16 px accuracy."""
    w, h = size
    mask = np.zeros((h, w), np.uint8)
    pts = np.round(np.asarray(polygon, np.float64) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts.reshape(-1, 1, 2)], 1, cv2.LINE_8, shift=4)
    return mask.astype(bool)


def warp_points(points: Any, homography: np.ndarray) -> np.ndarray:
    """Points (N, 2) mapped by a 3x3 homography."""
    pts = np.asarray(points, np.float64).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(pts, np.asarray(homography, np.float64)).reshape(-1, 2)


def tray_outline(layout: TrayLayout) -> np.ndarray:
    """The tray polygon (reference px): the given outline, else the compartments' hull grown."""
    if layout.tray_polygon is not None:
        return np.asarray(layout.tray_polygon, np.float64)
    pts = np.concatenate([np.asarray(c.polygon) for c in layout.compartments])
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    centre = hull.mean(axis=0)
    grow = TRAY_MARGIN * float(np.ptp(hull, axis=0).max())
    radial = hull - centre
    norm = np.linalg.norm(radial, axis=1, keepdims=True)
    return hull + radial / np.maximum(norm, 1e-9) * grow


def _scaling(s: float) -> np.ndarray:
    """3x3 scaling about the origin."""
    return np.diag([s, s, 1.0])


# --------------------------------------------------------------------------- registration


@dataclass(frozen=True)
class RegistrationConfig:
    """How to register: feature detector, work size, ECC polish, inlier floor."""

    detector: Literal["sift", "orb"] = "sift"
    work_side: int = WORK_SIDE
    refine: bool = True
    min_inliers: int = MIN_INLIERS


@dataclass(frozen=True, eq=False)
class TrayReference:
    """A kiosk's empty-tray reference, prepared once: work-scale images and tray features."""

    layout: TrayLayout
    size: tuple[int, int]  # (w, h) of the reference photo
    scale: float  # work px per reference px
    rgb: np.ndarray  # work-scale RGB uint8
    gray: np.ndarray  # work-scale uint8
    tray_mask: np.ndarray  # bool, work scale: the tray
    ridge_mask: np.ndarray  # bool, work scale: tray outside the compartments' floors
    points: np.ndarray  # (N, 2) float32 keypoints on the tray, work px
    descriptors: np.ndarray
    detector: str


@dataclass(frozen=True, eq=False)
class Registration:
    """Where the reference tray lies in a photo (or why it was not found)."""

    found: bool
    homography: np.ndarray | None  # 3x3: reference px -> photo px (None when not found)
    reason: Reason | None  # why not found
    quality: Literal["good", "fair", "none"]
    matches: int  # ratio-test matches
    inliers: int
    inlier_ratio: float  # inliers / matches
    coverage: float  # convex hull of the inliers / tray area (reference)
    agreement: float  # ridge correlation (ridge_agreement) in [-1, 1]; 0 when not fitted
    refined: bool  # ECC polished the feature homography
    photo_size: tuple[int, int]  # (w, h) of the photo


def _detector(name: str) -> Any:
    """An OpenCV feature detector + descriptor."""
    if name == "sift":
        return cv2.SIFT_create(nfeatures=MAX_FEATURES,  # type: ignore[attr-defined]
                               contrastThreshold=SIFT_CONTRAST)
    if name == "orb":
        return cv2.ORB_create(nfeatures=MAX_FEATURES)  # type: ignore[attr-defined]
    raise ValueError(f"unknown detector {name!r}; choose 'sift' or 'orb'")


def _features(gray: np.ndarray, mask: np.ndarray | None, name: str
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """(keypoints (N, 2) float32, descriptors or None) within mask."""
    m = None if mask is None else mask.astype(np.uint8) * 255
    kps, desc = _detector(name).detectAndCompute(gray, m)
    pts = np.array([k.pt for k in kps], np.float32).reshape(-1, 2)
    return pts, desc


def _rgb_gray(image: ImageLike, side: int) -> tuple[np.ndarray, np.ndarray, float, tuple[int, int]]:
    """(work RGB, work gray, scale, full (w, h)) of an image."""
    rgb = as_rgb(image)
    work, s = downscale(rgb, side)
    return work, cv2.cvtColor(work, cv2.COLOR_RGB2GRAY), s, (rgb.shape[1], rgb.shape[0])


def prepare_reference(image: ImageLike, layout: TrayLayout,
                      config: RegistrationConfig = RegistrationConfig()) -> TrayReference:
    """Prepare an empty-tray reference photo and its layout for registration (once a kiosk)."""
    rgb, gray, s, size = _rgb_gray(image, config.work_side)
    wsize = (gray.shape[1], gray.shape[0])
    tray = polygon_mask(tray_outline(layout) * s, wsize)
    floors = np.zeros_like(tray)
    for c in layout.compartments:
        floors |= polygon_mask(np.asarray(c.polygon) * s, wsize)
    # The ridges keep the rims and a 3 px band of wall: edges to align on, rarely food.
    floors = cv2.erode(floors.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    pts, desc = _features(gray, tray, config.detector)
    return TrayReference(layout, size, s, rgb, gray, tray, tray & ~floors, pts,
                         desc if desc is not None else np.zeros((0, 1), np.uint8),
                         config.detector)


def _match(ref: TrayReference, desc: np.ndarray | None) -> list[tuple[int, int]]:
    """(reference index, photo index) pairs passing the ratio test."""
    if desc is None or len(desc) < 2 or len(ref.descriptors) < 2:
        return []
    norm = cv2.NORM_HAMMING if ref.detector == "orb" else cv2.NORM_L2
    pairs = cv2.BFMatcher(norm).knnMatch(ref.descriptors, desc, k=2)
    return [(m[0].queryIdx, m[0].trainIdx) for m in pairs
            if len(m) == 2 and m[0].distance < RATIO * m[1].distance]


def _jacobians(hom: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2x2 Jacobians (N, 2, 2), projective denominators (N,)) of hom at points (N, 2)."""
    x, y = pts[:, 0], pts[:, 1]
    w = hom[2, 0] * x + hom[2, 1] * y + hom[2, 2]
    u = (hom[0, 0] * x + hom[0, 1] * y + hom[0, 2]) / w
    v = (hom[1, 0] * x + hom[1, 1] * y + hom[1, 2]) / w
    jac = np.stack([np.stack([hom[0, 0] - hom[2, 0] * u, hom[0, 1] - hom[2, 1] * u], -1),
                    np.stack([hom[1, 0] - hom[2, 0] * v, hom[1, 1] - hom[2, 1] * v], -1)], 1)
    return jac / w[:, None, None], w


def pose_problem(hom: np.ndarray, outline: np.ndarray, photo_size: tuple[int, int],
                 expected_scale: float = 1.0) -> Reason | None:
    """Why hom (reference -> photo, any px) is not a plausible tray pose, or None."""
    if not np.isfinite(hom).all() or abs(hom[2, 2]) < 1e-12:
        return "degenerate_homography"
    hom = hom / hom[2, 2]
    jac, w = _jacobians(hom, outline)
    det = np.linalg.det(jac)
    if (w <= 1e-6).any() or (det <= 0).any():  # beyond the horizon, or mirrored
        return "degenerate_homography"
    local = np.sqrt(det) / expected_scale
    centre = _jacobians(hom, outline.mean(axis=0, keepdims=True))[0][0]
    angle = np.degrees(np.arctan2(centre[1, 0], centre[0, 0]))
    if (local.min() < SCALE_RANGE[0] or local.max() > SCALE_RANGE[1]
            or local.max() / local.min() > MAX_SCALE_SPREAD or abs(angle) > MAX_ROTATION_DEG):
        return "implausible_pose"
    warped = warp_points(outline, hom).astype(np.float32)
    frame = np.array([[0, 0], [photo_size[0], 0], [photo_size[0], photo_size[1]],
                      [0, photo_size[1]]], np.float32)
    hull = cv2.convexHull(warped)
    inside, _ = cv2.intersectConvexConvex(hull, frame)
    if inside < MIN_VISIBLE * cv2.contourArea(hull):
        return "tray_out_of_view"
    return None


def _refine_ecc(hom: np.ndarray, ref: TrayReference, gray: np.ndarray) -> np.ndarray | None:
    """ECC-polished homography (work px) on the ridges, or None if ECC fails or jumps."""
    ecc = getattr(cv2, "findTransformECCWithMask", None)
    if ecc is None:  # OpenCV < 4.12 has no template mask: food would bias ECC, skip it
        return None
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, ECC_ITERATIONS, 1e-5)
    try:
        _, out = ecc(ref.gray.astype(np.float32), gray.astype(np.float32),
                     ref.ridge_mask.astype(np.uint8), np.ones_like(gray, np.uint8),
                     hom.astype(np.float32), cv2.MOTION_HOMOGRAPHY, criteria, 5)
    except cv2.error:  # did not converge
        return None
    out = out.astype(np.float64) / out[2, 2]
    corners = tray_outline(ref.layout) * ref.scale
    move = np.linalg.norm(warp_points(corners, out) - warp_points(corners, hom), axis=1)
    return out if np.isfinite(out).all() and move.max() <= ECC_MAX_MOVE else None


def ridge_agreement(hom: np.ndarray, ref: TrayReference, gray: np.ndarray) -> float:
    """Normalised cross-correlation of the reference's ridges with the photo mapped back (work px).

    The ridges between compartments are rarely covered by food and carry the tray's shape
    (rims, walls), so a true registration correlates well there whatever the features said.
    """
    h, w = ref.gray.shape
    back = cv2.warpPerspective(gray, hom, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderValue=0)
    seen = cv2.warpPerspective(np.ones_like(gray), hom, (w, h),
                               flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP).astype(bool)
    m = ref.ridge_mask & seen
    if m.sum() < 100:
        return 0.0
    a = ref.gray[m].astype(np.float64)
    b = back[m].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-9))


def _not_found(reason: Reason, size: tuple[int, int], matches: int = 0, inliers: int = 0,
               agreement: float = 0.0) -> Registration:
    """A Registration saying the tray was not found, and why."""
    ratio = inliers / matches if matches else 0.0
    return Registration(False, None, reason, "none", matches, inliers, ratio, 0.0, agreement,
                        False, size)


def _fit(ref: TrayReference, pts: np.ndarray, desc: np.ndarray | None, size: tuple[int, int],
         config: RegistrationConfig) -> tuple[np.ndarray, np.ndarray, int] | Registration:
    """(work homography, inlier reference points, matches) or a not-found Registration."""
    if desc is None or len(pts) < 4 or len(ref.points) < 4:
        return _not_found("no_features", size)
    pairs = _match(ref, desc)
    if len(pairs) < config.min_inliers:
        return _not_found("too_few_matches", size, len(pairs))
    src = ref.points[[i for i, _ in pairs]]
    dst = pts[[j for _, j in pairs]]
    hom, inl = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, RANSAC_PX, maxIters=4000,
                                  confidence=0.999)
    n_in = 0 if inl is None else int(inl.sum())
    if hom is None or n_in < config.min_inliers:
        return _not_found("too_few_inliers", size, len(pairs), n_in)
    if n_in < MIN_INLIER_RATIO * len(pairs):
        return _not_found("low_inlier_ratio", size, len(pairs), n_in)
    return hom, src[inl.ravel().astype(bool)], len(pairs)


def register_tray(reference: TrayReference, photo: ImageLike,
                  config: RegistrationConfig = RegistrationConfig()) -> Registration:
    """Find the reference tray in a photo: homography reference -> photo px, or found=False."""
    _, gray, s, size = _rgb_gray(photo, config.work_side)
    pts, desc = _features(gray, None, reference.detector)
    fitted = _fit(reference, pts, desc, size, config)
    if isinstance(fitted, Registration):
        return fitted
    hom, inliers, n_match = fitted
    outline = tray_outline(reference.layout) * reference.scale
    expected = (size[0] / reference.size[0]) * s / reference.scale
    reason = pose_problem(hom, outline, (gray.shape[1], gray.shape[0]), expected)
    if reason is not None:
        return _not_found(reason, size, n_match, len(inliers))
    agreement = ridge_agreement(hom, reference, gray)
    if agreement < MIN_AGREEMENT:
        return _not_found("ridges_disagree", size, n_match, len(inliers), agreement)
    polished = _refine_ecc(hom, reference, gray) if config.refine else None
    if polished is not None:
        hom = polished
    full = np.linalg.inv(_scaling(s)) @ hom @ _scaling(reference.scale)
    hull = cv2.convexHull(inliers.astype(np.float32))
    coverage = float(cv2.contourArea(hull) / max(1.0, reference.tray_mask.sum()))
    good = (len(inliers) >= GOOD_INLIERS and coverage >= MIN_GOOD_COVERAGE
            and agreement >= GOOD_AGREEMENT)
    return Registration(True, full / full[2, 2], None, "good" if good else "fair", n_match,
                        len(inliers), len(inliers) / n_match, coverage, agreement,
                        polished is not None, size)


# --------------------------------------------------------------------------- compartments


Box = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class PlacedCompartment:
    """A compartment in a photo: polygon, box and mask (box crop) in photo px."""

    slot: str
    polygon: np.ndarray  # (N, 2) float64, photo px
    box: Box  # x0, y0, x1, y1 (exclusive), clipped to the photo
    mask: np.ndarray  # bool, shape (y1 - y0, x1 - x0)
    area_px: int  # visible area in the photo
    visible: float  # visible area / whole warped area (< 1 when the tray leaves the frame)


@dataclass(frozen=True, eq=False)
class WarpedLayout:
    """The layout in a photo: compartments and the tray's outline, photo px."""

    compartments: tuple[PlacedCompartment, ...]
    tray_polygon: np.ndarray  # (N, 2) float64, photo px
    photo_size: tuple[int, int]  # (w, h)

    def tray_mask(self) -> np.ndarray:
        """Bool (h, w) mask of the tray: food outside it is not on the tray."""
        return polygon_mask(self.tray_polygon, self.photo_size)


def _crop_mask(polygon: np.ndarray, size: tuple[int, int]) -> tuple[Box, np.ndarray, float]:
    """(clipped box, bool mask of the box, whole polygon area) of a polygon in a photo."""
    w, h = size
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int)
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 1
    bx0, by0 = min(w, max(0, int(x0))), min(h, max(0, int(y0)))
    box = (bx0, by0, max(bx0, min(w, int(x1))), max(by0, min(h, int(y1))))  # empty if outside
    bw, bh = box[2] - box[0], box[3] - box[1]
    mask = polygon_mask(polygon - np.array(box[:2]), (bw, bh)) if bw and bh else np.zeros(
        (bh, bw), bool)
    return box, mask, abs(float(cv2.contourArea(polygon.astype(np.float32))))


def warp_compartments(layout: TrayLayout, registration: Registration,
                      photo_size: tuple[int, int] | None = None) -> WarpedLayout:
    """The layout's compartments and tray outline in the photo's pixels (needs found=True)."""
    if not registration.found or registration.homography is None:
        raise ValueError(f"tray not found ({registration.reason}): no compartments to warp")
    size = photo_size or registration.photo_size
    hom = registration.homography
    placed = []
    for c in layout.compartments:
        poly = warp_points(c.polygon, hom)
        box, mask, whole = _crop_mask(poly, size)
        area = int(mask.sum())
        placed.append(PlacedCompartment(c.slot, poly, box, mask, area,
                                        min(1.0, area / whole) if whole else 0.0))
    return WarpedLayout(tuple(placed), warp_points(tray_outline(layout), hom), size)


# --------------------------------------------------------------------------- fill

# Food = what differs from the empty tray. Difference D per pixel, in CIE Lab units (dE):
# colour and brightness outside the reference's range within REF_TOLERANCE_PX (so a few px
# of misregistration or interpolation on the rims do not count), darkening weighted by
# DARK_WEIGHT (shadows and a dimmer lamp darken steel without changing its colour), plus
# TEXTURE_WEIGHT x the local texture (std of L) the photo has beyond the reference's.
REF_TOLERANCE_PX = 2
DARK_WEIGHT = 0.5
TEXTURE_WEIGHT = 1.0
TEXTURE_WINDOW = 5
# dE 12 is a plainly visible difference; steel under new light after the per-compartment
# gain, JPEG and noise stays below ~6, food on steel (even rice, egg white) well above.
DIFF_THRESHOLD = 12.0
RING_PX = 6  # ridge band around a compartment whose steel sets its brightness gain
MIN_RING_PX = 50
MIN_BLOB_FRAC = 0.005  # food blobs smaller than this share of a compartment are noise
EMPTY_FILL = 0.03  # below this fill a compartment counts as empty (crumbs, a sauce smear)
CLEAR_MARGIN = 0.5  # a pixel is clear-cut when |D - threshold| > CLEAR_MARGIN x threshold


@dataclass(frozen=True)
class FillConfig:
    """Food-mask settings: difference threshold and how a model's mask is combined."""

    threshold: float = DIFF_THRESHOLD
    combine: Literal["and", "or"] = "and"  # with a model foreground mask, when one is given
    work_side: int = WORK_SIDE


@dataclass(frozen=True, eq=False)
class CompartmentFill:
    """What lies in one compartment of a photo."""

    slot: str
    polygon: np.ndarray  # (N, 2) float64, photo px
    box: Box  # x0, y0, x1, y1 of the compartment, photo px
    mask: np.ndarray  # bool food mask, shape of box
    area_px: int  # food area, photo px
    compartment_area_px: int  # visible compartment area, photo px
    fill: float  # area_px / compartment_area_px, in [0, 1]
    empty: bool  # fill < EMPTY_FILL
    score: float  # confidence in [0, 1]: clear-cut pixels x registration quality x visible


def _lab(rgb: np.ndarray) -> np.ndarray:
    """Float32 CIE Lab (L 0-100) of a float RGB image in 0-255."""
    return cv2.cvtColor(np.clip(rgb / 255.0, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab)


def _local_std(lum: np.ndarray) -> np.ndarray:
    """Local standard deviation of luminance in TEXTURE_WINDOW squares."""
    k = (TEXTURE_WINDOW, TEXTURE_WINDOW)
    mean = cv2.blur(lum, k)
    return np.sqrt(np.maximum(cv2.blur(lum * lum, k) - mean * mean, 0))


def difference_map(photo_rgb: np.ndarray, ref_rgb: np.ndarray) -> np.ndarray:
    """D (dE units, float32) of a photo vs the aligned, brightness-matched empty tray."""
    p, r = _lab(photo_rgb), _lab(ref_rgb)
    kernel = np.ones((2 * REF_TOLERANCE_PX + 1,) * 2, np.uint8)
    lo, hi = cv2.erode(r, kernel), cv2.dilate(r, kernel)
    above, below = np.maximum(p - hi, 0), np.maximum(lo - p, 0)
    d_lum = above[..., 0] + DARK_WEIGHT * below[..., 0]
    d_chroma = above[..., 1:] + below[..., 1:]
    colour = np.sqrt(d_lum**2 + (d_chroma**2).sum(axis=2))
    texture = np.maximum(_local_std(p[..., 0]) - cv2.dilate(_local_std(r[..., 0]), kernel), 0)
    # A window straddling a food edge is "textured" on the steel side too: keep texture only
    # where the whole window is, so it does not grow the mask by half a window.
    texture = cv2.erode(texture, np.ones((TEXTURE_WINDOW, TEXTURE_WINDOW), np.uint8))
    return cv2.GaussianBlur(colour + TEXTURE_WEIGHT * texture, (0, 0), 1.0)


def _gains(photo: np.ndarray, ref: np.ndarray, comp: np.ndarray, steel: np.ndarray
           ) -> np.ndarray:
    """Per-channel gain bringing the photo's light to the reference's, from the steel ring."""
    k = 2 * RING_PX + 1
    ring = cv2.dilate(comp.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool) & steel
    use = ring if ring.sum() >= MIN_RING_PX else steel
    if use.sum() < MIN_RING_PX:
        return np.ones(3, np.float32)
    num = np.median(ref[use], axis=0)
    den = np.maximum(np.median(photo[use], axis=0), 1.0)
    return (num / den).astype(np.float32)


def _clean(food: np.ndarray, comp: np.ndarray) -> np.ndarray:
    """Food mask without specks, with small gaps and holes closed, inside the compartment."""
    m = cv2.morphologyEx(food.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < MIN_BLOB_FRAC * max(1, comp.sum()))
    m[np.isin(labels, small[small > 0])] = 0
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(m, contours, -1, 1, thickness=-1)  # a pale spot inside food is food
    return m.astype(bool) & comp


def _upsample(mask: np.ndarray, box: Box, s: float) -> np.ndarray:
    """The box (photo px) of a work-scale bool mask, sampled at photo resolution."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return np.zeros((max(0, y1 - y0), max(0, x1 - x0)), bool)
    # Pixel centres: work u = (x + 0.5) * s - 0.5 for photo x.
    m = np.array([[s, 0, s * x0 + 0.5 * s - 0.5], [0, s, s * y0 + 0.5 * s - 0.5]], np.float64)
    out = cv2.warpAffine(mask.astype(np.float32), m, (x1 - x0, y1 - y0),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return out > 0.5


def _aligned_reference(reference: TrayReference, hom: np.ndarray, size: tuple[int, int]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(reference RGB float32 warped into the photo's work frame, bool where it is defined)."""
    ref = cv2.warpPerspective(reference.rgb.astype(np.float32), hom, size, flags=cv2.INTER_LINEAR)
    ones = np.ones(reference.gray.shape, np.uint8)
    valid = cv2.warpPerspective(ones, hom, size, flags=cv2.INTER_NEAREST)
    return ref, cv2.erode(valid, np.ones((3, 3), np.uint8)).astype(bool)


def _foreground(mask: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    """A caller's bool foreground mask (photo px) at the work size."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.ndim != 2 or m.dtype != bool:
        raise ValueError(f"foreground must be a 2-D bool array, got {m.dtype} {m.shape}")
    return cv2.resize(m.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) > 127


def measure_fill(reference: TrayReference, photo: ImageLike, registration: Registration,
                 foreground: np.ndarray | None = None, config: FillConfig = FillConfig()
                 ) -> list[CompartmentFill]:
    """Per compartment: food mask (what differs from the empty tray), fill, empty, score."""
    warped = warp_compartments(reference.layout, registration)
    rgb = as_rgb(photo)
    if (rgb.shape[1], rgb.shape[0]) != registration.photo_size:
        raise ValueError("photo size differs from the registered photo's")
    work, s = downscale(rgb, config.work_side)
    size = (work.shape[1], work.shape[0])
    hom = _scaling(s) @ np.asarray(registration.homography) @ np.linalg.inv(
        _scaling(reference.scale))
    ref, valid = _aligned_reference(reference, hom, size)
    comps = [polygon_mask(pc.polygon * s, size) for pc in warped.compartments]
    any_comp = np.logical_or.reduce(comps)
    grown = cv2.dilate(any_comp.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    steel = polygon_mask(warped.tray_polygon * s, size) & valid & ~grown
    light = work.astype(np.float32)
    for m in comps:
        light[m] *= _gains(work.astype(np.float32), ref, m, steel)
    diff = difference_map(light, ref)
    fg = _foreground(foreground, size)
    quality = 1.0 if registration.quality == "good" else 0.8
    out = []
    for pc, m in zip(warped.compartments, comps, strict=True):
        food = _clean((diff > config.threshold) & m & valid, m)
        if fg is not None:
            food = (food & fg) if config.combine == "and" else (food | fg) & m
        full = _upsample(food, pc.box, s) & pc.mask
        area = int(full.sum())
        fill = area / pc.area_px if pc.area_px else 0.0
        clear = float((np.abs(diff[m] - config.threshold) > CLEAR_MARGIN * config.threshold)
                      .mean()) if m.any() else 0.0
        out.append(CompartmentFill(pc.slot, pc.polygon, pc.box, full, area, pc.area_px,
                                   min(1.0, fill), fill < EMPTY_FILL,
                                   clear * quality * pc.visible))
    return out


def leftover_fraction(before_fill: float, after_fill: float,
                      min_served: float = EMPTY_FILL) -> float | None:
    """Share of the served food left: after / before, clipped to [0, 1].

    None when before_fill < min_served: nothing (measurable) was served, so no share of it
    can be left; the caller reports "not served" rather than a ratio of two noise levels.
    """
    if not (np.isfinite(before_fill) and np.isfinite(after_fill)):
        raise ValueError("fills must be finite")
    if before_fill < min_served:
        return None
    return float(np.clip(after_fill / before_fill, 0.0, 1.0))


# --------------------------------------------------------------------------- proposals

# Compartment proposals from an empty-tray photo. Edges (Canny on a smoothed image, its
# thresholds from the image's own gradient levels) are closed into rims. The floor of a
# pressed well is a closed, convex non-edge region; the flat steel between wells (the
# "web") is the largest non-edge region inside the tray. Each floor grows outward over its
# wall up to the web (by the floor's own median distance to the web): that is the rim
# outline an admin would draw. A floor is kept if it is 0.5-40% of the tray (a sauce dip to
# half the tray), convex (solidity >= 0.85: wells are rounded polygons) and not a sliver.
PROPOSAL_BLUR = 1.5
CANNY_HIGH_PERCENTILE = 85  # the strongest 15% of gradients: rims and outline, not brushing
CLOSE_PX = 5  # bridges gaps where a wall faces across the light (weak edges)
MIN_FLOOR_FRAC = 0.005
MAX_FLOOR_FRAC = 0.4
MIN_SOLIDITY = 0.85
MIN_ASPECT = 0.15  # shorter / longer side of the floor's rotated box
POLY_EPSILON = 0.004  # polygon approximation tolerance, share of the perimeter


def _edges(gray: np.ndarray) -> np.ndarray:
    """Closed edge map (uint8 0/1) of a work-scale gray image."""
    smooth = cv2.GaussianBlur(gray, (0, 0), PROPOSAL_BLUR)
    gx, gy = cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    high = float(np.percentile(np.hypot(gx, gy), CANNY_HIGH_PERCENTILE))
    edges = cv2.Canny(smooth, high / 2, high, L2gradient=True)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (CLOSE_PX, CLOSE_PX))
    return (cv2.morphologyEx(edges, cv2.MORPH_CLOSE, kernel) > 0).astype(np.uint8)


def _is_floor(region: np.ndarray, tray_area: float) -> bool:
    """Whether a non-edge region looks like a well's floor (size, convexity, not a sliver)."""
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    c = max(contours, key=cv2.contourArea)
    area, hull = float(region.sum()), cv2.contourArea(cv2.convexHull(c))
    (_, _), (bw, bh), _ = cv2.minAreaRect(c)
    return (MIN_FLOOR_FRAC * tray_area <= area <= MAX_FLOOR_FRAC * tray_area and hull > 0
            and area / hull >= MIN_SOLIDITY and min(bw, bh) >= MIN_ASPECT * max(bw, bh))


def _regions(gray: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
    """(floor masks, web mask or None) of a work-scale empty-tray image."""
    free = (1 - _edges(gray)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(free, connectivity=4)
    h, w = gray.shape
    x0, y0 = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    x1, y1 = x0 + stats[:, cv2.CC_STAT_WIDTH], y0 + stats[:, cv2.CC_STAT_HEIGHT]
    border = (x0 == 0) | (y0 == 0) | (x1 == w) | (y1 == h)
    border[0] = True  # label 0 = the edges themselves
    tray_area = float(h * w - stats[border & (np.arange(n) > 0), cv2.CC_STAT_AREA].sum())
    floors: list[int] = []
    others: list[int] = []
    for i in np.flatnonzero(~border):
        region = (labels == i).astype(np.uint8)
        (floors if _is_floor(region, tray_area) else others).append(int(i))
    web = None
    if others:
        biggest = max(others, key=lambda i: stats[i, cv2.CC_STAT_AREA])
        web = labels == biggest
    return [(labels == i) for i in floors], web


def _grow(floor: np.ndarray, web: np.ndarray | None) -> np.ndarray:
    """The well under a floor: the floor grown over its wall up to the web (bool)."""
    if web is None:
        return floor
    to_web = cv2.distanceTransform((~web).astype(np.uint8), cv2.DIST_L2, 5)
    rim = floor & ~cv2.erode(floor.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    reach = float(np.median(to_web[rim]))
    k = 2 * round(reach) + 1
    grown = cv2.dilate(floor.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                                          (k, k)))
    return grown.astype(bool) & ~web


def _reading_order(polys: list[np.ndarray]) -> list[np.ndarray]:
    """Polygons sorted in rows (top to bottom), left to right within a row."""
    rest = sorted(polys, key=lambda p: float(p[:, 1].min()))
    rows: list[list[np.ndarray]] = []
    for p in rest:
        centre = float(p[:, 1].mean())
        # Same row if its centre lies within the vertical span of the row's first member.
        if rows and rows[-1][0][:, 1].min() <= centre <= rows[-1][0][:, 1].max():
            rows[-1].append(p)
        else:
            rows.append([p])
    return [p for row in rows for p in sorted(row, key=lambda q: float(q[:, 0].mean()))]


def propose_compartments(empty_tray: ImageLike, work_side: int = WORK_SIDE
                         ) -> list[Compartment]:
    """Suggested compartments (slot-1.. in reading order) of an empty-tray photo, for an admin."""
    _, gray, s, _ = _rgb_gray(empty_tray, work_side)
    floors, web = _regions(gray)
    polys = []
    for floor in floors:
        well = _grow(floor, web).astype(np.uint8)
        contours, _ = cv2.findContours(well, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        c = max(contours, key=cv2.contourArea)
        approx = cv2.approxPolyDP(c, POLY_EPSILON * cv2.arcLength(c, True), True)
        # Contour points are pixel centres on the region's edge: +0.5 px reaches its border.
        polys.append((approx.reshape(-1, 2).astype(np.float64) + 0.5) / s - 0.5)
    return [Compartment(f"slot-{i + 1}", tuple((float(x), float(y)) for x, y in p))
            for i, p in enumerate(_reading_order(polys))]
