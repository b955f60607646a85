"""A TrayModel that runs the network once per distinct photo and answers repeats from memory.

The test suite analyses the same fixture photos again and again: in one measured run (2026-12-05,
2 xdist workers) 724 of 993 ONNX Runtime calls repeated an input that the same process had
already run. The network is a pure function of the pixels for one session, so a repeat
answered from memory is what ONNX Runtime would have said; every photo the tests have not
seen yet still goes through the real session. One caveat, which tolerances must cover: a
photo's maps from a batch may differ from a lone run's in the last float bits.

Tests about the work itself (memory or time under load) must not be answered from memory:
they run inside `fresh()`.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model.infer.runtime import TrayModel

Maps = tuple[list[np.ndarray], float]  # one photo's output maps (no batch axis) and scale


class RememberingTrayModel(TrayModel):
    """TrayModel whose run() remembers each photo's output maps, keyed by its pixels, size and
    mode (all that preprocess reads). `limit`: the most photos held, least recently used
    dropped first (None: all; a photo of the shipped model's maps takes ~1.2 MB)."""

    def __init__(self, path: str | Path, *, limit: int | None = None, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.limit = limit
        self._seen: OrderedDict[bytes, Maps] = OrderedDict()
        self._lock = threading.Lock()
        self._fresh = 0
        self.network_runs = 0  # photos that went through ONNX Runtime

    @staticmethod
    def _key(img: Image.Image) -> bytes:
        return hashlib.blake2b(f"{img.mode}{img.size}".encode() + img.tobytes()).digest()

    @contextmanager
    def fresh(self) -> Iterator[None]:
        """Inside: every run goes through ONNX Runtime and nothing is remembered."""
        with self._lock:
            self._fresh += 1
        try:
            yield
        finally:
            with self._lock:
                self._fresh -= 1

    def _recall(self, keys: list[bytes]) -> list[Maps] | None:
        with self._lock:
            if self._fresh or not all(k in self._seen for k in keys):
                return None
            for k in keys:
                self._seen.move_to_end(k)
            return [self._seen[k] for k in keys]

    def _remember(self, keys: list[bytes], outputs: list[np.ndarray],
                  scales: list[float]) -> None:
        with self._lock:
            self.network_runs += len(keys)
            if self._fresh:
                return
            for i, k in enumerate(keys):
                self._seen[k] = ([o[i].copy() for o in outputs], scales[i])
                self._seen.move_to_end(k)
            while self.limit is not None and len(self._seen) > self.limit:
                self._seen.popitem(last=False)

    def run(self, images: Sequence[Image.Image]) -> tuple[list[np.ndarray], list[float]]:
        keys = [self._key(img) for img in images]
        per_photo = self._recall(keys)
        if per_photo is None:
            outputs, scales = super().run(images)
            self._remember(keys, outputs, scales)
            return outputs, scales
        outputs = [np.stack([maps[j] for maps, _ in per_photo])
                   for j in range(len(per_photo[0][0]))]
        return outputs, [scale for _, scale in per_photo]
