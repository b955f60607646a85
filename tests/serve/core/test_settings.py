"""Settings sized from the machine: ONNX Runtime threads from cores and workers, the pixel
limit from what kiosks send (issue 18); mask refinement, opt-in."""
from __future__ import annotations

import pytest

from serve.core.settings import SettingsError, load_settings, usable_cores


def test_intra_op_threads_share_the_cores_among_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("TRAYLENS_WORKERS", raising=False)
    monkeypatch.delenv("TRAYLENS_INTRA_OP_THREADS", raising=False)
    cores = usable_cores()
    assert load_settings().intra_op_threads == cores  # one worker: every core
    assert load_settings(workers=2).intra_op_threads == max(1, cores // 2)
    assert load_settings(workers=4 * cores).intra_op_threads == 1
    assert load_settings(workers=2, intra_op_threads=3).intra_op_threads == 3  # set: kept
    monkeypatch.setenv("WEB_CONCURRENCY", "2")  # what uvicorn --workers reads too
    assert load_settings().workers == 2
    assert load_settings().intra_op_threads == max(1, cores // 2)


def test_the_pixel_limit_fits_kiosk_cameras() -> None:
    limit = load_settings().max_pixels
    assert 6000 * 4000 <= limit < 6300 * 6300  # a 24 MP camera yes, the 40 MP bomb no


def test_refine_masks_is_opt_in_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRAYLENS_REFINE_MASKS", raising=False)
    assert load_settings().refine_masks is False  # opt-in: it costs a network time a photo
    for value, expected in (("true", True), ("1", True), ("false", False), ("0", False)):
        monkeypatch.setenv("TRAYLENS_REFINE_MASKS", value)
        assert load_settings().refine_masks is expected, value
    monkeypatch.setenv("TRAYLENS_REFINE_MASKS", "sometimes")
    with pytest.raises(SettingsError, match="TRAYLENS_REFINE_MASKS"):
        load_settings()
