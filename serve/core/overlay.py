"""The overlay image of a result: masks, boxes, labels and grams drawn over the photo."""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

# Distinct, colour-blind-friendly hues (Okabe-Ito), cycled over the items.
PALETTE = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66),
    (0, 114, 178), (213, 94, 0), (204, 121, 167), (0, 0, 0),
)
MASK_ALPHA = 96
MAX_SIDE = 1600  # overlays are for looking at: larger photos are drawn scaled down
# Fonts with Hangul, tried in order (Debian fonts-nanum, as the Dockerfile installs; Noto
# CJK): a Korean menu's dish names must not draw as empty boxes. Else Pillow's own font.
HANGUL_FONTS = (
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
)


@dataclass(frozen=True)
class OverlayItem:
    """What is drawn for one item."""

    box: Sequence[float]
    polygon: Sequence[Sequence[float]]
    caption: str


def caption(name: str | None, label: str, grams: float | None) -> str:
    """'name 123 g' (the item's display name, else its label); '?' when grams are unknown."""
    amount = f"{grams:.0f} g" if grams is not None else "? g"
    return f"{name or label} {amount}"


def display_name(label: str, menu_dish_id: str | None, name_en: str | None) -> str:
    """What an item is called on the photo: a menu dish by its own name (the menu's
    language, e.g. 쌀밥), else the food's English name, else the label (e.g. unidentified)."""
    if menu_dish_id is not None:
        return label
    return name_en or label


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A Hangul-capable font at a size readable on the photo (Pillow's own without one)."""
    for path in HANGUL_FONTS:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _scaled(points: Sequence[Sequence[float]], factor: float) -> list[tuple[float, float]]:
    """Points scaled to the drawing size."""
    return [(float(x) * factor, float(y) * factor) for x, y in points]


def _draw_item(
    mask_layer: ImageDraw.ImageDraw, draw: ImageDraw.ImageDraw, item: OverlayItem,
    colour: tuple[int, int, int], factor: float, font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    """Mask fill, outline, box and caption of one item."""
    x0, y0, x1, y1 = (float(v) * factor for v in item.box)
    if len(item.polygon) >= 3:
        pts = _scaled(item.polygon, factor)
        mask_layer.polygon(pts, fill=(*colour, MASK_ALPHA))
        draw.line([*pts, pts[0]], fill=colour, width=2)
    draw.rectangle((x0, y0, x1, y1), outline=colour, width=3)
    text_box = draw.textbbox((x0, y0), item.caption, font=font)
    height = text_box[3] - text_box[1] + 6
    top = y0 - height if y0 - height >= 0 else y0
    draw.rectangle((x0, top, x0 + text_box[2] - text_box[0] + 8, top + height), fill=colour)
    draw.text((x0 + 4, top + 2), item.caption, fill=(255, 255, 255), font=font,
              stroke_width=1, stroke_fill=(0, 0, 0))


def render_overlay(photo: Image.Image, items: Sequence[OverlayItem]) -> bytes:
    """PNG bytes of the photo with every item's mask, box and caption."""
    factor = min(1.0, MAX_SIDE / max(photo.size))
    base = photo.convert("RGBA")
    if factor < 1.0:
        base = base.resize((round(photo.width * factor), round(photo.height * factor)))
    masks = Image.new("RGBA", base.size, (0, 0, 0, 0))
    mask_layer = ImageDraw.Draw(masks)
    lines = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(lines)
    font = _font(max(12, round(min(base.size) / 40)))
    for index, item in enumerate(items):
        _draw_item(mask_layer, draw, item, PALETTE[index % len(PALETTE)], factor, font)
    out = Image.alpha_composite(Image.alpha_composite(base, masks), lines).convert("RGB")
    buffer = io.BytesIO()
    out.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
