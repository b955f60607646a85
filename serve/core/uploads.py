"""Multipart uploads read with the size limit enforced while the stream arrives."""
from __future__ import annotations

import io
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile

import numpy as np
from PIL import Image
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from model.infer.images import ImageError, load_image
from serve.core.errors import ApiError
from serve.core.textguard import NUL, nul_message

MAX_TEXT_FIELD_BYTES = 64 * 1024
# Parts of these types are files even without a filename (RFC 7578 makes it optional): the
# photos, depth maps (PNG, .npy) and ONNX models the routes take.
FILE_PART_TYPES = ("image/", "application/octet-stream")


def too_large(limit_bytes: int, what: str = "upload") -> ApiError:
    """413 naming the limit in MB."""
    return ApiError(
        413, "payload_too_large", f"{what} exceeds the limit of {limit_bytes / 1048576:g} MB"
    )


class _LimitedParser(MultiPartParser):
    """Starlette's parser that aborts a file part as soon as it passes the byte limit."""

    def __init__(
        self,
        headers: Headers,
        stream: AsyncGenerator[bytes, None],
        *,
        max_file_bytes: int,
        max_files: int,
    ) -> None:
        super().__init__(
            headers, stream, max_files=max_files, max_fields=50,
            max_part_size=MAX_TEXT_FIELD_BYTES,
        )
        self.max_file_bytes = max_file_bytes
        self._part_bytes = 0

    def on_part_begin(self) -> None:
        """Start counting a new part."""
        super().on_part_begin()
        self._part_bytes = 0

    def on_headers_finished(self) -> None:
        """Starlette takes a part for a file only when it names a filename; one that declares
        a file type (FILE_PART_TYPES) is a file too (it was a 400, or a missing photo)."""
        super().on_headers_finished()
        part = self._current_part
        if part.file is not None:
            return
        declared = dict(part.item_headers).get(b"content-type", b"")
        media_type = parse_options_header(declared)[0].decode("latin-1").lower()
        if not media_type.startswith(FILE_PART_TYPES):
            return
        self._current_fields -= 1
        self._current_files += 1
        if self._current_files > self.max_files:
            raise MultiPartException(
                f"Too many files. Maximum number of files is {self.max_files}.")
        # closed by the parser like its own files (on an error) or by the form (form.close)
        spool = SpooledTemporaryFile(max_size=self.spool_max_size)  # noqa: SIM115
        self._files_to_close_on_error.append(spool)
        part.file = UploadFile(file=spool, size=0, filename=None,  # type: ignore[arg-type]
                               headers=Headers(raw=part.item_headers))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        """Count file bytes as they arrive; stop reading the request once over the limit."""
        if self._current_part.file is not None:
            self._part_bytes += end - start
            if self._part_bytes > self.max_file_bytes:
                name = self._current_part.file.filename or self._current_part.field_name
                raise too_large(self.max_file_bytes, f"file {name!r}")
        super().on_part_data(data, start, end)


@dataclass(frozen=True)
class UploadedFile:
    """One uploaded file, read into memory (bounded by the limit)."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class UploadForm:
    """The parsed form: files by field name (in order) and text fields."""

    files: dict[str, list[UploadedFile]] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    def refuse_unknown(self, allowed: set[str]) -> None:
        """422 for parts (files or text fields) the route does not read: a misspelt field
        must not be silently ignored (like an unknown key of a JSON body)."""
        unknown = sorted((set(self.files) | set(self.fields)) - allowed)
        if unknown:
            raise ApiError(422, "invalid_input",
                           f"unexpected form field(s) {unknown}; expected {sorted(allowed)}")

    def file(self, name: str) -> UploadedFile | None:
        """The single file sent under a field name; 422 when several were sent."""
        found = self.files.get(name, [])
        if len(found) > 1:
            raise ApiError(
                422, "invalid_input", f"send one file in field {name!r}, not {len(found)}"
            )
        return found[0] if found else None


def _check_headers(request: Request, max_total_bytes: int) -> None:
    """Reject wrong content types and declared oversized bodies before reading anything."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(
            415, "unsupported_media_type",
            f"send multipart/form-data (got {content_type or 'no content type'!r})",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_total_bytes:
        raise too_large(max_total_bytes, "request body")


async def read_upload_form(
    request: Request, *, max_file_bytes: int, max_files: int
) -> UploadForm:
    """Parse a multipart request, enforcing the per-file limit while the body streams in."""
    _check_headers(request, max_file_bytes * max_files + MAX_TEXT_FIELD_BYTES * 50)
    parser = _LimitedParser(
        request.headers, request.stream(), max_file_bytes=max_file_bytes, max_files=max_files
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, "bad_multipart", f"malformed multipart body: {exc.message}") from exc
    result = UploadForm()
    try:
        for name, value in form.multi_items():
            text = value.filename or "" if isinstance(value, UploadFile) else value
            if NUL in name or NUL in text:
                raise ApiError(422, "invalid_input", nul_message(f"form field {name!r}"))
            if isinstance(value, UploadFile):
                data = await value.read()
                upload = UploadedFile(name, value.filename, value.content_type, data)
                result.files.setdefault(name, []).append(upload)
            else:
                result.fields[name] = value
    finally:
        await form.close()
    return result


def sniff_image_type(data: bytes) -> str:
    """The real type of an uploaded photo from its first bytes (the declared type may lie)."""
    if not data:
        raise ApiError(422, "empty_file", "the image file is empty (zero bytes)")
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ApiError(
        415, "unsupported_image_type", "the file is not a JPEG, PNG or WebP image"
    )


def decode_photo(
    data: bytes, max_pixels: int, fit: tuple[int, int] | None = None
) -> tuple[Image.Image, str]:
    """An upright RGB photo (model.infer.images.load_image, `fit` as there) and its content type."""
    content_type = sniff_image_type(data)
    try:
        return load_image(data, max_pixels=max_pixels, fit=fit), content_type
    except ImageError as exc:
        raise ApiError(422, "invalid_image", f"cannot use the image: {exc}") from exc


def decode_depth(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """A depth map in mm, (H, W) like the photo: 16-bit grayscale PNG or .npy array.

    Values must be finite and not negative (0 = no reading); 422 otherwise.
    """
    if data.startswith(b"\x93NUMPY"):
        depth = _npy_depth(data, size)
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        depth = _png_depth(data)
    else:
        raise ApiError(415, "unsupported_depth_type", "send depth as 16-bit PNG (mm) or .npy")
    _check_depth_shape(depth.shape, size)
    depth = depth.astype(np.float64)
    if not np.isfinite(depth).all():
        raise ApiError(422, "invalid_depth", "depth values must be finite (no NaN or inf)")
    if (depth < 0).any():
        raise ApiError(422, "invalid_depth", "depth values must not be negative (mm)")
    return depth


def _check_depth_shape(shape: tuple[int, ...], size: tuple[int, int]) -> None:
    """A 2-D map of exactly the photo's (width, height)."""
    if len(shape) != 2:
        raise ApiError(422, "invalid_depth", f"depth must be a 2-D number array, got {shape}")
    if shape != (size[1], size[0]):
        raise ApiError(
            422, "invalid_depth",
            f"depth map is {shape[1]}x{shape[0]}, the photo {size[0]}x{size[1]}",
        )


def _npy_depth(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """A .npy array whose header (shape, dtype, length) is checked before anything is read:
    a 48-byte file may claim 100000x100000 float64."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, SyntaxError, EOFError) as exc:
        raise ApiError(422, "invalid_depth", f"cannot read the .npy depth map: {exc}") from exc
    if dtype.kind not in "uif" or dtype.hasobject or dtype.fields is not None:
        raise ApiError(422, "invalid_depth",
                       f"depth dtype must be real numbers (int, uint, float), not {dtype}")
    _check_depth_shape(tuple(shape), size)
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - stream.tell() != expected:
        raise ApiError(422, "invalid_depth", f"the .npy depth map is truncated or too long "
                       f"({len(data) - stream.tell()} bytes of data, header says {expected})")
    flat = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=stream.tell())
    return flat.reshape(shape, order="F" if fortran else "C")


def _png_depth(data: bytes) -> np.ndarray:
    """Millimetres from a 16-bit single-channel PNG."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise ApiError(
                    422, "invalid_depth", f"depth PNG must be 16-bit grayscale, not {img.mode}"
                )
            return np.asarray(img, dtype=np.float64)
    except (OSError, Image.DecompressionBombError) as exc:
        raise ApiError(422, "invalid_depth", f"cannot read the depth PNG: {exc}") from exc
