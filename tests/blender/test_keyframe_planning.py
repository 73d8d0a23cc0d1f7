"""Keyframe planning (omg_blender_addon/keyframes.py) is numpy only: it runs and is tested without
bpy. With the imported rig's bones (rest axes = model axes), a joint's key is its axis-angle as a
quaternion; the global bone's location is the translation; expressions are clipped to the sliders."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.head.params import HeadParams
from backend.rotations import axis_angle_to_quat

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kf():
    import build_addon

    build_addon.load_tree("omg_avatar")
    return importlib.import_module("omg_avatar.omg_blender_addon.keyframes")


def _rig(kf, names=("smile", "jaw_open")):
    rig_info = importlib.import_module("omg_avatar.omg_blender_addon.rig_info")
    C = kf.C
    bones = {j: rig_info.BoneInfo(j, C.copy(), "QUATERNION") for j in rig_info.JOINTS}
    return rig_info.RigInfo("Rig", "Head", "Key", bones, list(names), {n: (-1.0, 1.0) for n in names},
                            np.zeros(0, np.float32), "standin", None, None, None, None, 0)


def test_planning_imports_no_bpy(kf) -> None:
    code = ("import sys, build_addon; build_addon.load_tree('omg_avatar'); "
            "import omg_avatar.omg_blender_addon.keyframes; print('bpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
    assert not hasattr(kf, "write_keyframes")  # writing F-curves is fcurves.py (bpy)


def test_plan_channels_values(kf) -> None:
    rng = np.random.default_rng(0)
    T = 12
    pose = rng.normal(scale=0.4, size=(T, 5, 3)).astype(np.float32)
    transl = rng.normal(scale=0.02, size=(T, 3)).astype(np.float32)
    expr = np.stack([np.linspace(-2, 2, T), np.full(T, 0.5)], 1).astype(np.float32)
    params = HeadParams(np.zeros(4), expr, pose, transl)
    info = _rig(kf)
    ch = kf.plan_channels(params, info, kf.ApplyOptions())
    assert ch.n_frames == T and set(ch.quats) == set(info.bones)
    for j, joint in enumerate(("global", "neck", "jaw", "eye_L", "eye_R")):
        q = ch.quats[joint]
        np.testing.assert_allclose(np.abs((q * axis_angle_to_quat(pose[:, j])).sum(1)), 1.0, atol=1e-6)
        assert (np.sum(q[1:] * q[:-1], 1) >= 0).all()  # sign-continuous for smooth F-curves
    np.testing.assert_allclose(ch.locations["global"], transl, atol=1e-7)  # Bk^T C t = t for Bk = C
    np.testing.assert_allclose(ch.shape_keys["smile"], np.clip(expr[:, 0], -1, 1))
    assert ch.clipped == int(np.count_nonzero(np.abs(expr[:, 0]) > 1))
    # A track's own column names pick the columns; switched-off joints get no keys.
    named = kf.plan_channels(params, info, kf.ApplyOptions(jaw=False, global_motion=False), ["jaw_open", "smile"])
    np.testing.assert_allclose(named.shape_keys["smile"], 0.5)
    assert "jaw" not in named.quats and "global" not in named.quats and not named.locations


def test_key_reduction_keeps_lines_within_tolerance(kf):
    t = np.arange(200)
    v = np.stack([np.sin(t / 15.0), 0.2 * np.cos(t / 7.0)], 1)
    v[120:] = v[119]                                           # a hold: two keys suffice
    for tol in (1e-3, 1e-2):
        idx = kf.reduce_keys(v, tol)
        assert idx[0] == 0 and idx[-1] == 199 and np.all(np.diff(idx) > 0)
        back = np.stack([np.interp(t, idx, v[idx, c]) for c in range(2)], 1)
        assert np.abs(back - v).max() <= tol
        assert len(idx) < 200 * (0.7 if tol == 1e-3 else 0.3)
    assert np.count_nonzero(kf.reduce_keys(v, 1e-2) > 119) == 1    # the hold is its last key only
    assert kf.reduce_keys(v, 0.0).tolist() == list(range(200))   # 0 = every frame
    ch = kf.Channels(200, shape_keys={"a": v[:, 0]})
    assert len(kf.reduce_channels(ch, 1e-2).keep["k:a"]) < 40
