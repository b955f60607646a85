"""Kiosk calibration arithmetic (serve.services.kiosks); the routes are tested in
tests/serve/api/test_menus.py."""
from __future__ import annotations

import pytest

from serve.core.errors import ApiError
from serve.services.kiosks import px_per_cm_from_tray


def test_px_per_cm_from_tray() -> None:
    # a 53.0 x 37.0 cm tray seen as 1060 x 740 px -> 20.0 px/cm; 1060 x 746 -> 20.0 / 20.16
    assert px_per_cm_from_tray([100, 50, 1160, 790], 53.0, 37.0) == 20.0
    assert px_per_cm_from_tray([0, 0, 1060, 746], 53.0, 37.0) == pytest.approx(20.0811, abs=1e-4)
    for box, w, h in (([0, 0, 1060, 900], 53.0, 37.0), ([10, 0, 5, 9], 1.0, 1.0),
                      ([0, 0, 10, 10], 0.0, 1.0), ([0, 0, 10], 1.0, 1.0)):
        with pytest.raises(ApiError) as err:
            px_per_cm_from_tray(box, w, h)
        assert err.value.code == "invalid_calibration"
