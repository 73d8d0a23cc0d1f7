"""Import Face Capture on the installed add-on (headless bpy, one child process): a Live Link Face
CSV with known values keys exactly those values on those frames, the mapping table is stored in the
.blend and reused (an edited gain changes the next import), and two imports leave two actions with
the first take intact on the NLA."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from isolated_blender import installed_script, run_isolated

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preview"))
from synthetic import astronaut_avatar, same_standin  # noqa: E402

from backend.motion.arkit import ANGLE_NAMES, ARKIT_NAMES, default_mapping  # noqa: E402
from backend.motion.capture import format_timecode  # noqa: E402

pytestmark = pytest.mark.blender
T = 36
SMOOTH = np.zeros((90, 61))                                       # a slow blink: few keys needed
SMOOTH[:, 0] = np.round(0.5 + 0.5 * np.sin(np.arange(90) / 20.0), 6)

SCRIPT = """
backend_avatar, loader = mod("backend.avatar"), mod("backend.head.loader")
from bpy_extras import anim_utils

avatar, _, rig = avatar_rig(AVATAR, "Astro")
key = scene_write.head_object(rig).data.shape_keys
scene = bpy.context.scene

def curves(action, slot):
    bag = anim_utils.action_get_channelbag_for_slot(action, slot)
    out = {}
    for fc in bag.fcurves:
        co = [0.0] * (2 * len(fc.keyframe_points))
        fc.keyframe_points.foreach_get("co", co)
        out[f"{fc.data_path}[{fc.array_index}]"] = [co[0::2], co[1::2]]
    return out

RESULT["first"] = sorted(bpy.ops.omg_avatar.import_face_capture(filepath=CSV_A, avatar="Astro"))
RESULT["scene"] = [scene.render.fps, scene.render.fps_base, scene.frame_start, scene.frame_end]
s = scene.omg_avatar_animation
RESULT["mapping_rows"] = len(s.capture_mapping)
ad, kd = rig.animation_data, key.animation_data
RESULT["first_rig"] = curves(ad.action, ad.action_slot)
RESULT["first_key"] = curves(kd.action, kd.action_slot)
RESULT["first_names"] = [ad.action.name, kd.action.name]
row = next(r for r in s.capture_mapping if r.source == "eyeBlinkLeft")
row.gain = 0.5                                      # edited in the panel: used by the next import
RESULT["second"] = sorted(bpy.ops.omg_avatar.import_face_capture(filepath=CSV_B, avatar="Astro"))
RESULT["second_key"] = curves(kd.action, kd.action_slot)
RESULT["second_names"] = [ad.action.name, kd.action.name]
RESULT["nla"] = [[(st.name, st.action.name, st.frame_start) for st in tr.strips] for tr in kd.nla_tracks]
old = bpy.data.actions[RESULT["first_names"][1]]
RESULT["old_key"] = curves(old, kd.nla_tracks[0].strips[0].action_slot)
RESULT["actions"] = sorted(a.name for a in bpy.data.actions)
RESULT["reduced"] = sorted(bpy.ops.omg_avatar.import_face_capture(filepath=CSV_C, avatar="Astro",
                           key_tolerance=0.002))
fc = next(f for f in anim_utils.action_get_channelbag_for_slot(kd.action, kd.action_slot).fcurves
          if f.data_path == 'key_blocks["eyeBlinkLeft"].value')
RESULT["reduced_keys"] = len(fc.keyframe_points)
RESULT["reduced_interp"] = sorted({kp.interpolation for kp in fc.keyframe_points})
RESULT["reduced_eval"] = [fc.evaluate(float(f)) for f in range(1, NC + 1)]
RESULT["actions_before_bad"] = len(bpy.data.actions)
bad = CSV_A.replace("take_a", "bad")
open(bad, "w").write("Timecode,BlendShapeCount,EyeBlinkLeft\\n00:00:00:00.000,61,0.5\\n")
try:
    RESULT["bad"] = sorted(bpy.ops.omg_avatar.import_face_capture(filepath=bad, avatar="Astro"))
except RuntimeError as exc:
    RESULT["bad"] = str(exc)
RESULT["actions_after_bad"] = len(bpy.data.actions)
# a table saved for the stand-in's old 24 expressions: converted to the ARKit keys and stored back
s.capture_mapping.clear()
for src, tgt in (("eyeBlinkRight", "blink_R"), ("mouthSmileLeft", "smile_L"), ("mouthPressLeft", "lips_press")):
    row = s.capture_mapping.add()
    row.source, row.target, row.gain = src, tgt, 1.0
RESULT["old_map"] = sorted(bpy.ops.omg_avatar.import_face_capture(filepath=CSV_A, avatar="Astro"))
RESULT["old_map_key"] = curves(kd.action, kd.action_slot)
RESULT["old_map_rows"] = sorted([r.source, r.target] for r in s.capture_mapping)
row = s.capture_mapping.add()
row.source, row.target, row.gain = "eyeBlinkLeft", "grin_L", 1.0
n_before = len(bpy.data.actions)
try:
    RESULT["unknown_map"] = sorted(bpy.ops.omg_avatar.import_face_capture(filepath=CSV_A, avatar="Astro"))
except RuntimeError as exc:
    RESULT["unknown_map"] = str(exc)
RESULT["unknown_map_added"] = len(bpy.data.actions) - n_before
"""


def _csv(path: Path, vals: np.ndarray) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Timecode", "BlendShapeCount"] + [n[0].upper() + n[1:] for n in ARKIT_NAMES] + list(ANGLE_NAMES))
        for i, row in enumerate(vals):
            w.writerow([format_timecode(3600 + i / 30, 30), 61, *(f"{v:.6f}" for v in row)])
    return path


@pytest.fixture(scope="module")
def child(addon_zip, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("capture")
    _, _, avatar_path = astronaut_avatar(tmp)
    rng = np.random.default_rng(7)
    va = np.concatenate([rng.uniform(0, 1, (T, 52)), rng.uniform(-0.3, 0.3, (T, 9))], 1).round(6)
    vb = np.concatenate([rng.uniform(0, 1, (T, 52)), rng.uniform(-0.3, 0.3, (T, 9))], 1).round(6)
    a, b = _csv(tmp / "take_a.csv", va), _csv(tmp / "take_b.csv", vb)
    c = _csv(tmp / "take_c.csv", SMOOTH)
    script = installed_script(addon_zip, SCRIPT, same_standin(), AVATAR=str(avatar_path), CSV_A=str(a),
                              CSV_B=str(b), CSV_C=str(c), NC=len(SMOOTH))
    res = run_isolated(script, tmp, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "Traceback" not in res.stderr, res.stderr[-4000:]
    return res.result, va, vb


def test_known_csv_keys_exactly_those_values_on_those_frames(child):
    r, va, _ = child
    assert r["install"] == ["FINISHED"] and r["first"] == ["FINISHED"]
    assert r["scene"] == [30, 1.0, 1, T]
    frames = [float(f) for f in range(1, T + 1)]
    blink = r["first_key"]['key_blocks["eyeBlinkLeft"].value[0]']
    assert blink[0] == frames
    np.testing.assert_allclose(blink[1], va[:, ARKIT_NAMES.index("eyeBlinkLeft")], atol=1e-6)
    smile = r["first_key"]['key_blocks["mouthSmileRight"].value[0]']
    np.testing.assert_allclose(smile[1], va[:, ARKIT_NAMES.index("mouthSmileRight")], atol=1e-6)
    q = np.array([r["first_rig"][f'pose.bones["jaw"].rotation_quaternion[{i}]'][1] for i in range(4)]).T
    v = np.linalg.norm(q[:, 1:], axis=1)
    aa = q[:, 1:] * (2 * np.arctan2(v, q[:, 0]) / np.maximum(v, 1e-12))[:, None]   # jaw axis-angle
    np.testing.assert_allclose(aa[:, 0], 0.35 * va[:, ARKIT_NAMES.index("jawOpen")], atol=1e-5)
    np.testing.assert_allclose(aa[:, 1], 0.1 * (va[:, ARKIT_NAMES.index("jawLeft")]
                                                - va[:, ARKIT_NAMES.index("jawRight")]), atol=1e-5)
    assert r["mapping_rows"] == len(default_mapping())          # stored in the .blend for next time


def test_second_import_is_a_new_take_with_the_edited_mapping(child):
    r, va, vb = child
    assert r["second"] == ["FINISHED"]
    assert r["first_names"] == ["take_a Rig", "take_a Expressions"]
    assert r["second_names"] == ["take_b Rig", "take_b Expressions"]
    assert {"take_a Rig", "take_a Expressions", "take_b Rig", "take_b Expressions"} <= set(r["actions"])
    assert r["nla"] == [[["take_a Expressions", "take_a Expressions", 1.0]]]
    assert r["old_key"] == r["first_key"]                        # the first take is intact
    blink = r["second_key"]['key_blocks["eyeBlinkLeft"].value[0]'][1]
    np.testing.assert_allclose(blink, 0.5 * vb[:, ARKIT_NAMES.index("eyeBlinkLeft")], atol=1e-6)


def test_key_reduction_keeps_the_curve_within_tolerance(child):
    r, _, _ = child
    assert r["reduced"] == ["FINISHED"]
    assert r["reduced_keys"] < len(SMOOTH) / 3 and r["reduced_interp"] == ["LINEAR"]
    # the eyeBlinkLeft gain was edited to 0.5 before: the keyed curve is half the capture's eyeBlinkLeft
    np.testing.assert_allclose(r["reduced_eval"], 0.5 * SMOOTH[:, 0], atol=0.002 + 1e-6)


def test_bad_capture_is_refused_and_adds_nothing(child):
    r, _, _ = child
    assert "bad.csv" in r["bad"] and "without the column" in r["bad"]
    assert r["actions_after_bad"] == r["actions_before_bad"]


def test_old_mapping_table_is_converted_to_the_arkit_keys(child):
    """A .blend table targeting the old 24 expressions (blink_R, smile_L, lips_press) keys the ARKit
    shape keys and is stored back converted; an unknown target is refused and adds no action."""
    r, va, _ = child
    assert r["old_map"] == ["FINISHED"]
    for key, src in (("eyeBlinkRight", "eyeBlinkRight"), ("mouthSmileLeft", "mouthSmileLeft"),
                     ("mouthPressLeft", "mouthPressLeft"), ("mouthPressRight", "mouthPressLeft")):
        got = r["old_map_key"][f'key_blocks["{key}"].value[0]'][1]
        np.testing.assert_allclose(got, va[:, ARKIT_NAMES.index(src)], atol=1e-6)
    assert r["old_map_rows"] == [["eyeBlinkRight", "eyeBlinkRight"], ["mouthPressLeft", "mouthPressLeft"],
                                 ["mouthPressLeft", "mouthPressRight"], ["mouthSmileLeft", "mouthSmileLeft"]]
    assert "unknown target 'grin_L'" in str(r["unknown_map"]) and r["unknown_map_added"] == 0
