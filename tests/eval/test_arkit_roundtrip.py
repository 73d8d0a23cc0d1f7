"""ARKit-52 round trip on the stand-in (CI-sized): render random weights, track, compare.

The full measurement (all 52 shapes, 240 frames) is ``python -m backend bench arkit``
(docs/figures/arkit.md); here a short run on the most visible shapes checks the same pipeline.
"""

from __future__ import annotations

import numpy as np
import pytest

from backend.head.arkit_names import ARKIT_NAMES
from backend.eval.arkit_roundtrip import (RoundTripOptions, correlation, params_to_weights, random_weights,
                                      round_trip, weights_to_params)

# the shapes the CI run moves. With the tracker calibrated to the avatar (avatar.calibrate, as the
# round trip does by default) all six meet the 0.8: measured on 72 frames (seed 5) 1.00
# jawOpen, 0.92 / 0.86 blinks, 0.93 / 0.95 smiles, 0.96 pucker (36 such frames uncalibrated: smile L
# 0.68, pucker 0.38)
CI_SHAPES = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "mouthPucker")
MIN_CORR = {n: 0.8 for n in CI_SHAPES}
# 72 frames, not 36: each shape moves in about a third of the frames, so at 36 one misread frame
# can move a correlation by about 0.1. Seeds 0-7 at 36 frames gave a worst shape of 0.77-0.95, and
# the same 36 frames (seed 5) read smile L 0.79 in CI (the previous session's AMD EPYC failed it
# too) but 0.91 on an Intel Xeon. Pixel noise of +-1 level moves it by 0.01, and torch and numba
# forced to AVX2 change nothing, so most likely mediapipe's reading differs between the CPUs. At 72
# frames seeds 0-5 give a worst shape of 0.84-0.93, for about 10 s more.
CI_FRAMES = 72


def test_correlation_and_random_weights():
    a = np.random.default_rng(0).normal(size=(50, 3))
    b = a * [2.0, -1.0, 0.0] + [1.0, 0.0, 3.0]
    c = correlation(a, b)
    assert c[0] == pytest.approx(1.0) and c[1] == pytest.approx(-1.0) and np.isnan(c[2])
    w = random_weights(RoundTripOptions(frames=200, active=4, hold=1, seed=3))
    assert w.shape == (200, 52) and w.min() >= 0 and w.max() <= 1
    idx = ARKIT_NAMES.index
    assert (w[:, idx("jawOpen")] >= w[:, idx("mouthClose")]).all()
    np.testing.assert_array_equal(w[:, idx("eyeLookInLeft")], w[:, idx("eyeLookOutRight")])   # one gaze
    assert not (w[:, idx("jawLeft")] * w[:, idx("jawRight")]).any()
    # the bench's own sequences (240 frames, seeds 0-3; before they were excluded, seeds 1 and 2 had
    # mouthLeft with mouthRight on 3 and 2 frames): opposite sides of one axis are never on together
    for seed in range(4):
        b = random_weights(RoundTripOptions(seed=seed))
        for left, right in (("jawLeft", "jawRight"), ("mouthLeft", "mouthRight")):
            assert not (b[:, idx(left)] * b[:, idx(right)]).any(), (seed, left)
    assert (w > 0).sum(0).min() >= 5                                   # every shape moves in 200 frames
    only = random_weights(RoundTripOptions(frames=20, active=2, hold=1, shapes=("jawOpen", "mouthPucker")))
    assert set(np.flatnonzero(only.any(0))) <= {idx("jawOpen"), idx("mouthPucker")}


@pytest.fixture(scope="module")
def standin():
    from backend.head.loader import load_head_model

    return load_head_model(None)


@pytest.fixture(scope="module")
def standin_avatar(standin):
    """The astronaut built on the stand-in at LOD 2 (the round trip's detail level), unrefined."""
    from backend.avatar.build import BuildOptions, build_avatar

    res = build_avatar(None, BuildOptions(lods=(2,), refine=False, metrics=False))
    return res.avatar, res.model


def test_weights_survive_the_mapping_both_ways(standin):
    """ARKit weights -> head parameters (shape keys + jaw/eye joints) -> ARKit weights is exact."""
    from types import SimpleNamespace

    from backend.face import source_camera
    from backend.head.params import HeadParams

    model = standin
    avatar = SimpleNamespace(camera=source_camera(), params=HeadParams(
        np.zeros(model.n_shape, np.float32), np.zeros((1, 52), np.float32), np.zeros((1, 5, 3), np.float32),
        np.zeros((1, 3), np.float32)))
    w = random_weights(RoundTripOptions(frames=30, active=4, hold=1, seed=1))
    p = weights_to_params(avatar, model, w)
    np.testing.assert_allclose(params_to_weights(model, p.expr, p.pose), w, atol=2e-3)


@pytest.mark.slow
def test_round_trip_recovers_the_most_visible_shapes(standin_avatar):
    avatar, model = standin_avatar
    res = round_trip(avatar, model, RoundTripOptions(frames=CI_FRAMES, active=2, hold=1, seed=5, shapes=CI_SHAPES))
    assert res.has_face.all()
    corr = {n: float(res.corr[ARKIT_NAMES.index(n)]) for n in CI_SHAPES}
    assert all(corr[n] >= MIN_CORR[n] for n in CI_SHAPES), sorted(corr.items())
    # shapes that never moved stay near zero on average (bounded solve: no negative weights)
    still = [i for i, n in enumerate(ARKIT_NAMES) if not res.truth[:, i].any()]
    assert res.recovered.min() >= 0 and res.recovered.max() <= 1
    assert res.mae[still].mean() < 0.08, dict(zip(np.array(ARKIT_NAMES)[still], res.mae[still].round(2)))
    # the calibration is what removes that bias: uncalibrated, the same frames read 10x more of the
    # shapes that never moved (measured 0.124 vs 0.014)
    assert res.uncalibrated is not None
    assert res.mae[still].mean() < 0.5 * res.uncalibrated.mae[still].mean()
    # the figures carry the calibration's reading floor per shape: none on the joints (jawOpen), some on
    # the mouth's calibrated shapes, never above FLOOR_MAX
    floors = {s["name"]: s["floor"] for s in res.figures()["shapes"]}
    assert floors["jawOpen"] == 0 and 0 < floors["mouthSmileLeft"] <= 0.5 and max(floors.values()) <= 0.5
    # the ranking of visible shapes puts the jaw first and the subtle rolls last
    order = [ARKIT_NAMES[i] for i in res.most_visible(52)]
    assert order[0] == "jawOpen" and order.index("mouthRollUpper") > 40


def test_bootstrap_interval_brackets_the_correlation_and_narrows_with_frames():
    """The per-shape interval of the round trip's figures: exact data give [1, 1], a shape that never
    moves gives none, noisy data an interval around the correlation that narrows as frames are added,
    and the same frames give the same interval (fixed seed)."""
    from backend.eval.arkit_roundtrip import bootstrap_correlation

    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 1, (400, 3))
    truth[:, 2] = 0.0                                   # never moves
    rec = truth.copy()
    rec[:, 1] += rng.normal(0, 0.3, 400)                # correlation about 0.7
    lo, hi, boot = bootstrap_correlation(truth[:40], rec[:40], resamples=400)
    assert boot.shape == (400, 3)
    assert lo[0] == pytest.approx(1.0) and hi[0] == pytest.approx(1.0)
    assert np.isnan(lo[2]) and np.isnan(hi[2])
    point = correlation(truth[:40], rec[:40])[1]
    assert lo[1] < point < hi[1] and hi[1] - lo[1] > 0.1
    lo_many, hi_many, _ = bootstrap_correlation(truth, rec, resamples=400)
    assert hi_many[1] - lo_many[1] < 0.6 * (hi[1] - lo[1])         # 10x the frames: about 1/3 the width
    again = bootstrap_correlation(truth[:40], rec[:40], resamples=400)
    np.testing.assert_array_equal(again[0][:2], lo[:2])


def test_figures_carry_the_intervals():
    from backend.eval.arkit_roundtrip import RoundTripResult

    truth = random_weights(RoundTripOptions(frames=120, active=4, hold=1, seed=2))
    rec = np.clip(truth + np.random.default_rng(0).normal(0, 0.15, truth.shape), 0, 1).astype(np.float32)
    ok = np.ones(len(truth), bool)
    res = RoundTripResult(truth=truth, recovered=rec, visibility_px=np.arange(52, 0, -1, dtype=float),
                          corr=correlation(truth, rec), mae=np.abs(truth - rec).mean(0), has_face=ok)
    fig = res.figures()
    lo, hi = fig["top_at_least_0_8_ci90"]
    assert 0 <= lo <= hi <= 20
    for s in fig["shapes"]:
        if s["corr"] is not None and s["corr_ci90"][0] is not None:
            assert s["corr_ci90"][0] - 1e-9 <= s["corr"] <= s["corr_ci90"][1] + 1e-9


def test_bench_arguments_default_to_the_product_calibration_and_take_smoothing():
    """``bench arkit``'s options: the calibration's mixtures as the product's (avatar.calibrate.MIXTURES),
    no smoothing unless asked (every frame a new key), and a negative smoothing refused before any work."""
    import argparse

    from backend.avatar.calibrate import MIXTURES
    from backend.eval.arkit_roundtrip import add_arguments, run

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args([])
    assert args.calibration_mixtures == MIXTURES == RoundTripOptions().calibration_mixtures
    assert args.smoothing == 0.0 and p.parse_args(["--hold", "4", "--smoothing", "2"]).smoothing == 2.0
    with pytest.raises(SystemExit, match="--smoothing must be >= 0"):
        run(p.parse_args(["--smoothing", "-1"]))
