"""Retarget Video / Apply Track on the installed add-on (headless bpy, one child process).

A synthetic clip rendered by our splatter from the astronaut avatar with a known jaw sine is
retargeted onto the same avatar in the scene: one key per frame on every channel, the keyed jaw
correlates with the known one, the keys read back into the tracked parameters, a cancelled job
leaves no keys, a saved track re-applies without tracking, and a real clip (when ../shared/media
is present) is retargeted with resampling to the scene's frame rate.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from isolated_blender import installed_script, run_isolated

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preview"))
from synthetic import astronaut_avatar, pearson, same_standin, synthetic_clip  # noqa: E402

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parents[2]
REAL_CLIP = ROOT.parent / "shared" / "media" / "videos" / "liveportrait_d19.mp4"  # 30 fps
JAW_R_MIN = 0.8        # Pearson r of the keyed jaw rotation vs. the rendered one
GLOBAL_HOLD_RAD = 0.06  # tracked global joint vs the photo's (as tests/preview/test_cli_retarget.py)
ROUND_TRIP_TOL = 1e-4  # keys -> HeadParams vs. the track (radians / coefficients / metres)

SCRIPT = """
from pathlib import Path
keyframes, fcurves = mod("omg_blender_addon.keyframes"), mod("omg_blender_addon.fcurves")
scene_read, jobs = mod("omg_blender_addon.scene_read"), mod("omg_blender_addon.jobs")
retarget = mod("operators.retarget")
backend_avatar, loader, motion_io = mod("backend.avatar"), mod("backend.head.loader"), mod("backend.motion")
from bpy_extras import anim_utils

avatar, model, rig = avatar_rig(AVATAR, "Astro")
head = scene_write.head_object(rig)
key = head.data.shape_keys
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = 24, 1.0

def curves(id_data):
    ad = id_data.animation_data
    if ad is None or ad.action is None:
        return []
    bag = anim_utils.action_get_channelbag_for_slot(ad.action, ad.action_slot)
    out = []
    for fc in bag.fcurves:
        co = [0.0] * (2 * len(fc.keyframe_points))
        fc.keyframe_points.foreach_get("co", co)
        out.append((fc.data_path, fc.array_index, co[0::2], co[1::2], fc.keyframe_points[0].interpolation))
    return out

# 1. cancel: the worker is stopped after it started tracking; nothing is keyed
info = scene_read.read_rig(rig)
req = retarget.RetargetRequest(path=CLIP, info=info, frame_start=0, frame_end=-1, smoothing=2.0,
                               apply=keyframes.ApplyOptions(), match_scene_fps=True, scene_fps=24.0,
                               track_out=CANCELLED_TRACK)
job = jobs.BackgroundJob(retarget.retarget_work(req))
job.start()
t0 = time.perf_counter()
while job.fraction <= 0.0 and not job.done and time.perf_counter() - t0 < 60:
    time.sleep(0.005)
RESULT["cancel_fraction"] = job.fraction
job.cancel(); job.join()
RESULT["cancel"] = {"cancelled": job.cancelled, "error": job.error, "actions": len(bpy.data.actions),
                    "rig_curves": len(curves(rig)), "key_curves": len(curves(key)),
                    "track_file": Path(CANCELLED_TRACK).exists()}

# 2. retarget the synthetic clip
t0 = time.perf_counter()
RESULT["retarget"] = sorted(bpy.ops.omg_avatar.retarget_video(filepath=CLIP, avatar=rig.name, track_path=TRACK))
RESULT["retarget_seconds"] = time.perf_counter() - t0
RESULT["report"] = {k: v for k, v in dict(bpy.context.window_manager["omg_avatar_retarget_report"]).items()
                    if isinstance(v, (int, float, str))}
RESULT["scene"] = [scene.render.fps, scene.render.fps_base, scene.frame_start, scene.frame_end]
RESULT["rig_curves"] = [(p, i, x, v, interp) for p, i, x, v, interp in curves(rig)]
RESULT["key_curves"] = [(p, i, x, v, interp) for p, i, x, v, interp in curves(key)]
RESULT["rotation_modes"] = {pb.name: pb.rotation_mode for pb in rig.pose.bones}

# 3. the keys read back as HeadParams equal the saved track (all channels were applied)
info = scene_read.read_rig(rig)
T = len(RESULT["rig_curves"][0][2])
back = fcurves.sample_params(rig, key, info, np.arange(1, T + 1, dtype=np.float64))
back = keyframes.reorder_expr(back, info.expr_names, model)
motion = motion_io.load_motion(TRACK)
E = min(motion.params.expr.shape[1], back.expr.shape[1])
RESULT["round_trip"] = {"pose": float(np.abs(back.pose - motion.params.pose).max()),
                        "transl": float(np.abs(back.transl - motion.params.transl).max()),
                        "expr": float(np.abs(back.expr[:, :E] - motion.params.expr[:, :E]).max())}

# 3b. the rig's photo pose reaches the worker; the tracked global joint is held there
RESULT["source_pose"] = None if info.source_pose is None else np.asarray(info.source_pose).tolist()
RESULT["avatar_pose"] = np.asarray(avatar.params.pose[0]).tolist()
RESULT["global_hold"] = float(np.abs(motion.params.pose[:, 0] - avatar.params.pose[0, 0]).max())

# 3c. identity: the astronaut rig was built from a photo, so step 2 fitted the clip's own identity;
# a rig built from this very clip (as a multi-view build records it) is tracked with its own identity
# (the default, Identity: Auto), and Identity: Clip overrides that
RESULT["identity_photo_rig"] = {"report": RESULT["report"].get("identity"),
                                "shape_diff": float(np.abs(motion.params.shape - info.shape).max())}
# (the loop runs last, step 8, so its takes do not change the steps between)

# 4. apply the saved track at scene frame 101, jaw only: with the clip moved away, so the apply can
# only have read the track (no tracking)
t0 = time.perf_counter()
os.rename(CLIP, CLIP + ".away")
try:
    RESULT["apply"] = sorted(bpy.ops.omg_avatar.apply_track(filepath=TRACK, avatar=rig.name, scene_start=101,
                             apply_expression=False, apply_eyes=False, apply_neck=False, apply_global=False))
finally:
    os.rename(CLIP + ".away", CLIP)
RESULT["apply_seconds"] = time.perf_counter() - t0
RESULT["after_apply"] = [(p, i, x, v) for p, i, x, v, _ in curves(rig)]
RESULT["key_after_apply"] = [(p, i, len(x)) for p, i, x, v, _ in curves(key)]
ad = rig.animation_data      # the retarget's take went to the NLA, intact; the apply is a new action
RESULT["takes"] = {"active": ad.action.name, "nla": [[s.action.name for s in t.strips] for t in ad.nla_tracks]}
first = ad.nla_tracks[0].strips[0]
bag = anim_utils.action_get_channelbag_for_slot(first.action, first.action_slot)
RESULT["first_take"] = []
for fc in bag.fcurves:
    co = [0.0] * (2 * len(fc.keyframe_points))
    fc.keyframe_points.foreach_get("co", co)
    RESULT["first_take"].append((fc.data_path, fc.array_index, co[0::2], co[1::2]))

# 5. a bad file is refused with the file's name, nothing changes
n_before = sum(len(c[2]) for c in curves(rig))
bad = Path(TRACK).with_name("bad.npz"); bad.write_bytes(b"junk")
try:  # in background mode an operator's ERROR report raises
    RESULT["bad"] = sorted(bpy.ops.omg_avatar.apply_track(filepath=str(bad), avatar=rig.name))
except RuntimeError as exc:
    RESULT["bad"] = str(exc)
RESULT["bad_unchanged"] = sum(len(c[2]) for c in curves(rig)) == n_before

# 6. a real clip, resampled from 30 fps to the scene's 25 fps
if REAL:
    scene.render.fps, scene.render.fps_base = 25, 1.0
    t0 = time.perf_counter()
    RESULT["real"] = sorted(bpy.ops.omg_avatar.retarget_video(filepath=REAL, avatar=rig.name, frame_start=0,
                            frame_end=29, scene_start=201, match_scene_fps=False))
    RESULT["real_seconds"] = time.perf_counter() - t0
    RESULT["real_report"] = {k: v for k, v in dict(bpy.context.window_manager["omg_avatar_retarget_report"]).items()
                             if isinstance(v, (int, float, str))}
    RESULT["real_scene"] = [scene.render.fps, scene.render.fps_base, scene.frame_start, scene.frame_end]
    jaw = [c for c in curves(rig) if c[0] == 'pose.bones["jaw"].rotation_quaternion'][0]
    RESULT["real_jaw_frames"] = [x for x in jaw[2] if x >= 201]

# 7. bones in Euler / axis-angle rotation modes are keyed in their own channels and read back
rig.pose.bones["jaw"].rotation_mode = "XYZ"
rig.pose.bones["neck"].rotation_mode = "AXIS_ANGLE"
RESULT["modes_apply"] = sorted(bpy.ops.omg_avatar.apply_track(filepath=TRACK, avatar=rig.name, scene_start=301,
                               apply_expression=False, apply_eyes=False, apply_global=False))
info = scene_read.read_rig(rig)
T = motion.n_frames
back = fcurves.sample_params(rig, key, info, np.arange(301, 301 + T, dtype=np.float64))
RESULT["modes_error"] = float(np.abs(back.pose[:, 1:3] - motion.params.pose[:, 1:3]).max())
RESULT["modes_paths"] = sorted({c[0] for c in curves(rig) if any(x >= 301 for x in c[2])})

# 8. (step 3c) the rig built from this clip: Identity Auto keeps the rig's identity, Clip fits the clip's
info = scene_read.read_rig(rig)
rig["omg_built_from"] = Path(CLIP).name
RESULT["render_pass_setting"] = bool(scene.omg_avatar_animation.render_pass)   # the panel's, on by default
for choice, out, render_pass in (("AUTO", OWN_TRACK, True), ("CLIP", CLIP_TRACK, True),
                                 ("AUTO_PLAIN", OWN_TRACK + ".plain.npz", False)):
    res = sorted(bpy.ops.omg_avatar.retarget_video(filepath=CLIP, avatar=rig.name, track_path=out,
                                                   identity=choice.split("_")[0], new_take=True,
                                                   render_pass=render_pass))
    m = motion_io.load_motion(out)
    RESULT["identity_" + choice] = {
        "res": res, "report": bpy.context.window_manager["omg_avatar_retarget_report"]["identity"],
        "render_pass": bool(bpy.context.window_manager["omg_avatar_retarget_report"]["render_pass"]),
        "shape_diff": float(np.abs(m.params.shape - info.shape).max()),
        "jaw": m.params.pose[:, 2, 0].tolist()}
del rig["omg_built_from"]
"""


@pytest.fixture(scope="module")
def child(addon_zip, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retarget")
    _, _, avatar_path = astronaut_avatar(tmp)
    clip = synthetic_clip(tmp)
    real = str(REAL_CLIP) if REAL_CLIP.is_file() else ""
    script = installed_script(addon_zip, SCRIPT, "import numpy as np\n" + same_standin(), AVATAR=str(avatar_path),
                              CLIP=str(clip.path), TRACK=str(tmp / "track.npz"),
                              CANCELLED_TRACK=str(tmp / "cancelled_track.npz"), REAL=real,
                              OWN_TRACK=str(tmp / "own_track.npz"), CLIP_TRACK=str(tmp / "clip_track.npz"))
    t0 = time.perf_counter()
    res = run_isolated(script, tmp, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "Traceback" not in res.stderr, res.stderr[-4000:]
    print(f"\nBlender child: {time.perf_counter() - t0:.0f} s")
    return res.result, clip


def test_cancel_leaves_no_keyframes(child):
    r, _ = child
    assert r["install"] == ["FINISHED"]
    assert r["cancel_fraction"] > 0.0  # it was cancelled while running
    assert r["cancel"] == {"cancelled": True, "error": None, "actions": 0, "rig_curves": 0, "key_curves": 0,
                           "track_file": False}


def test_synthetic_clip_keys_every_frame_and_recovers_the_jaw(child):
    r, clip = child
    T = clip.params.n_frames
    assert r["retarget"] == ["FINISHED"]
    rig, keys = r["rig_curves"], r["key_curves"]
    assert len(rig) == 5 * 4 + 3  # 5 bones x quaternion + the global bone's location
    assert len(keys) == r["report"]["curves"] - len(rig) and len(keys) >= 20  # one per expression key
    for path, idx, x, v, interp in rig + keys:
        assert x == [float(f) for f in range(1, T + 1)], path  # keyframe count == frame count
        assert interp == "BEZIER" and all(math.isfinite(y) for y in v)
    assert r["scene"] == [25, 1.0, 1, T]  # frame rate and range matched to the clip
    assert set(r["rotation_modes"].values()) == {"QUATERNION"}
    q = np.array([v for p, i, x, v, _ in rig if p == 'pose.bones["jaw"].rotation_quaternion']).T  # (T, 4)
    jaw = 2.0 * np.arctan2(q[:, 1], q[:, 0])  # rotation about the bone's x = the model's x axis
    rr = pearson(jaw, clip.jaw)
    assert rr > JAW_R_MIN, f"jaw r = {rr:.3f}"
    print(f"synthetic: {T} frames in {r['retarget_seconds']:.1f} s "
          f"({r['report']['throughput_fps']:.1f} frames/s incl. tracking), jaw r = {rr:.3f}")


def test_keys_read_back_as_the_track(child):
    r, _ = child
    assert max(r["round_trip"].values()) < ROUND_TRIP_TOL, r["round_trip"]


def test_retarget_holds_global_at_the_rigs_photo_pose(child):
    """Retarget Video tracks for the rig as `retarget` and the evaluation do (face.track.avatar_hold):
    the rig's recorded photo pose reaches the worker, and global stays at the photo's rotation."""
    res, _ = child
    np.testing.assert_allclose(res["source_pose"], res["avatar_pose"], atol=1e-6)
    assert res["global_hold"] < GLOBAL_HOLD_RAD, res["global_hold"]


def test_retarget_keeps_the_identity_of_a_rig_built_from_the_clip(child):
    """Retarget Video fits only pose, expression and camera with the rig's identity when the rig was
    built from the clip it is driven by (Identity: Auto; the rig records its clip as omg_built_from),
    and the clip's own identity for a rig built from a photo or with Identity: Clip. With the kept
    identity the tracker also matches the rig's render (the scene's Gaussians rendered and read) and
    the known jaw is still recovered."""
    r, clip = child
    photo, own, other = r["identity_photo_rig"], r["identity_AUTO"], r["identity_CLIP"]
    assert photo["report"] == "clip" and photo["shape_diff"] > 1e-3, photo
    assert own["res"] == ["FINISHED"] and own["report"] == "avatar", own
    # with its identity the rig's own Gaussians were rendered and read (the render pass, by default);
    # with the clip's there is nothing to compare the render with
    assert own["render_pass"] and not other["render_pass"], (own, other)
    plain = r["identity_AUTO_PLAIN"]           # switched off: the identity kept, no render
    assert r["render_pass_setting"] and plain["report"] == "avatar" and not plain["render_pass"], plain
    assert own["shape_diff"] == 0.0, own  # the rig's identity exactly (float32 both ways)
    assert other["res"] == ["FINISHED"] and other["report"] == "clip" and other["shape_diff"] > 1e-3, other
    rr = pearson(np.array(own["jaw"]), clip.jaw)
    assert rr > JAW_R_MIN, f"jaw r = {rr:.3f} with the rig's identity"
    print(f"identity kept: jaw r = {rr:.3f}; clip's own identity differs by {photo['shape_diff']:.3f}")


def test_apply_saved_track(child):
    r, clip = child
    T = clip.params.n_frames
    assert r["apply"] == ["FINISHED"]
    after = {(p, i): (x, v) for p, i, x, v in r["after_apply"]}
    before = {(p, i): (x, v) for p, i, x, v, _ in r["rig_curves"]}
    # a new take: the apply's own action holds only the jaw, keyed at 101.. with the track's values
    assert r["takes"] == {"active": "track Rig", "nla": [["synthetic Rig"]]}, r["takes"]
    assert {p for p, _ in after} == {'pose.bones["jaw"].rotation_quaternion'}
    for (p, i), (x, v) in after.items():
        assert x == [float(f) for f in range(101, 101 + T)]
        np.testing.assert_allclose(v, before[(p, i)][1], atol=1e-6)  # same values, no re-tracking
    # the first take (the retarget) is intact on the NLA
    assert {(p, i): (x, v) for p, i, x, v in r["first_take"]} == before
    assert all(n == T for _, _, n in r["key_after_apply"])  # expressions not applied: key's take as it was
    assert "bad.npz" in r["bad"] and r["bad_unchanged"]


def test_real_clip_resampled_to_scene_fps(child):
    r, _ = child
    if not REAL_CLIP.is_file():
        pytest.skip("../shared/media is not present")
    assert r["real"] == ["FINISHED"]
    n = math.floor(29 * 25 / 30) + 1  # 30 frames at 30 fps span 29/30 s -> 25 keys at 25 fps
    assert r["real_jaw_frames"] == [float(f) for f in range(201, 201 + n)]
    assert r["real_scene"] == [25, 1.0, 201, 200 + n]  # the scene's rate kept
    assert r["real_report"]["source_frames"] == 30 and r["real_report"]["frames"] == n
    print(f"real clip: 30 frames in {r['real_seconds']:.1f} s "
          f"({r['real_report']['throughput_fps']:.1f} frames/s incl. tracking)")


def test_euler_and_axis_angle_bones(child):
    r, _ = child
    assert r["modes_apply"] == ["FINISHED"]
    assert r["modes_paths"] == ['pose.bones["jaw"].rotation_euler', 'pose.bones["neck"].rotation_axis_angle']
    assert r["modes_error"] < ROUND_TRIP_TOL
