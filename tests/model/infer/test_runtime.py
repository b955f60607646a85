"""model.infer.runtime: decoding awkward real-image variants, post-processing units, torch-free."""
from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from model.infer import images, runtime
from model.infer.images import ImageError, load_image
from model.infer.runtime import Item, ModelFileError, full_item_mask, mask_polygon
from tests.model.conftest import TinyExport

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def photo(fixtures_dir: Path) -> Image.Image:
    """A real ECUSTFD photo (816x612, apple + coin)."""
    return Image.open(fixtures_dir / "ecustfd" / "JPEGImages" / "apple003T(1).JPG").convert("RGB")


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_plain_jpeg_path_bytes_and_file(fixtures_dir: Path) -> None:
    path = fixtures_dir / "ecustfd" / "JPEGImages" / "apple003T(1).JPG"
    a = load_image(path)
    b = load_image(path.read_bytes())
    with path.open("rb") as fh:
        c = load_image(fh)
    assert a.mode == b.mode == c.mode == "RGB"
    assert a.size == b.size == c.size == (816, 612)


def test_exif_rotation_is_applied(photo: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored landscape, shown portrait
    img = load_image(_encode(photo, "JPEG", exif=exif.tobytes()))
    assert img.size == (612, 816)


def test_cmyk_jpeg_becomes_rgb(photo: Image.Image) -> None:
    img = load_image(_encode(photo.convert("CMYK"), "JPEG"))
    assert img.mode == "RGB"
    diff = np.abs(np.asarray(img, np.int16) - np.asarray(photo, np.int16)).mean()
    assert diff < 12  # same picture after the round trip, not a colour-inverted one


def test_sixteen_bit_png_is_scaled_not_clipped(photo: Image.Image) -> None:
    gray16 = (np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16)
    img = load_image(_encode(Image.fromarray(gray16), "PNG"))
    arr = np.asarray(img)
    assert img.mode == "RGB"
    assert abs(int(arr[..., 0].mean()) - int(np.asarray(photo.convert("L")).mean())) <= 1


def test_alpha_is_composited_on_white(photo: Image.Image) -> None:
    rgba = photo.convert("RGBA")
    alpha = np.full((photo.height, photo.width), 255, np.uint8)
    alpha[:, :100] = 0
    rgba.putalpha(Image.fromarray(alpha))
    arr = np.asarray(load_image(_encode(rgba, "PNG")))
    assert (arr[:, :100] == 255).all()
    assert (arr[:, 100:] == np.asarray(photo)[:, 100:]).all()


def test_animated_gif_gives_first_frame(photo: Image.Image) -> None:
    small = photo.resize((204, 153))
    frames = [small, Image.new("RGB", small.size, (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    img = load_image(data)
    assert img.size == small.size
    assert np.asarray(img)[..., 2].mean() < 200  # not the all-blue second frame


def test_truncated_zero_byte_and_non_image(photo: Image.Image, tmp_path: Path) -> None:
    data = _encode(photo, "JPEG")
    with pytest.raises(ImageError, match=r"truncated|corrupt"):
        load_image(data[: len(data) // 2])
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"%PDF-1.7 definitely not a photo")
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "missing.jpg")


def test_pixel_bomb_guard_reads_header_only(photo: Image.Image) -> None:
    data = _encode(photo, "PNG")
    with pytest.raises(ImageError, match="too large"):
        load_image(data, max_pixels=100_000)
    assert load_image(data, max_pixels=816 * 612).size == (816, 612)


def test_letterbox_keeps_aspect_and_pads_bottom_right(photo: Image.Image) -> None:
    arr, scale = runtime.letterbox(photo, (512, 512))
    assert arr.shape == (512, 512, 3)
    assert scale == pytest.approx(512 / 816)
    assert np.allclose(arr[400:, :, :], runtime.PAD_VALUE)  # 612 * scale = 384 rows of photo
    assert not np.allclose(arr[:380, :, :], runtime.PAD_VALUE)


def test_peaks_nms_and_box_decode_by_hand() -> None:
    heat = np.zeros((2, 6, 8), np.float32)
    heat[0, 2, 3] = 0.9
    heat[0, 2, 4] = 0.5  # not a local maximum: its neighbour is higher
    heat[1, 4, 6] = 0.7
    peaks = runtime.find_peaks(heat, 0.3, top_k=10)
    assert peaks[:, :3].tolist() == [[0, 2, 3], [1, 4, 6]]
    ltrb = np.full((4, 6, 8), 8.0, np.float32)
    boxes = runtime.decode_boxes(peaks, ltrb, stride=8)
    assert boxes[0].tolist() == [20.0, 12.0, 36.0, 28.0]  # centre (28, 20) +/- 8
    dup = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], float)
    assert runtime.nms(dup, np.array([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2]


def test_food_peaks_find_food_no_single_class_is_sure_of() -> None:
    """PostConfig(peaks="food"): a cell where two food classes each score 0.2 is food at
    1 - 0.8 * 0.8 = 0.36 (found at 0.25, labelled by the stronger class), which the class
    peaks miss; the coin keeps its own map and label."""
    labels = ["a", "b", "coin"]
    heat = np.zeros((3, 6, 8), np.float32)
    heat[0, 2, 3], heat[1, 2, 3] = 0.2, 0.22
    heat[2, 4, 6] = 0.9
    assert runtime.find_peaks(heat, 0.25, top_k=10)[:, 0].tolist() == [2]  # the coin only
    peaks = runtime.food_peaks(heat, labels, 0.25, top_k=10)
    assert peaks[:, :3].tolist() == [[2, 4, 6], [1, 2, 3]]
    assert peaks[:, 3] == pytest.approx([0.9, 1 - 0.8 * 0.78])
    meta = runtime.ModelMeta(labels=labels, food_ids=["x", "y", None], input_size=(64, 48),
                             mean=(0.5,) * 3, std=(0.5,) * 3, stride=8, embedding_dim=3,
                             version="t", fingerprint="t")
    maps = [heat, np.full((4, 6, 8), 8.0, np.float32), np.ones((1, 6, 8), np.float32),
            np.ones((3, 6, 8), np.float32)]
    by_class = runtime.decode_outputs(maps, 1.0, (64, 48), meta, runtime.PostConfig())
    by_food = runtime.decode_outputs(maps, 1.0, (64, 48), meta, runtime.PostConfig(peaks="food"))
    assert [it.label for it in by_class] == ["coin"]
    assert [(it.label, round(it.score, 4)) for it in by_food] == [("coin", 0.9), ("b", 0.376)]
    assert runtime.food_peaks(np.zeros((3, 6, 8), np.float32), labels, 0.25, 10).shape[0] == 0


def test_decode_outputs_maps_back_to_original_pixels() -> None:
    meta = runtime.ModelMeta(labels=["a", "coin"], food_ids=["x", None], input_size=(64, 48),
                             mean=(0.5,) * 3, std=(0.5,) * 3, stride=8, embedding_dim=3,
                             version="t", fingerprint="t")
    heat = np.zeros((2, 6, 8), np.float32)
    heat[0, 2, 3] = 0.8
    heat[1, 2, 3] = 0.2
    ltrb = np.full((4, 6, 8), 8.0, np.float32)
    mask = np.zeros((1, 6, 8), np.float32)
    mask[0, 1:4, 2:5] = 1.0
    embed = np.zeros((3, 6, 8), np.float32)
    embed[0] = 2.0
    # The original image was 128x96, letterboxed at scale 0.5.
    items = runtime.decode_outputs([heat, ltrb, mask, embed], 0.5, (128, 96), meta,
                                   runtime.PostConfig(score_min=0.5))
    assert len(items) == 1
    it = items[0]
    assert it.box == pytest.approx((40.0, 24.0, 72.0, 56.0))
    assert it.label == "a" and it.score == pytest.approx(0.8)
    assert it.class_scores == pytest.approx([0.8, 0.2])
    assert it.embedding == pytest.approx([1.0, 0.0, 0.0])
    assert it.polygon is not None and it.area_px > 0.5 * 32 * 32


def _descriptor_meta() -> runtime.ModelMeta:
    """A 64x64-input file whose graph also outputs 2- and 3-channel backbone maps."""
    return runtime.ModelMeta(labels=["a", "coin"], food_ids=["x", None], input_size=(64, 64),
                             mean=(0.5,) * 3, std=(0.5,) * 3, stride=8, embedding_dim=3 + 5,
                             version="t", fingerprint="t",
                             backbone_descriptor={"strides": [16, 32], "channels": [2, 3]})


def test_an_items_embedding_joins_the_head_and_the_backbone_in_its_box() -> None:
    """Each part is L2-normalised and the two sit side by side in one unit vector, so a cosine
    between two items is the mean of the two parts' cosines; the backbone maps are averaged
    over the box's cells only."""
    meta = _descriptor_meta()
    heat = np.zeros((2, 8, 8), np.float32)
    heat[0, 3, 3] = 0.9  # cell centre (28, 28); 12 px to each side: box 16..40
    ltrb = np.full((4, 8, 8), 12.0, np.float32)
    mask = np.ones((1, 8, 8), np.float32)
    embed = np.zeros((3, 8, 8), np.float32)
    embed[1] = 4.0
    s16 = np.zeros((2, 4, 4), np.float32)
    s16[0] = 1.0
    s16[1] = 5.0
    s16[1, 1:3, 1:3] = 0.0  # the box's stride-16 cells: channel 1 is 5 only outside them
    s32 = np.zeros((3, 2, 2), np.float32)
    s32[2] = 2.0
    items = runtime.decode_outputs([heat, ltrb, mask, embed, s16, s32], 1.0, (64, 64), meta,
                                   runtime.PostConfig(score_min=0.5))
    assert len(items) == 1 and items[0].box == pytest.approx((16.0, 16.0, 40.0, 40.0))
    half = 1 / np.sqrt(2)
    expected = [0, half, 0, half * half, 0, 0, 0, half * half]  # head | s16 | s32 parts
    assert items[0].embedding == pytest.approx(expected, abs=1e-6)
    assert meta.head_embedding_dim == 3 and meta.output_count == 6
    with pytest.raises(ValueError, match="4 maps for a file that outputs 6"):
        runtime.decode_outputs([heat, ltrb, mask, embed], 1.0, (64, 64), meta,
                               runtime.PostConfig(score_min=0.5))


def test_a_bad_backbone_descriptor_in_the_metadata_is_a_model_file_error() -> None:
    good = _descriptor_meta()
    assert runtime.ModelMeta.from_json(good.to_json()) == good
    for bad in ({"strides": [16, 32], "channels": [2]}, {"strides": [16], "channels": [8]},
                {"strides": [16], "channels": [2], "extra": [1]}):
        meta = dataclasses.replace(good, backbone_descriptor=bad)
        with pytest.raises(ModelFileError, match="backbone_descriptor"):
            runtime.ModelMeta.from_json(meta.to_json())


def test_model_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        runtime.TrayModel(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ModelFileError, match="cannot load"):
        runtime.TrayModel(bad)


def test_runtime_import_leaves_torch_out() -> None:
    code = "import sys, model.infer.runtime, model.infer.portion; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_full_item_mask_places_the_crop_and_clips_at_the_border() -> None:
    """A 3x4 crop at box (8.6, 1.2, ...) in a 10x5 image: columns 8-9, rows 1-3 set."""
    crop = np.ones((3, 4), dtype=bool)
    item = Item(box=(8.6, 1.2, 12.0, 4.0), label="apple", label_index=0, score=0.9,
                class_scores=np.ones(1), mask=crop, polygon=None, area_px=12.0,
                embedding=np.ones(4, np.float32))
    full = full_item_mask(item, (10, 5))
    assert full.shape == (5, 10) and full.sum() == 6  # 3 rows x the 2 columns inside
    assert full[1:4, 8:10].all()
    empty = full_item_mask(Item(**{**item.__dict__, "mask": None}), (10, 5))
    assert not empty.any()


def test_mask_polygon_keeps_the_outline_within_a_pixel_with_few_vertices() -> None:
    """A disc of radius 40: the outline keeps its area (pi r^2) with far fewer vertices than
    boundary pixels, and is placed at the offset."""
    yy, xx = np.mgrid[:101, :101]
    disc = (yy - 50) ** 2 + (xx - 50) ** 2 <= 40**2
    poly = mask_polygon(disc, (10, 20))
    assert poly is not None and 8 <= len(poly) < 60  # the raw contour has ~220 vertices
    pts = np.asarray(poly, dtype=np.float32)
    assert abs(cv2.contourArea(pts) - disc.sum()) / disc.sum() < 0.03
    assert pts[:, 0].min() == 10 + 10 and pts[:, 1].min() == 20 + 10
    assert mask_polygon(np.zeros((5, 5), bool), (0, 0)) is None


MEALTRAY_PHOTO = "20220308112654_000042_059_0000000001_B______xx_C (2770).jpg"


def test_reduced_jpeg_decode_covers_the_letterbox_and_keeps_the_full_size(
    fixtures_dir: Path,
) -> None:
    path = fixtures_dir / "mealtray" / "labeled" / MEALTRAY_PHOTO
    full = load_image(path)
    small = load_image(path, fit=(512, 384))
    assert full.size == images.full_size(full) == (1024, 768)
    assert small.size == (512, 384) and images.full_size(small) == (1024, 768)
    assert images.full_scale(small, 1.0) == pytest.approx(0.5)
    # The same photo, averaged by the decoder instead of by cv2's INTER_AREA.
    ref, _ = runtime.letterbox(full, (512, 384))
    got, _ = runtime.letterbox(small, (512, 384))
    assert float(np.abs(ref - got).mean()) < 0.02
    # Nothing to gain (or to lose) when the photo is already small enough.
    assert images.FULL_SIZE_KEY not in load_image(path, fit=(2048, 1536)).info
    # A PNG (no DCT scaling) is box-averaged right after decoding by the same factor.
    png = load_image(_encode(full, "PNG"), fit=(512, 384))
    assert png.size == (512, 384) and images.full_size(png) == (1024, 768)
    got, _ = runtime.letterbox(png, (512, 384))
    assert float(np.abs(ref - got).mean()) < 0.02



def test_reduced_decode_of_an_exif_rotated_jpeg(photo: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: upright is the stored image turned 90 degrees
    data = _encode(photo, "JPEG", exif=exif, quality=95)
    upright = load_image(data)
    small = load_image(data, fit=(160, 120))
    assert upright.size == (photo.height, photo.width)
    assert images.full_size(small) == upright.size
    assert small.width < upright.width and small.height < upright.height
    scale = min(160 / upright.width, 120 / upright.height)
    assert small.width >= scale * upright.width and small.height >= scale * upright.height
    assert small.width / small.height == pytest.approx(upright.width / upright.height, rel=0.02)


def _counterpart(item: runtime.Item, items: list[runtime.Item]) -> runtime.Item:
    """The item of the other list with the same label whose box is nearest."""
    same = [i for i in items if i.label == item.label]
    assert same, f"{item.label} at {item.score:.2f} has no counterpart"
    return min(same, key=lambda i: max(abs(p - q) for p, q in zip(i.box, item.box, strict=True)))


def test_predictions_of_a_reduced_decode_are_in_full_photo_pixels(fixtures_dir: Path) -> None:
    """The shipped model on one real tray: same items, boxes within a few pixels."""
    model = runtime.TrayModel(REPO / "model" / "artifacts" / "traylens.onnx")
    path = fixtures_dir / "mealtray" / "labeled" / MEALTRAY_PHOTO
    # Every item scoring >= 0.15 in one decode must be in the other, where it is decoded down
    # to 0.01: a faint item may straddle any single threshold (1.4.0's plate here: 0.20 full,
    # 0.27 reduced; a 3-seed ensemble's: 0.047 and 0.059), and that alone must not fail.
    cfg = runtime.PostConfig(score_min=0.01)
    ref = model.predict([load_image(path)], cfg=cfg)[0]
    got = model.predict([load_image(path, fit=model.meta.input_size)], cfg=cfg)[0]
    assert (got.width, got.height) == (ref.width, ref.height) == (1024, 768)
    pairs = [(a, _counterpart(a, got.items)) for a in ref.items if a.score >= 0.15]
    pairs += [(_counterpart(b, ref.items), b) for b in got.items if b.score >= 0.15]
    assert pairs
    for a, b in pairs:
        assert b.score == pytest.approx(a.score, abs=0.1)
        assert b.box == pytest.approx(a.box, abs=4.0)
        # a faint item's mask varies more: 1.6.0's food-shaped mask of the Plate at 0.20
        # here is 13,466 px in one decode and 14,849 in the other (confident items: < 1 %)
        assert b.area_px == pytest.approx(a.area_px, rel=0.05 if a.score >= 0.5 else 0.15)
        assert float(a.embedding @ b.embedding) > 0.98
    whole = model.embed_regions(load_image(path))
    reduced = model.embed_regions(load_image(path, fit=model.meta.input_size))
    assert float(whole[0] @ reduced[0]) > 0.98


def test_enrolment_embedding_averages_the_photo_and_its_mirror(fixtures_dir: Path) -> None:
    """The average over both views is the same whichever way round the photo was taken."""
    model = runtime.TrayModel(REPO / "model" / "artifacts" / "traylens.onnx")
    img = load_image(fixtures_dir / "ecustfd" / "JPEGImages" / "apple003T(1).JPG",
                     fit=model.meta.input_size)
    mirror = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mirror.info.update(img.info)
    width, height = images.full_size(img)
    box = (200.0, 150.0, 500.0, 420.0)
    flipped = (width - box[2], box[1], width - box[0], box[3])
    a = model.embed_enrolment(img, boxes=[box])[0]
    b = model.embed_enrolment(mirror, boxes=[flipped])[0]
    assert float(np.linalg.norm(a)) == pytest.approx(1.0, abs=1e-5)
    assert float(a @ b) > 0.999
    assert float(a @ model.embed_regions(img, boxes=[box])[0]) > 0.8  # flip-test file: 1.0
    mask = np.zeros((height, width), bool)
    mask[150:420, 200:500] = True
    c = model.embed_enrolment(img, masks=[mask])[0]
    d = model.embed_enrolment(mirror, masks=[mask[:, ::-1]])[0]
    assert float(c @ d) > 0.999
    whole = model.embed_enrolment(img)[0]
    assert float(whole @ model.embed_enrolment(mirror)[0]) > 0.999


def test_a_flip_test_file_enrols_in_one_pass(fixtures_dir: Path, tmp_path: Path,
                                             tiny_onnx: TinyExport) -> None:
    """Its graph already averages each photo with its mirror: no second mirrored pass.
    (The shipped-like variant, decoupled with 3 members, whose export test_export and
    test_quantize share.)"""
    _, _, path = tiny_onnx(tmp_path / "flip.onnx", decoupled=True, flip_test=True, members=3)
    model = runtime.TrayModel(path)
    img = load_image(fixtures_dir / "ecustfd" / "JPEGImages" / "apple003T(1).JPG")
    box = (200.0, 150.0, 500.0, 420.0)
    enrolled = model.embed_enrolment(img, boxes=[box])
    assert np.array_equal(enrolled, model.embed_regions(img, boxes=[box]))
