"""Registration: a kiosk's empty-tray reference prepared once, and each photo's tray found in it."""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from model.infer.tray.layout import (
    WORK_SIDE,
    ImageLike,
    TrayLayout,
    polygon_mask,
    rgb_gray,
    scaling,
    tray_outline,
    warp_points,
    work_gray,
)

Reason = Literal["no_features", "too_few_matches", "too_few_inliers", "low_inlier_ratio",
                 "degenerate_homography", "implausible_pose", "tray_out_of_view",
                 "ridges_disagree"]
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
# The fast path of a fixed kiosk (RegistrationConfig.fast): the tray lies about where the
# reference (or the kiosk's last photo, the hint) has it, so ECC on the ridges at low
# resolution finds it without features: a Euclidean fit at FAST_SIDE / 2 px (longer side),
# a homography at FAST_SIDE, and, once verified, FAST_POLISH homography steps at the work
# size. ECC maximises the very ridge correlation
# the verification reads, so it can lift another tray of the same style above
# MIN_AGREEMENT (test bed: up to 0.85); the fast pose is therefore kept only when the
# reference's own keypoints also match locally: the median normalised cross-correlation of
# PATCH_PX squares around the reference's keypoints on the ridges, photo mapped back, at the
# work size. Test bed (6 kiosks, 96 photos with food, JPEG reference and photos; 78 plates,
# backdrops, other trays): true poses >= 0.91 (the benchmark's photo 0.88), the rest <= 0.81:
# a thin margin on synthetic trays, to be re-measured on real kiosk photos. Else the
# features decide as before.
# FAST_SIDE 240 vs 180 (before the polish): corner error mean 0.55 vs 0.70 px, max 1.47 vs
# 2.16 px (640 px photo); with the polish 0.44-0.49 px, max 1.20.
FAST_SIDE = 240
FAST_ITERATIONS = 20
# One step as good as 3 (benchmarks/tray_layout.py --service, fixtures: fast path mean error
# 0.44-0.51 vs 0.44-0.50 px, max 1.17 vs 1.11; fills the same) at ~0.9 vs ~2 ms.
FAST_POLISH = 1  # homography steps at the work size after FAST_SIDE (0: none; 10: same error)
# The Euclidean fit at FAST_SIDE / 2 only: a second one at FAST_SIDE changed neither the
# found rate nor the error on the test bed and cost as much as the homography step.
FAST_COARSE = True
FAST_FINE_EUCLIDEAN = False
FAST_GAUSS = 5  # ECC's own Gaussian pre-filter (px): smooths the steel's brush texture
PATCH_PX = 7
MIN_PATCH_AGREEMENT = 0.85
# Starts without a hint: the reference's pose turned about the tray's centre by these
# angles (ECC's basin at FAST_SIDE is about +-6 deg); with a hint only the hint and the
# reference's pose (a failed start costs a few ms: ECC runs all its iterations).
FAST_TURNS_DEG = (0.0, 10.0, -10.0)

@dataclass(frozen=True)
class RegistrationConfig:
    """How to register: feature detector, work size, ECC polish, inlier floor."""

    detector: Literal["sift", "orb"] = "sift"
    work_side: int = WORK_SIDE
    refine: bool = True
    min_inliers: int = MIN_INLIERS
    fast: bool = False  # try ECC near the hint / the reference pose first (fixed kiosks)


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
    fast: bool = False  # found by the fast path (ECC near the hint), no features matched


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


def prepare_reference(image: ImageLike, layout: TrayLayout,
                      config: RegistrationConfig = RegistrationConfig()) -> TrayReference:
    """Prepare an empty-tray reference photo and its layout for registration (once a kiosk)."""
    rgb, gray, s, size = rgb_gray(image, config.work_side)
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


def patch_agreement(hom: np.ndarray, ref: TrayReference, gray: np.ndarray) -> float:
    """Median local NCC (PATCH_PX squares) at the reference's keypoints on the ridges (work px).

    Local structure (scratches, rim corners) at the very points the features would match:
    another tray whose wells ECC lined up still differs there. Computed on the ridges' box
    (the work template, _templates), which holds every such point and its square.
    """
    t = _templates(ref, min(1.0, FAST_SIDE / max(gray.shape)))[2]
    h, w = t.gray.shape
    b = cv2.warpPerspective(gray, t.to_crop(hom), (w, h),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP).astype(np.float32)
    a = t.gray
    k = (PATCH_PX, PATCH_PX)
    ma, mb = cv2.blur(a, k), cv2.blur(b, k)
    cov = cv2.blur(a * b, k) - ma * mb
    var = (cv2.blur(a * a, k) - ma * ma) * (cv2.blur(b * b, k) - mb * mb)
    ncc = cov / np.sqrt(np.maximum(var, 1e-6))
    rh, rw = ref.gray.shape
    pts = np.round(ref.points).astype(int)
    pts[:, 0] = pts[:, 0].clip(0, rw - 1)
    pts[:, 1] = pts[:, 1].clip(0, rh - 1)
    on = ref.ridge_mask[pts[:, 1], pts[:, 0]]
    if on.sum() < MIN_INLIERS:
        return 0.0
    return float(np.median(ncc[pts[on, 1] - t.y0, pts[on, 0] - t.x0]))


# ECC's cost is per template pixel, masked or not: its templates are cropped to the ridges'
# box grown by TEMPLATE_MARGIN px (beyond the reach of its FAST_GAUSS pre-filter), ~40% of
# the frame, and prepared once per reference and scale (_templates).
TEMPLATE_MARGIN = 4


@dataclass(frozen=True, eq=False)
class _Template:
    """An ECC template: the reference's gray and ridge mask cropped to the ridges' box."""

    gray: np.ndarray  # float32
    mask: np.ndarray  # uint8
    x0: int  # crop offset in the full template's px
    y0: int

    def to_crop(self, warp: np.ndarray) -> np.ndarray:
        """A 3x3 warp of the full template (-> image px) as one of the crop."""
        return warp @ np.array([[1.0, 0, self.x0], [0, 1.0, self.y0], [0, 0, 1.0]])

    def from_crop(self, warp: np.ndarray) -> np.ndarray:
        """A 3x3 warp of the crop (-> image px) as one of the full template."""
        return warp @ np.array([[1.0, 0, -self.x0], [0, 1.0, -self.y0], [0, 0, 1.0]])


def _template(gray: np.ndarray, mask: np.ndarray) -> _Template:
    """gray (float32) and mask (uint8) cropped to the mask's box + TEMPLATE_MARGIN."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return _Template(gray, mask, 0, 0)
    x0, y0 = max(0, x - TEMPLATE_MARGIN), max(0, y - TEMPLATE_MARGIN)
    x1 = min(gray.shape[1], x + w + TEMPLATE_MARGIN)
    y1 = min(gray.shape[0], y + h + TEMPLATE_MARGIN)
    return _Template(np.ascontiguousarray(gray[y0:y1, x0:x1]),
                     np.ascontiguousarray(mask[y0:y1, x0:x1]), x0, y0)


_PYRAMIDS: weakref.WeakKeyDictionary[TrayReference, dict[float, tuple[_Template, ...]]] = (
    weakref.WeakKeyDictionary())
_PYRAMIDS_LOCK = threading.Lock()


def _templates(ref: TrayReference, k: float) -> tuple[_Template, _Template, _Template]:
    """(FAST_SIDE level, its half, the work size) templates of a reference, made once per
    reference and scale k (work px -> FAST_SIDE px)."""
    with _PYRAMIDS_LOCK:
        found = _PYRAMIDS.get(ref, {}).get(k)
    if found is not None:
        return found[0], found[1], found[2]
    t0 = cv2.resize(ref.gray, None, fx=k, fy=k, interpolation=cv2.INTER_AREA).astype(np.float32)
    m0 = cv2.resize(ref.ridge_mask.astype(np.uint8), (t0.shape[1], t0.shape[0]),
                    interpolation=cv2.INTER_AREA)
    t1 = cv2.pyrDown(t0)
    m1 = cv2.resize(m0, (t1.shape[1], t1.shape[0]), interpolation=cv2.INTER_AREA)
    out = (_template(t0, m0), _template(t1, m1),
           _template(ref.gray.astype(np.float32), ref.ridge_mask.astype(np.uint8)))
    with _PYRAMIDS_LOCK:
        _PYRAMIDS.setdefault(ref, {})[k] = out
    return out


def _ecc(template: _Template, image: np.ndarray, warp: np.ndarray, motion: int,
         iterations: int = 0) -> np.ndarray | None:
    """ECC warp (3x3, full template -> image px) from a 3x3 start, or None when it fails."""
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS,
                iterations or FAST_ITERATIONS, 1e-4)
    start = template.to_crop(warp)
    if motion != cv2.MOTION_HOMOGRAPHY:
        start = start[:2]
    try:
        _, out = cv2.findTransformECCWithMask(
            template.gray, image, template.mask, np.ones(image.shape, np.uint8),
            start.astype(np.float32), motion, criteria, FAST_GAUSS)
    except cv2.error:
        return None
    out = np.asarray(out, np.float64)
    if out.shape[0] == 2:
        out = np.vstack([out, [0, 0, 1]])
    return template.from_crop(out) if np.isfinite(out).all() else None


def _fast_pose(ref: TrayReference, gray: np.ndarray, start: np.ndarray) -> np.ndarray | None:
    """ECC from a start homography (work px): Euclidean at FAST_SIDE / 2 (and FAST_SIDE with
    FAST_FINE_EUCLIDEAN), then a homography at FAST_SIDE; None when ECC fails."""
    k = min(1.0, FAST_SIDE / max(gray.shape))
    fine_t, coarse_t, _ = _templates(ref, k)
    i0 = cv2.resize(gray, None, fx=k, fy=k, interpolation=cv2.INTER_AREA).astype(np.float32)
    h = scaling(k) @ start @ np.linalg.inv(scaling(k))
    h = h / h[2, 2]
    # Euclidean start: the start's rotation and translation (a hint may carry a little tilt).
    angle = np.arctan2(h[1, 0], h[0, 0])
    warp = np.array([[np.cos(angle), -np.sin(angle), h[0, 2]],
                     [np.sin(angle), np.cos(angle), h[1, 2]], [0, 0, 1]])
    if FAST_COARSE:
        half = np.diag([0.5, 0.5, 1.0])
        coarse = _ecc(coarse_t, cv2.pyrDown(i0), half @ warp @ np.linalg.inv(half),
                      cv2.MOTION_EUCLIDEAN)
        if coarse is None:
            return None
        warp = np.linalg.inv(half) @ coarse @ half
    fine = _ecc(fine_t, i0, warp, cv2.MOTION_EUCLIDEAN) if FAST_FINE_EUCLIDEAN else warp
    if fine is None:
        return None
    hom = _ecc(fine_t, i0, fine, cv2.MOTION_HOMOGRAPHY)
    if hom is None:
        return None
    out = np.linalg.inv(scaling(k)) @ hom @ scaling(k)
    return out / out[2, 2]


def _polish(ref: TrayReference, gray: np.ndarray, hom: np.ndarray) -> np.ndarray:
    """A verified fast pose polished by FAST_POLISH ECC homography steps at the work size
    (after the verification: ECC at full detail would lift the very patch agreement that
    tells another tray apart). Kept only when it moves no tray corner beyond ECC_MAX_MOVE."""
    if not FAST_POLISH or max(gray.shape) <= FAST_SIDE:
        return hom
    work_t = _templates(ref, min(1.0, FAST_SIDE / max(gray.shape)))[2]
    out = _ecc(work_t, gray.astype(np.float32), hom, cv2.MOTION_HOMOGRAPHY, FAST_POLISH)
    if out is None:
        return hom
    out = out / out[2, 2]
    corners = tray_outline(ref.layout) * ref.scale
    move = np.linalg.norm(warp_points(corners, out) - warp_points(corners, hom), axis=1)
    return out if move.max() <= ECC_MAX_MOVE else hom


def _register_fast(ref: TrayReference, gray: np.ndarray, s: float, size: tuple[int, int],
                   hint: np.ndarray | None) -> Registration | None:
    """The fast path: ECC from the hint, then from the reference's own pose; verified by the
    pose checks, the ridge correlation and the keypoints' patch agreement. None: not found
    this way (the features decide)."""
    if not hasattr(cv2, "findTransformECCWithMask"):  # OpenCV < 4.12: no template mask
        return None
    expected = (size[0] / ref.size[0]) * s / ref.scale
    outline = tray_outline(ref.layout) * ref.scale
    cx, cy = outline.mean(axis=0) * expected
    starts = []
    for deg in FAST_TURNS_DEG[:1] if hint is not None else FAST_TURNS_DEG:
        c, n = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        turn = np.array([[c, -n, cx - c * cx + n * cy], [n, c, cy - n * cx - c * cy], [0, 0, 1]])
        starts.append(turn @ scaling(expected))
    if hint is not None:  # photo px -> work px
        h = scaling(s) @ np.asarray(hint, np.float64) @ np.linalg.inv(scaling(ref.scale))
        starts.insert(0, h / h[2, 2])
    for start in starts:
        hom = _fast_pose(ref, gray, start)
        if hom is None or pose_problem(hom, outline, (gray.shape[1], gray.shape[0]),
                                       expected) is not None:
            continue
        agreement = ridge_agreement(hom, ref, gray)
        if agreement < MIN_AGREEMENT or patch_agreement(hom, ref, gray) < MIN_PATCH_AGREEMENT:
            continue
        hom = _polish(ref, gray, hom)
        full = np.linalg.inv(scaling(s)) @ hom @ scaling(ref.scale)
        quality: Literal["good", "fair"] = "good" if agreement >= GOOD_AGREEMENT else "fair"
        return Registration(True, full / full[2, 2], None, quality, 0, 0, 0.0, 0.0,
                            agreement, False, size, True)
    return None


def register_tray(reference: TrayReference, photo: ImageLike,
                  config: RegistrationConfig = RegistrationConfig(),
                  hint: np.ndarray | None = None) -> Registration:
    """Find the reference tray in a photo: homography reference -> photo px, or found=False.

    With config.fast, ECC near hint (a homography reference -> photo px, e.g. this kiosk's
    last accepted pose) or the reference's own pose is tried first; features otherwise.
    """
    gray, s, size = work_gray(photo, config.work_side)
    if config.fast:
        quick = _register_fast(reference, gray, s, size, hint)
        if quick is not None:
            return quick
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
    full = np.linalg.inv(scaling(s)) @ hom @ scaling(reference.scale)
    hull = cv2.convexHull(inliers.astype(np.float32))
    coverage = float(cv2.contourArea(hull) / max(1.0, reference.tray_mask.sum()))
    good = (len(inliers) >= GOOD_INLIERS and coverage >= MIN_GOOD_COVERAGE
            and agreement >= GOOD_AGREEMENT)
    return Registration(True, full / full[2, 2], None, "good" if good else "fair", n_match,
                        len(inliers), len(inliers) / n_match, coverage, agreement,
                        polished is not None, size)
