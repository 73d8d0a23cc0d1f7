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


def test_the_back_strip_shows_the_head_from_behind():
    """turntable_strip(yaws=BACK_YAWS, expression=False): one tile per yaw, each showing the avatar,
    and the head seen from behind is not the front view (the demo's back_lod2.png)."""
    from backend.avatar.build import BuildOptions, build_avatar
    from backend.preview.turntable import BACK_YAWS, turntable_strip

    built = build_avatar(None, BuildOptions(lods=(0,), refine=False, metrics=False))
    tile = 64
    back = turntable_strip(built.avatar, built.model, lod=0, tile=tile, yaws=BACK_YAWS, expression=False)
    front = turntable_strip(built.avatar, built.model, lod=0, tile=tile, yaws=(0.0,), expression=False)
    assert back.shape == (tile, len(BACK_YAWS) * tile, 3) and front.shape == (tile, tile, 3)
    tiles = [back[:, i * tile:(i + 1) * tile] for i in range(len(BACK_YAWS))]
    for t in tiles:                                   # white background: the avatar covers a good share
        assert (t.min(-1) < 0.9).mean() > 0.2
    behind = tiles[BACK_YAWS.index(180.0)]
    assert np.abs(behind - front).mean() > 0.05
