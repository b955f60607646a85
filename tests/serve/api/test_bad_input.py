"""The bad-input matrix: every malformed request gets a JSON 4xx with a clear message.

Awkward-but-valid photos (CMYK, 16-bit, alpha, animated, EXIF-rotated, mislabelled) are
derived from a real fixture photo and must be analysed, not refused.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import Service


@pytest.fixture(scope="module")
def kiosk(service: Service) -> dict[str, Any]:
    """A kiosk key of a fresh canteen."""
    return service.key("kiosk", service.canteen("bad-input"))


@pytest.fixture(scope="module")
def photo(photo_bytes: dict[str, bytes]) -> Image.Image:
    """The real ECUSTFD plate photo, decoded."""
    return Image.open(io.BytesIO(photo_bytes["apple"])).convert("RGB")


def _encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _post(service: Service, headers: dict[str, str], photo: bytes, ctype: str = "image/jpeg",
          name: str = "p.jpg", **extra: Any) -> Any:
    return service.client.post("/v1/analyze", files={"image": (name, photo, ctype)},
                               headers=extra.pop("headers", headers), **extra)


def _error(response: Any, status: int, code: str, words: str) -> None:
    """A JSON error with this status and code whose message says `words`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert words.lower() in body["detail"].lower(), body


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions (a decompression bomb's header)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_refused_uploads(service: Service, kiosk: dict[str, str],
                         photo_bytes: dict[str, bytes]) -> None:
    real = photo_bytes["apple"]
    _error(_post(service, kiosk, b""), 422, "empty_file", "zero bytes")
    _error(_post(service, kiosk, real[: len(real) // 3]), 422, "invalid_image", "truncated")
    _error(_post(service, kiosk, b"hello, not a photo" * 50), 415, "unsupported_image_type",
           "not a JPEG, PNG or WebP")
    gif = _encode(Image.new("RGB", (64, 64)), "GIF")
    _error(_post(service, kiosk, gif, "image/gif"), 415, "unsupported_image_type", "JPEG")
    # Past Pillow's own guard, and past the service's (smaller) max_pixels setting.
    _error(_post(service, kiosk, _png_header_only(30000, 30000), "image/png"), 422,
           "invalid_image", "decompression bomb")
    _error(_post(service, kiosk, _png_header_only(8000, 6000), "image/png"), 422,
           "invalid_image", "exceeds 24000000 pixels")


def test_refused_requests(service: Service, kiosk: dict[str, str],
                          photo_bytes: dict[str, bytes]) -> None:
    real, c = photo_bytes["apple"], service.client
    _error(c.post("/v1/analyze", json={"image": "x"}, headers=kiosk), 415,
           "unsupported_media_type", "multipart/form-data")
    _error(c.post("/v1/analyze", files={"photo": ("p.jpg", real)}, headers=kiosk), 422,
           "invalid_input", "unexpected file field")
    _error(c.post("/v1/analyze", data={"user_id": "x"}, files={}, headers=kiosk), 415,
           "unsupported_media_type", "multipart")
    _error(_post(service, kiosk, real, data={"meal_state": "during"}), 422, "invalid_input",
           "meal_state")
    _error(_post(service, kiosk, real, data={"captured_at": "yesterday"}), 422,
           "invalid_input", "captured_at")
    _error(_post(service, kiosk, real, data={"colour": "red"}), 422, "invalid_input", "colour")
    for field in ("user_id", "menu_id", "kiosk_id"):
        _error(_post(service, kiosk, real, data={field: "doesnotexist"}), 404, "not_found",
               "doesnotexist")
    _error(_post(service, {**kiosk, "Idempotency-Key": "k" * 300}, real), 422,
           "invalid_idempotency_key", "1-200")
    two = [("image", ("a.jpg", real)), ("image", ("b.jpg", real))]
    _error(c.post("/v1/analyze", files=two, headers=kiosk), 422, "invalid_input", "one file")
    multipart = {**kiosk, "Content-Type": "multipart/form-data"}
    _error(c.post("/v1/analyze", content=b"x", headers=multipart), 400, "bad_multipart",
           "boundary")
    garbled = {**kiosk, "Content-Type": "multipart/form-data; boundary=zz"}
    _error(c.post("/v1/analyze", content=b"--zz\r\nno headers here", headers=garbled), 400,
           "bad_multipart", "malformed")
    too_many = [("images", (f"{i}.jpg", b"x")) for i in range(65)]
    _error(c.post("/v1/analyze/batch", files=too_many, headers=kiosk), 400, "bad_multipart",
           "too many files")


def test_unknown_ids_routes_and_methods_are_json(service: Service, kiosk: dict[str, str]) -> None:
    c = service.client
    _error(c.get("/v1/analyses/nope", headers=kiosk), 404, "not_found", "'nope'")
    _error(c.get("/v1/analyses/nope/overlay.png", headers=kiosk), 404, "not_found", "nope")
    _error(c.get("/v1/nothing-here", headers=kiosk), 404, "not_found", "not found")
    _error(c.delete("/v1/analyze", headers=kiosk), 405, "method_not_allowed", "not allowed")
    _error(c.get("/v1/analyses", params={"limit": "many"}, headers=kiosk), 422,
           "invalid_input", "limit")


def _exif_rotated(img: Image.Image) -> bytes:
    """The photo stored sideways with EXIF orientation 6 ('rotate 90 CW to view')."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(img.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes())


def _animated_webp(img: Image.Image) -> bytes:
    frames = [img, img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)


def _sixteen_bit_png(img: Image.Image) -> bytes:
    gray = np.asarray(img.convert("L"), dtype=np.uint16) * 257
    return _encode(Image.fromarray(gray), "PNG")


def test_awkward_but_valid_photos_are_analysed(
    service: Service, kiosk: dict[str, str], photo: Image.Image, photo_bytes: dict[str, bytes]
) -> None:
    size = {"width": photo.width, "height": photo.height}
    cases = {
        "cmyk": (_encode(photo.convert("CMYK"), "JPEG"), "image/jpeg"),
        "16-bit": (_sixteen_bit_png(photo), "image/png"),
        "alpha": (_encode(photo.convert("RGBA"), "PNG"), "image/png"),
        "animated": (_animated_webp(photo), "image/webp"),
        "exif-rotated": (_exif_rotated(photo), "image/jpeg"),
        "labelled png, is jpeg": (photo_bytes["apple"], "image/png"),
        "labelled text": (_encode(photo, "PNG"), "text/plain"),
    }
    for name, (data, ctype) in cases.items():
        response = _post(service, kiosk, data, ctype, name=f"{name}.bin")
        assert response.status_code == 201, (name, response.text)
        assert response.json()["image"] | size == response.json()["image"], name


def test_depth_maps(service: Service, photo: Image.Image, photo_bytes: dict[str, bytes]) -> None:
    canteen = service.canteen("depth")
    kiosk = service.key("kiosk", canteen)
    station = service.ok(service.client.post("/v1/kiosks", json={
        "name": "depth", "calibration": {"px_per_cm": 21.0}}, headers=kiosk), 201)["id"]

    def send(depth: bytes, ctype: str = "image/png") -> Any:
        return service.client.post("/v1/analyze", files={
            "image": ("p.jpg", photo_bytes["apple"], "image/jpeg"),
            "depth": ("d.bin", depth, ctype)}, data={"kiosk_id": station}, headers=kiosk)

    flat = np.full((photo.height, photo.width), 400, dtype=np.uint16)
    npy = io.BytesIO()
    np.save(npy, flat)
    first = send(npy.getvalue(), "application/octet-stream")
    assert first.status_code == 201, first.text
    assert first.json()["scale"] == {"source": "kiosk_calibration", "px_per_cm": 21.0}
    for item in first.json()["items"]:  # the kiosk's scale outranks any coin on the tray
        assert item["grams"] is None or item["grams"]["source"] != "reference_object"
    assert send(_encode(Image.fromarray(flat), "PNG")).status_code == 201
    _error(send(_encode(Image.fromarray(flat[:10, :10]), "PNG")), 422, "invalid_depth",
           f"the photo {photo.width}x{photo.height}")
    _error(send(_encode(photo.convert("L"), "PNG")), 422, "invalid_depth", "16-bit")
    _error(send(b"garbage" * 10), 415, "unsupported_depth_type", ".npy")


def _asgi_post(app: Any, headers: list[tuple[bytes, bytes]], chunks: Any) -> tuple[int, Any]:
    """POST /v1/analyze straight through ASGI, feeding the body chunk by chunk."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        body, more = next(chunks)
        return {"type": "http.request", "body": body, "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/analyze", "raw_path": b"",
             "root_path": "", "query_string": b"", "headers": headers,
             "server": ("test", 80), "client": ("test", 1234)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


def test_size_limit_is_enforced_while_the_upload_streams(
    service: Service, kiosk: dict[str, str]
) -> None:
    limit = service.settings.max_upload_bytes
    boundary = "tl-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            'filename="huge.jpg"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff').encode("latin-1")
    piece, pieces = b"\x00" * 65536, 3 * limit // 65536  # a 30 MB upload, never sent whole
    read = {"n": 0}

    def chunks() -> Any:
        yield head, True
        for i in range(pieces):
            read["n"] += 1
            yield piece, i < pieces - 1

    headers = [(b"authorization", kiosk["Authorization"].encode()),
               (b"content-type", f"multipart/form-data; boundary={boundary}".encode())]
    status, body = _asgi_post(service.client.app, headers, chunks())
    assert status == 413 and body["error"] == "payload_too_large", body
    assert "10 MB" in body["detail"]
    # It stopped reading right after the limit, not at the end of the body.
    assert read["n"] * len(piece) <= limit + 2 * len(piece) < pieces * len(piece)

    declared = [*headers, (b"content-length", str(100 * limit).encode())]

    def never() -> Any:
        raise AssertionError("the body was read although its declared size is over the limit")
        yield b"", False

    status, body = _asgi_post(service.client.app, declared, never())
    assert status == 413 and body["error"] == "payload_too_large"


def test_captured_at_out_of_range_is_refused(service: Service, kiosk: dict[str, str],
                                             photo_bytes: dict[str, bytes]) -> None:
    """captured_at must lie in [2000-01-01T00:00Z, now + 1 day]: anything else is a 422 that
    names the field (year 1 in +14:00 once overflowed into a 500; year 9999 was stored)."""
    real = photo_bytes["apple"]
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    for value in ("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00", "9999-12-31",
                  "9999-12-31T23:59:59-12:00", "1999-12-31T23:59:59Z", soon.isoformat()):
        _error(_post(service, kiosk, real, data={"captured_at": value}), 422,
               "invalid_captured_at", "captured_at")
    ok = service.ok(_post(service, kiosk, real, data={"captured_at": "2000-01-01T09:00:00+09:00"}),
                    201)
    assert ok["captured_at"].startswith("2000-01-01T00:00:00"), ok["captured_at"]


def _npy_header(shape: tuple[int, ...], descr: str, payload: bytes = b"") -> bytes:
    """A .npy file whose header claims this shape and dtype, followed by `payload` only."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue() + payload


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def test_hostile_depth_files_are_refused(service: Service, photo: Image.Image,
                                         photo_bytes: dict[str, bytes]) -> None:
    """A .npy header is checked before any array is read (a 48-byte file claiming
    100000x100000 float64 once tried to allocate 74.5 GiB), and depth values must be finite,
    real and not negative."""
    kiosk = service.key("kiosk", service.canteen("hostile-depth"))
    h, w = photo.height, photo.width

    def send(depth: bytes) -> Any:
        return service.client.post("/v1/analyze", files={
            "image": ("p.jpg", photo_bytes["apple"], "image/jpeg"),
            "depth": ("d.npy", depth, "application/octet-stream")}, headers=kiosk)

    bomb = _npy_header((100000, 100000), "<f8")
    assert len(bomb) <= 128
    _error(send(bomb), 422, "invalid_depth", f"the photo {w}x{h}")
    _error(send(_npy_header((h, w), "<f8")), 422, "invalid_depth", "truncated")
    _error(send(_npy_header((h, w, 3), "<u2")), 422, "invalid_depth", "2-d")
    _error(send(_npy_header((h, w), "<U8")), 422, "invalid_depth", "dtype")
    _error(send(_npy_header((h, w), "|O")), 422, "invalid_depth", "")
    _error(send(b"\x93NUMPY\x09\x00garbage"), 422, "invalid_depth", ".npy")
    flat = np.full((h, w), 400.0)
    _error(send(_npy(flat.astype(np.complex128))), 422, "invalid_depth", "dtype")
    for bad, words in ((np.nan, "finite"), (np.inf, "finite"), (-5.0, "negative")):
        broken = flat.copy()
        broken[h // 2, w // 2] = bad
        _error(send(_npy(broken)), 422, "invalid_depth", words)
    assert send(_npy(flat.astype(np.float32))).status_code == 201
