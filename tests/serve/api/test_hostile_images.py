"""The hostile-image corpus (issue 18): every file a hostile client may send as a photo gets
a JSON answer - 201 for an awkward but real photo, a clear 4xx otherwise, never a 500 - and
big photos in flight do not grow a worker's memory without bound.

The corpus is generated here (Pillow and bytes), nothing big is committed.
"""
from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from serve.services.model_registry import LoadedModel
from tests.remembering import RememberingTrayModel
from tests.serve.conftest import Service


def _encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **params)
    return out.getvalue()


def _big_png(width: int, height: int) -> bytes:
    """A real, fully decodable PNG of this size that compresses to little on the wire."""
    img = Image.new("RGB", (width, height), (200, 190, 170))
    draw = ImageDraw.Draw(img)
    draw.ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(150, 90, 40))
    return _encode(img, "PNG", compress_level=1)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming this size with almost no data (a pixel bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + _chunk(b"IEND", b""))


def _jpeg_claiming(small: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose SOF header is patched to claim this size."""
    at = small.index(b"\xff\xc0") + 5  # SOF0: length(2) precision(1) height(2) width(2)
    return small[:at] + struct.pack(">HH", height, width) + small[at + 4:]


def _webp_claiming(small: bytes, width: int, height: int) -> bytes:
    """A real (extended, VP8X) WebP whose canvas header is patched to claim this size."""
    at = small.index(b"VP8X") + 8 + 4  # chunk header(8), flags(4), then 24-bit w-1, h-1
    size = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return small[:at] + size + small[at + 6:]


def _apng(img: Image.Image) -> bytes:
    frames = [img, img.rotate(180)]
    return _encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)


def _heic() -> bytes:
    """The first box of a HEIC file (ftyp heic): a format the service does not take."""
    ftyp = b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic"
    return struct.pack(">I", len(ftyp) + 4) + ftyp + b"\x00" * 200


Case = tuple[bytes, str, int, str]  # data, declared content type, status, error code


def _corpus(photo: Image.Image, jpeg: bytes) -> dict[str, Callable[[], Case]]:
    """name -> a function building (data, content type, expected status, expected code)."""
    small = photo.resize((photo.width // 4, photo.height // 4))
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: a 60 KB EXIF block
    return {
        "zero bytes": lambda: (b"", "image/jpeg", 422, "empty_file"),
        "truncated jpeg": lambda: (jpeg[: len(jpeg) // 2], "image/jpeg", 422, "invalid_image"),
        "truncated png": lambda: (_encode(small, "PNG")[:3000], "image/png", 422,
                                  "invalid_image"),
        "png pixel bomb (header)": lambda: (_png_claiming(60000, 60000), "image/png", 422,
                                           "invalid_image"),
        "png 6300x6300 (40 MP, 0.1 MB)": lambda: (_big_png(6300, 6300), "image/png", 422,
                                                  "invalid_image"),
        "jpeg pixel bomb (header)": lambda: (_jpeg_claiming(_encode(small, "JPEG"), 60000,
                                                            60000), "image/jpeg", 422,
                                             "invalid_image"),
        "webp pixel bomb (header)": lambda: (_webp_claiming(_encode(small, "WEBP", exif=b"Exif"),
                                                            16383, 16383), "image/webp", 422,
                                             "invalid_image"),
        "animated png": lambda: (_apng(small), "image/png", 201, ""),
        "16-bit gray png": lambda: (_encode(Image.fromarray(
            np.asarray(small.convert("L"), dtype=np.uint16) * 257), "PNG"),
            "image/png", 201, ""),
        "cmyk jpeg": lambda: (_encode(small.convert("CMYK"), "JPEG"), "image/jpeg", 201, ""),
        "palette png with transparency": lambda: (_encode(
            small.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
            "image/png", 201, ""),
        "huge exif": lambda: (_encode(small, "JPEG", exif=exif.tobytes()), "image/jpeg", 201,
                              ""),
        "huge icc (1 MB, junk)": lambda: (_encode(small, "JPEG", icc_profile=b"\x00" * 1_000_000),
                                          "image/jpeg", 201, ""),
        "polyglot png+zip": lambda: (_encode(small, "PNG") + b"PK\x03\x04" + b"\x00" * 2000,
                                     "image/png", 201, ""),
        "polyglot jpeg magic + html": lambda: (b"\xff\xd8\xff\xe0<html><script>alert(1)"
                                               b"</script></html>", "image/jpeg", 422,
                                               "invalid_image"),
        "svg": lambda: (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                        b'<script>alert(1)</script></svg>', "image/svg+xml", 415,
                        "unsupported_image_type"),
        "heic": lambda: (_heic(), "image/heic", 415, "unsupported_image_type"),
        "gif": lambda: (_encode(small, "GIF"), "image/gif", 415, "unsupported_image_type"),
        "jpeg labelled svg": lambda: (_encode(small, "JPEG"), "image/svg+xml", 201, ""),
        "png labelled application/zip": lambda: (_encode(small, "PNG"), "application/zip",
                                                 201, ""),
        "over-size (11 MB)": lambda: (b"\xff\xd8\xff" + b"\x00" * (11 << 20), "image/jpeg",
                                      413, "payload_too_large"),
    }


@pytest.fixture(scope="module")
def kiosk(service: Service) -> dict[str, str]:
    return service.key("kiosk", service.canteen("hostile"))


def test_the_hostile_image_corpus(service: Service, kiosk: dict[str, str],
                                  photo_bytes: dict[str, bytes]) -> None:
    """Each file of the corpus: the expected status and error code, JSON, never a 500; the
    service still analyses a real photo afterwards (it lost nothing)."""
    jpeg = photo_bytes["apple"]
    photo = Image.open(io.BytesIO(jpeg)).convert("RGB")
    failures = []
    for name, build in _corpus(photo, jpeg).items():
        data, ctype, status, code = build()
        r = service.client.post("/v1/analyze", files={"image": ("x", data, ctype)},
                                 headers=kiosk)
        body = r.json()
        if r.status_code != status or (code and body.get("error") != code):
            failures.append(f"{name}: {r.status_code} {r.text[:160]}")
    assert not failures, failures
    r = service.client.post("/v1/analyze", files={"image": ("a.jpg", jpeg)}, headers=kiosk)
    assert r.status_code == 201, r.text


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class PeakRss:
    """The largest RSS of this process seen while the block runs (sampled every 10 ms)."""

    def __enter__(self) -> PeakRss:
        self.peak, self._stop = _rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_big_photos_in_flight_are_bounded(service: Service, kiosk: dict[str, str],
                                          photo_bytes: dict[str, bytes],
                                          loaded_model: LoadedModel) -> None:
    """Four clients at once sending 23.5 MP PNGs (just under the pixel limit, 0.1 MB each):
    decodes in flight are bounded and a photo is held reduced, so the peak stays within a
    few hundred MB; a batch request leaves memory where it was (no ORT arena, malloc_trim).
    Every photo goes through ONNX Runtime here (`fresh`): none is answered from memory."""
    if not service.settings.database_url.startswith("sqlite"):
        pytest.skip("memory does not depend on the database: measured once")
    assert isinstance(loaded_model.model, RememberingTrayModel)
    with loaded_model.model.fresh():
        _big_photos_in_flight(service, kiosk, photo_bytes)


def _big_photos_in_flight(service: Service, kiosk: dict[str, str],
                          photo_bytes: dict[str, bytes]) -> None:
    big = _big_png(5600, 4200)
    post = lambda: service.client.post(  # noqa: E731
        "/v1/analyze", files={"image": ("big.png", big, "image/png")}, headers=kiosk)
    assert post().status_code == 201  # warm: first-call allocations are not counted
    before = _rss_mib()
    with PeakRss() as peak, ThreadPoolExecutor(4) as pool:
        statuses = [r.status_code for r in pool.map(lambda _: post(), range(4))]
    assert statuses == [201] * 4
    grown = peak.peak - before
    assert grown < 450, f"4 big PNGs in flight grew RSS by {grown:.0f} MiB"

    photos = [("images", (f"{n}.jpg", photo_bytes["tray"], "image/jpeg")) for n in range(8)]
    before = _rss_mib()
    r = service.client.post("/v1/analyze/batch", files=photos, headers=kiosk)
    assert r.status_code == 200 and r.json()["analysed"] == 8, r.text
    time.sleep(0.2)
    kept = _rss_mib() - before
    assert kept < 150, f"a batch of 8 left RSS {kept:.0f} MiB higher"
