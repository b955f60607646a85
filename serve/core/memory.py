"""Give freed memory back to the operating system after large requests (glibc only).

glibc keeps freed heap pages in its arenas (one per thread that allocated), so after a
batch of photos a worker's RSS stayed near its peak although Python and ONNX Runtime had
freed everything; malloc_trim(0) returns those pages (docs/RELIABILITY.md has the figures).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("traylens")


def _load_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on another C library (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _load_trim()


def release_memory() -> bool:
    """Return free heap pages to the OS; False where the C library has no malloc_trim."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
