"""The demo's turntable strip: the frames' poses and the open-mouth, blinking frame."""

from __future__ import annotations

import numpy as np


def test_turntable_params_turn_the_head_then_open_and_blink():
    from types import SimpleNamespace

    from backend.head.loader import load_head_model
    from backend.head.params import HeadParams
    from backend.preview.turntable import OPEN_MOUTH_JAW_DEG, TURNTABLE_YAWS, turntable_params

    model = load_head_model(None)
    base = HeadParams.zeros(model)
    base.pose[0, 0, 1] = 0.1                          # the source pose has a little yaw
    p = turntable_params(SimpleNamespace(params=base), model)
    assert p.expr.shape[0] == len(TURNTABLE_YAWS) + 1
    assert np.allclose(np.degrees(p.pose[:5, 0, 1] - 0.1), TURNTABLE_YAWS, atol=1e-4)
    assert np.allclose(p.pose[5, 0, 1], 0.1) and np.isclose(np.degrees(p.pose[5, 2, 0]), OPEN_MOUTH_JAW_DEG)
    blink = [i for i, n in enumerate(model.expr_names) if "blink" in n.lower()]
    assert blink and np.allclose(p.expr[5, blink], 1.0) and not p.expr[:5, blink].any()
