"""Compartment-tray test bed: a drawn stainless tray, real food crops, known geometry and fill.

A `Kiosk` is one fixed camera: its empty-tray reference photo and the compartments (rim
polygons, reference pixels). `make_pair` serves a meal into the tray from real food crops
(`model.data.compose.extract_crops`), photographs it before and after the meal under a new
pose (shift, rotation, mild perspective tilt) and new light, and returns the truth: the
homography reference -> photo, compartment polygons in photo pixels, fill per slot
(food area / compartment area) and the leftover fraction per slot. Everything is drawn
with numpy/OpenCV from a seed; nothing is downloaded. Torch-free.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from model.data.backgrounds import _noise, _table
from model.data.compose import FoodCrop, extract_crops, paste
from model.infer.tray.layout import polygon_mask

# A Korean stainless 식판 is about 37 x 28 cm; the kiosk frames it with room to spare so
# that a shifted, rotated tray stays mostly in view.
TRAY_CM = (37.0, 28.0)
TRAY_FRAME_FRAC = 0.7
CORNER_POINTS = 6  # polygon points per rounded corner (the rim outline an admin would draw)
BACKDROPS = ("table", "mat")
MAT_COLOURS = ([60, 110, 70], [50, 70, 120], [130, 50, 45], [70, 70, 75], [150, 130, 60])
ALPHA_ON = 127  # an RGBA crop pixel counts as food above this alpha (as compose.placed_mask)
EMPTY_SLOT_P = 0.15  # chance that a well is served nothing (a skipped dish)
MIN_SERVED = 3
MAX_CROPS_PER_WELL = 4
SPOT_TRIES = 25
CROP_SETS = ("labelme", "maskpng", "ecustfd", "mealtray")


@dataclass(frozen=True)
class PoseRange:
    """Limits of the random tray pose in a photo (fractions of the photo size, degrees)."""

    shift_frac: float = 0.06
    rotation_deg: float = 15.0
    tilt: float = 0.06  # keystone: relative change of scale from one side of the photo to the other


@dataclass(frozen=True, eq=False)
class TrayArt:
    """The drawn tray in its own pixels: RGB (float32), body alpha, well masks, scale."""

    rgb: np.ndarray
    alpha: np.ndarray  # float32 in [0, 1]
    wells: dict[str, np.ndarray]  # slot -> rim polygon (N, 2), tray px
    px_per_cm: float


@dataclass(frozen=True, eq=False)
class Kiosk:
    """A fixed kiosk camera: the empty-tray reference photo and its compartments."""

    reference: np.ndarray  # RGB uint8, the empty tray as this camera sees it
    compartments: dict[str, np.ndarray]  # slot -> rim polygon (N, 2) float64, reference px
    tray_polygon: np.ndarray  # the tray's outline (N, 2), reference px
    tray_size_cm: tuple[float, float]
    art: TrayArt = field(repr=False)
    tray_to_ref: np.ndarray = field(repr=False)  # 3x3: tray px -> reference px
    backdrop: np.ndarray = field(repr=False)  # float32 RGB, the surface under the tray
    glare: np.ndarray = field(repr=False)  # float32 (H, W): the lamp's reflection, camera-fixed

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of this camera's photos."""
        return self.backdrop.shape[1], self.backdrop.shape[0]


@dataclass(frozen=True)
class Placement:
    """One food crop placed in the tray's own pixels."""

    slot: str
    rgba: np.ndarray
    x: int
    y: int


@dataclass(frozen=True, eq=False)
class TrayShot:
    """One photo of the tray with its truth."""

    image: np.ndarray  # RGB uint8
    homography: np.ndarray  # 3x3: reference px -> photo px
    polygons: dict[str, np.ndarray]  # slot -> compartment polygon (N, 2), photo px
    fill: dict[str, float]  # slot -> food area / compartment area, in photo px
    food_mask: np.ndarray  # bool (H, W): food lying in the tray
    stray_mask: np.ndarray  # bool (H, W): food lying off the tray (on the backdrop)


@dataclass(frozen=True, eq=False)
class TrayPair:
    """A tray photographed before and after the meal, and the true leftover per slot."""

    before: TrayShot
    after: TrayShot
    leftover: dict[str, float]  # slot -> remaining food area / served area (served slots)


def rounded_rect(x0: float, y0: float, x1: float, y1: float, r: float) -> np.ndarray:
    """Polygon (N, 2) of a rounded rectangle, clockwise in image coordinates."""
    r = max(1.0, min(r, (x1 - x0) / 2, (y1 - y0) / 2))
    t = np.linspace(0, np.pi / 2, CORNER_POINTS)
    arcs = []
    for (cx, cy), start in (((x1 - r, y0 + r), -np.pi / 2), ((x1 - r, y1 - r), 0.0),
                            ((x0 + r, y1 - r), np.pi / 2), ((x0 + r, y0 + r), np.pi)):
        arcs.append(np.stack([cx + r * np.cos(start + t), cy + r * np.sin(start + t)], 1))
    return np.concatenate(arcs).astype(np.float64)


def tray_design(rng: np.random.Generator, w: int, h: int) -> dict[str, np.ndarray]:
    """Rim polygons (tray px) of 3-4 side-dish wells on top and rice and soup wells below."""
    m, g = rng.uniform(0.05, 0.07) * w, rng.uniform(0.03, 0.045) * w
    n_side = int(rng.integers(3, 5))
    inner_w, inner_h = w - 2 * m, h - 2 * m
    top_h = (inner_h - g) * rng.uniform(0.36, 0.44)
    radius = rng.uniform(0.12, 0.25)
    wells: dict[str, np.ndarray] = {}
    side_w = (inner_w - (n_side - 1) * g) / n_side
    for i in range(n_side):
        x0 = m + i * (side_w + g)
        wells[f"side{i + 1}"] = rounded_rect(x0, m, x0 + side_w, m + top_h,
                                             radius * min(side_w, top_h))
    rice_w = (inner_w - g) * rng.uniform(0.45, 0.55)
    y0 = m + top_h + g
    wells["rice"] = rounded_rect(m, y0, m + rice_w, h - m, radius * (h - m - y0))
    wells["soup"] = rounded_rect(m + rice_w + g, y0, w - m, h - m, radius * (h - m - y0))
    return wells


def _brushed(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Brushed-steel luminance texture: long horizontal streaks, mottling and a few scratches."""
    streaks = cv2.blur(rng.normal(0, 1, (h, w)).astype(np.float32), (max(3, w // 6), 1))
    tex = streaks / (streaks.std() + 1e-6) * rng.uniform(3.0, 6.0) + _noise(rng, h, w, 50, 6.0)
    for _ in range(int(rng.integers(15, 40))):  # wear: thin scratches at random angles
        p = rng.uniform([0, 0], [w, h])
        d = rng.uniform(0.03, 0.2) * w * np.array([np.cos(a := rng.uniform(0, np.pi)), np.sin(a)])
        cv2.line(tex, tuple(int(v) for v in p), tuple(int(v) for v in p + d),
                 float(rng.choice([-1, 1]) * rng.uniform(5, 14)), 1, cv2.LINE_AA)
    return tex


def _shade_well(img: np.ndarray, poly: np.ndarray, wall: float, light: np.ndarray) -> None:
    """Press a well into the steel: a lit or shadowed wall, a dimmer floor, a bright rim."""
    h, w = img.shape[:2]
    mask = polygon_mask(poly, (w, h)).astype(np.uint8)
    d = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    gx, gy = cv2.Sobel(d, cv2.CV_32F, 1, 0), cv2.Sobel(d, cv2.CV_32F, 0, 1)
    norm = np.hypot(gx, gy) + 1e-6
    facing = (gx * light[0] + gy * light[1]) / norm  # >0: the wall faces the lamp
    on_wall = (d > 0) & (d < wall)
    gain = np.ones((h, w), np.float32)
    gain[on_wall] += 0.28 * facing[on_wall]
    floor = d >= wall
    # The floor sits in the wall's shadow near its edge (ambient occlusion).
    gain[floor] *= 0.93 - 0.08 * (1 - np.clip((d[floor] - wall) / wall, 0, 1))
    rim = (d > 0) & (d <= 1.5)
    gain[rim] *= 1.15
    img *= gain[..., None]


def draw_tray(rng: np.random.Generator, px_per_cm: float) -> TrayArt:
    """Draw an empty stainless compartment tray at px_per_cm."""
    w, h = round(TRAY_CM[0] * px_per_cm), round(TRAY_CM[1] * px_per_cm)
    body = rounded_rect(0, 0, w - 1, h - 1, 0.07 * h)
    # An anti-aliased outline.
    alpha = cv2.GaussianBlur(polygon_mask(body, (w, h)).astype(np.float32), (0, 0), 0.7)
    steel = rng.uniform(150, 195) * rng.uniform(0.98, 1.02, 3)
    img = (steel[None, None, :] + _brushed(rng, h, w)[..., None]).astype(np.float32)
    light = np.array([-0.6, -0.8])  # the lamp is up and to the left of the camera
    lip = rounded_rect(0.012 * w, 0.012 * w, w - 1 - 0.012 * w, h - 1 - 0.012 * w, 0.06 * h)
    _shade_well(img, lip, 0.012 * w, -light)  # the raised outer lip: lit the other way round
    wells = tray_design(rng, w, h)
    wall = rng.uniform(0.25, 0.4) * px_per_cm * 2.5
    for poly in wells.values():
        _shade_well(img, poly, wall, light)
    return TrayArt(np.clip(img, 0, 255), alpha, wells, px_per_cm)


def _mat(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A coloured rubber floor mat: flat colour, fine dimples, soft light fall-off."""
    colour = np.array(MAT_COLOURS[int(rng.integers(len(MAT_COLOURS)))], np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    pitch = int(rng.integers(6, 12))
    dimples = (((yy % pitch) < 2) & ((xx % pitch) < 2)).astype(np.float32) * -12
    img = colour + (dimples + _noise(rng, h, w, 60, 8.0) + rng.normal(0, 3, (h, w)))[..., None]
    return np.clip(img, 0, 255).astype(np.float32)


def backdrop(kind: str, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """The surface under the tray: a table top or a floor mat (float32 RGB)."""
    w, h = size
    if kind not in BACKDROPS:
        raise ValueError(f"unknown backdrop {kind!r}; choose from {BACKDROPS}")
    return (_table(rng, h, w) if kind == "table" else _mat(rng, h, w)).astype(np.float32)


def _glare(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """The lamp's soft reflection on the metal, fixed in the camera frame (float32 levels)."""
    w, h = size
    cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.2, 0.5) * h
    s = rng.uniform(0.15, 0.25) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (rng.uniform(10, 25) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
            ).astype(np.float32)


def make_kiosk(seed: int, size: tuple[int, int] = (640, 480), kind: str | None = None) -> Kiosk:
    """A kiosk camera with its own tray, backdrop, lamp and empty-tray reference photo."""
    rng = np.random.default_rng([seed, 101])
    w, h = size
    art = draw_tray(rng, TRAY_FRAME_FRAC * w / TRAY_CM[0])
    th, tw = art.alpha.shape
    # The tray sits roughly centred, a little off and askew, as the kiosk's rails hold it.
    off = rng.uniform(-0.02, 0.02, 2) * w
    ref_pose = pose_homography(size, (float(off[0]), float(off[1])), float(rng.uniform(-2, 2)))
    centre = np.array([[1, 0, (w - tw) / 2], [0, 1, (h - th) / 2], [0, 0, 1]])
    tray_to_ref = ref_pose @ centre
    kind = kind or BACKDROPS[int(rng.integers(len(BACKDROPS)))]
    kiosk = Kiosk(
        reference=np.zeros((0, 0, 3), np.uint8),
        compartments={s: _warp_points(p, tray_to_ref) for s, p in art.wells.items()},
        tray_polygon=_warp_points(rounded_rect(0, 0, tw - 1, th - 1, 0.07 * th), tray_to_ref),
        tray_size_cm=TRAY_CM, art=art, tray_to_ref=tray_to_ref,
        backdrop=backdrop(kind, rng, size), glare=_glare(rng, size))
    return replace(kiosk, reference=_photograph(kiosk, art.rgb, np.eye(3), rng, neutral=True))


def pose_homography(size: tuple[int, int], shift: tuple[float, float] = (0.0, 0.0),
                    rotation_deg: float = 0.0, tilt: tuple[float, float] = (0.0, 0.0)
                    ) -> np.ndarray:
    """3x3 homography moving a tray in a photo: tilt, then rotate about the centre, then shift."""
    w, h = size
    c = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]], np.float64)
    a = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    keystone = np.array([[1, 0, 0], [0, 1, 0], [tilt[0] / w, tilt[1] / h, 1]])
    move = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]])
    return move @ c @ rot @ keystone @ np.linalg.inv(c)


def random_pose(rng: np.random.Generator, size: tuple[int, int],
                pose: PoseRange = PoseRange()) -> np.ndarray:
    """A random tray pose within the given limits."""
    w, h = size
    shift = rng.uniform(-pose.shift_frac, pose.shift_frac, 2) * np.array([w, h])
    tilt = rng.uniform(-pose.tilt, pose.tilt, 2)
    return pose_homography(size, (float(shift[0]), float(shift[1])),
                           float(rng.uniform(-pose.rotation_deg, pose.rotation_deg)),
                           (float(tilt[0]), float(tilt[1])))


def _warp_points(points: np.ndarray, hom: np.ndarray) -> np.ndarray:
    """Points (N, 2) mapped by a 3x3 homography."""
    pts = np.asarray(points, np.float64).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(pts, hom).reshape(-1, 2)


def _relight(img: np.ndarray, rng: np.random.Generator, neutral: bool) -> np.ndarray:
    """Brightness, colour temperature, vignette, sensor noise and JPEG, as a camera adds."""
    h, w = img.shape[:2]
    gain, warm = (1.0, 0.0) if neutral else (rng.uniform(0.8, 1.2), rng.uniform(-0.07, 0.07))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    vignette = 1.0 - (0.08 if neutral else rng.uniform(0.03, 0.15)) * r2 / 2
    colour = gain * np.array([1 + warm, 1.0, 1 - warm], np.float32)
    out = img * colour * vignette[..., None] + rng.normal(0, rng.uniform(1.5, 3.5), img.shape)
    out8 = np.clip(out, 0, 255).astype(np.uint8)
    quality = 95 if neutral else int(rng.integers(80, 96))
    _, buf = cv2.imencode(".jpg", out8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert decoded is not None  # we just encoded it
    return np.ascontiguousarray(decoded[..., ::-1])


def _photograph(kiosk: Kiosk, tray_rgb: np.ndarray, pose: np.ndarray, rng: np.random.Generator,
                neutral: bool, stray: Sequence[Placement] = ()) -> np.ndarray:
    """The camera's photo of tray_rgb (tray px) placed by pose over the kiosk's backdrop."""
    w, h = kiosk.size
    hom = pose @ kiosk.tray_to_ref
    rgb = cv2.warpPerspective(tray_rgb, hom, (w, h), flags=cv2.INTER_LINEAR)
    a = cv2.warpPerspective(kiosk.art.alpha, hom, (w, h), flags=cv2.INTER_LINEAR)
    # The tray's soft shadow on the surface below, cast away from the lamp.
    shadow = cv2.GaussianBlur(np.roll(a, (int(0.012 * w), int(0.012 * w)), (0, 1)), (0, 0),
                              0.01 * w)
    scene = kiosk.backdrop * (1 - 0.35 * shadow)[..., None]
    for p in stray:  # food dropped beside the tray, photo px
        paste(scene, p.rgba, p.x, p.y)
    scene = scene * (1 - a[..., None]) + rgb * a[..., None]
    scene += (kiosk.glare * a)[..., None]  # metal reflects the lamp; the backdrop hardly
    return _relight(scene, rng, neutral)


def _resize(rgba: np.ndarray, side: float) -> np.ndarray:
    """The crop scaled so that its longer side is `side` px."""
    f = side / max(rgba.shape[:2])
    size = (max(1, round(rgba.shape[1] * f)), max(1, round(rgba.shape[0] * f)))
    return cv2.resize(rgba, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)


def _find_spot(room: np.ndarray, rgba: np.ndarray, rng: np.random.Generator,
               tries: int = SPOT_TRIES) -> tuple[int, int] | None:
    """A random (x, y) where the crop's food lies wholly inside `room` (bool), or None."""
    h, w = rgba.shape[:2]
    ys, xs = np.nonzero(room)
    if len(xs) == 0 or w > xs.max() - xs.min() + 1 or h > ys.max() - ys.min() + 1:
        return None
    food = rgba[..., 3] > ALPHA_ON
    for _ in range(tries):
        x = int(rng.integers(xs.min(), xs.max() - w + 2))
        y = int(rng.integers(ys.min(), ys.max() - h + 2))
        if not (food & ~room[y : y + h, x : x + w]).any():
            return x, y
    return None


def _fill_well(art: TrayArt, slot: str, crops: Sequence[FoodCrop],
               rng: np.random.Generator) -> list[Placement]:
    """Food crops placed in one well until a random share of it is covered."""
    th, tw = art.alpha.shape
    well = polygon_mask(art.wells[slot], (tw, th))
    # Food lies on the floor and the lower wall, not on the rim.
    room = cv2.erode(well.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    ys, xs = np.nonzero(well)
    short = min(xs.max() - xs.min(), ys.max() - ys.min())
    target, covered = rng.uniform(0.3, 0.8) * well.sum(), np.zeros_like(well)
    out: list[Placement] = []
    for _ in range(MAX_CROPS_PER_WELL):
        crop = crops[int(rng.integers(len(crops)))].rgba
        rgba = _resize(np.ascontiguousarray(np.rot90(crop, int(rng.integers(4)))),
                       rng.uniform(0.45, 0.95) * short)
        spot = _find_spot(room, rgba, rng)
        if spot is None:
            continue
        out.append(Placement(slot, rgba, *spot))
        h, w = rgba.shape[:2]
        covered[spot[1] : spot[1] + h, spot[0] : spot[0] + w] |= rgba[..., 3] > ALPHA_ON
        if covered.sum() >= target:
            break
    return out


def serve(art: TrayArt, crops: Sequence[FoodCrop], rng: np.random.Generator,
          empty_p: float = EMPTY_SLOT_P) -> list[Placement]:
    """A meal: food in most wells, some left empty (at least MIN_SERVED wells served)."""
    if not crops:
        raise ValueError("no food crops to serve")
    slots = list(art.wells)
    served = [s for s in slots if rng.random() >= empty_p]
    for s in slots:
        if len(served) < min(MIN_SERVED, len(slots)) and s not in served:
            served.append(s)
    return [p for s in slots if s in served for p in _fill_well(art, s, crops, rng)]


def food_masks(art: TrayArt, placements: Sequence[Placement]) -> dict[str, np.ndarray]:
    """slot -> bool mask (tray px) of the food placed in it."""
    th, tw = art.alpha.shape
    out: dict[str, np.ndarray] = {}
    for p in placements:
        m = out.setdefault(p.slot, np.zeros((th, tw), bool))
        h, w = p.rgba.shape[:2]
        m[p.y : p.y + h, p.x : p.x + w] |= p.rgba[..., 3] > ALPHA_ON
    return out


def eat(mask: np.ndarray, remaining: float, rng: np.random.Generator) -> np.ndarray:
    """Half-plane (bool, tray px) keeping `remaining` of mask: the meal eaten from one side."""
    ys, xs = np.nonzero(mask)
    a = rng.uniform(0, 2 * np.pi)
    proj = (np.cos(a) * np.arange(mask.shape[1])[None, :]
            + np.sin(a) * np.arange(mask.shape[0])[:, None])
    if remaining >= 1.0 or len(xs) == 0:
        return np.ones_like(mask)
    cut = np.quantile(proj[ys, xs], 1.0 - remaining)
    return proj > cut if remaining > 0 else np.zeros_like(mask)


def render_food(art: TrayArt, placements: Sequence[Placement],
                keep: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(tray RGB with the food pasted, bool food mask), tray px; keep erases eaten parts."""
    canvas = art.rgb.copy()
    food = np.zeros(art.alpha.shape, bool)
    for p in placements:
        rgba = p.rgba.copy()
        h, w = rgba.shape[:2]
        if keep is not None:
            rgba[..., 3] = rgba[..., 3] * keep[p.slot][p.y : p.y + h, p.x : p.x + w]
        paste(canvas, rgba, p.x, p.y)
        food[p.y : p.y + h, p.x : p.x + w] |= rgba[..., 3] > ALPHA_ON
    return canvas, food


def _stray(kiosk: Kiosk, pose: np.ndarray, crops: Sequence[FoodCrop],
           rng: np.random.Generator) -> list[Placement]:
    """A food crop dropped on the backdrop, clear of the tray, in photo px (or none)."""
    w, h = kiosk.size
    a = cv2.warpPerspective(kiosk.art.alpha, pose @ kiosk.tray_to_ref, (w, h))
    off_tray = cv2.erode((a < 0.01).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    rgba = _resize(crops[int(rng.integers(len(crops)))].rgba, 0.12 * w)
    spot = _find_spot(off_tray, rgba, rng, tries=4 * SPOT_TRIES)
    return [] if spot is None else [Placement("stray", rgba, *spot)]


def shoot(kiosk: Kiosk, placements: Sequence[Placement], pose: np.ndarray,
          rng: np.random.Generator, keep: dict[str, np.ndarray] | None = None,
          stray: Sequence[Placement] = ()) -> TrayShot:
    """Photograph the served tray under pose (3x3, reference px -> photo px), with truth."""
    w, h = kiosk.size
    rgb, food = render_food(kiosk.art, placements, keep)
    image = _photograph(kiosk, rgb, pose, rng, neutral=False, stray=stray)
    hom = pose @ kiosk.tray_to_ref
    food_px = cv2.warpPerspective(food.astype(np.uint8) * 255, hom, (w, h)) > ALPHA_ON
    polygons = {s: _warp_points(p, pose) for s, p in kiosk.compartments.items()}
    fill = {}
    for s, poly in polygons.items():
        comp = polygon_mask(poly, (w, h))
        fill[s] = float((food_px & comp).sum() / max(1, comp.sum()))
    stray_mask = np.zeros((h, w), bool)
    for p in stray:
        ph, pw = p.rgba.shape[:2]
        stray_mask[p.y : p.y + ph, p.x : p.x + pw] |= p.rgba[..., 3] > ALPHA_ON
    return TrayShot(image, pose, polygons, fill, food_px, stray_mask)


def make_pair(kiosk: Kiosk, crops: Sequence[FoodCrop], seed: int,
              pose: PoseRange = PoseRange(), poses: tuple[np.ndarray, np.ndarray] | None = None,
              stray: bool = False, empty_p: float = EMPTY_SLOT_P) -> TrayPair:
    """A meal photographed before and after, each under its own pose and light, with truth."""
    rng = np.random.default_rng([seed, 202])
    placements = serve(kiosk.art, crops, rng, empty_p)
    masks = food_masks(kiosk.art, placements)
    remaining = {s: float(rng.choice([0.0, 1.0, rng.uniform(0.1, 0.9)], p=[0.15, 0.1, 0.75]))
                 for s in masks}
    keep = {s: eat(m, remaining[s], rng) for s, m in masks.items()}
    leftover = {s: float((m & keep[s]).sum() / m.sum()) for s, m in masks.items()}
    if poses is None:
        poses = (random_pose(rng, kiosk.size, pose), random_pose(rng, kiosk.size, pose))
    shots = []
    for k, hom in enumerate(poses):
        dropped = _stray(kiosk, hom, crops, rng) if stray else []
        shots.append(shoot(kiosk, placements, hom, rng, keep if k else None, dropped))
    return TrayPair(shots[0], shots[1], leftover)


def load_crops(images_root: str | Path, per_label: int | None = 2, seed: int = 0,
               sets: Sequence[str] = CROP_SETS) -> list[FoodCrop]:
    """Food crops from those of `sets` that lie under images_root (fixtures or shared images)."""
    from model.data.importers.ecustfd import import_ecustfd
    from model.data.importers.labelme import import_labelme
    from model.data.importers.maskpng import import_mask_png
    from model.data.importers.mealtray import import_mealtray

    root = Path(images_root)
    crops: list[FoodCrop] = []
    if "labelme" in sets and (root / "labelme").is_dir():  # hand-drawn true masks
        crops += extract_crops(import_labelme(root / "labelme"), per_label, seed)
    if "maskpng" in sets and (root / "maskpng").is_dir():
        crops += extract_crops(import_mask_png(root / "ecustfd" / "JPEGImages",
                                               root / "maskpng" / "masks",
                                               root / "maskpng" / "classes.txt"), per_label, seed)
    if "ecustfd" in sets and (root / "ecustfd").is_dir():  # box-only: GrabCut pseudo masks
        crops += extract_crops(import_ecustfd(root / "ecustfd"), per_label, seed)
    if "mealtray" in sets and (root / "mealtray" / "labeled").is_dir():
        crops += extract_crops(import_mealtray(root / "mealtray" / "labeled"), per_label, seed)
    return crops
