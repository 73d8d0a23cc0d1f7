"""The add-on's splat renderer on the installed add-on (headless bpy, one child process).

The astronaut avatar is put in the scene as "Holdout". Offscreen splat renders (GPUOffScreen on
Mesa llvmpipe) are compared with the backend splatter's renders of the same avatar, pose and camera:
the source camera, +/-30 degrees of yaw, and a frame with the jaw keyed open (which must change the
mouth region); the backend poses like its previews (positions and rotations, TorchPoser). Also: two overlapping splats swap order when the view flips (on the GPU), Render
Splats writes watermarked frames, every operator that takes an avatar accepts its build name and
names unknown ones clearly, and the draw handler goes away when the display is turned off and when
the add-on is disabled.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from isolated_blender import run_isolated

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preview"))
from synthetic import astronaut_avatar, performance, same_standin, watermark_present  # noqa: E402

pytestmark = pytest.mark.blender

SIZE = 192
MIN_PSNR = 35.0   # dB, offscreen splats vs the backend splatter (issue 18)
JAW = 0.3         # rad, the keyed jaw opening
YAWS = (-30.0, 30.0)

SCRIPT = """
import importlib, math, sys
res = bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default", enable_on_install=True)
RESULT["install"] = sorted(res)
pkg = "bl_ext.user_default.omg_avatar"
mod = lambda name: importlib.import_module(pkg + "." + name)
scene_write, scene_data = mod("omg_blender_addon.scene_write"), mod("omg_blender_addon.scene_data")
splat_draw, splat_data = mod("omg_blender_addon.splat_draw"), mod("omg_blender_addon.splat_data")
splat_viewport = mod("omg_blender_addon.splat_viewport")
axes = mod("omg_blender_addon.axes")
Camera = mod("backend.render.camera").Camera
avatar = mod("backend.avatar").load_avatar(AVATAR)
model = mod("backend.head.loader").load_head_model(None)
for o in list(bpy.data.objects):  # the startup scene's cube would hide the avatar (it occludes splats)
    bpy.data.objects.remove(o)
rig = scene_write.create_avatar(bpy.context, scene_data.scene_data(avatar, model, "Holdout"))
scene = bpy.context.scene
scene.frame_set(1)
C4 = np.eye(4); C4[:3, :3] = axes.MODEL_TO_BLENDER

def render(cam):
    view = splat_draw.SplatView.from_camera(Camera(np.array(cam[0]), np.array(cam[1]), SIZE, SIZE), C4)
    data = mod("omg_blender_addon.splat_scene").scene_splats(bpy.context)
    return splat_draw.render_offscreen(data, view)

# the source camera and the yawed cameras (backend convention, model frame)
for tag, cam in CAMERAS.items():
    np.save(OUT + f"/splat_{tag}.npy", render(cam))
# the jaw keyed open at frame 5 (rest at frame 1)
jaw = rig.pose.bones["jaw"]
jaw.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
jaw.keyframe_insert("rotation_quaternion", frame=1)
jaw.rotation_quaternion = tuple(mod("backend.rotations").axis_angle_to_quat(np.array([JAW, 0.0, 0.0])))
jaw.keyframe_insert("rotation_quaternion", frame=5)
scene.frame_set(5)
np.save(OUT + "/splat_jaw.npy", render(CAMERAS["source"]))
scene.frame_set(1)
np.save(OUT + "/splat_rest_again.npy", render(CAMERAS["source"]))

# sorting on the GPU: red splat at z = +0.05 (model +Z: towards the source camera), blue at -0.05
q = np.zeros((2, 4), np.float32); q[:, 0] = 1.0
one = lambda z, rgb: {"f_dc_0": np.float32([(rgb[0] - 0.5) / 0.28209479177387814]),
                      "f_dc_1": np.float32([(rgb[1] - 0.5) / 0.28209479177387814]),
                      "f_dc_2": np.float32([(rgb[2] - 0.5) / 0.28209479177387814]),
                      "opacity": np.float32([4.0]), **{f"scale_{i}": np.float32([np.log(0.02)]) for i in range(3)},
                      **{f"rot_{i}": np.float32([q[0, i]]) for i in range(4)}}
pair = []
for z, rgb in ((0.05, (1.0, 0.0, 0.0)), (-0.05, (0.0, 0.0, 1.0))):
    rest = splat_data.rest_splats(one(z, rgb))
    pair.append(splat_data.posed_splats(rest, axes.points_to_blender(np.float32([[0.0, 0.0, z]])), np.eye(3, dtype=np.float32)[None]))
pair = splat_data.SplatData.concat(pair)
front = Camera.look_at(eye=(0, 0, 1.0), target=(0, 0, 0), width=96, height=96)
back = Camera.look_at(eye=(0, 0, -1.0), target=(0, 0, 0), width=96, height=96)
RESULT["pair_front"] = splat_draw.render_offscreen(pair, splat_draw.SplatView.from_camera(front, C4))[48, 48].tolist()
RESULT["pair_back"] = splat_draw.render_offscreen(pair, splat_draw.SplatView.from_camera(back, C4))[48, 48].tolist()

# Render Splats through a scene camera at the source camera; a cube in front of the face hides it
cam_obj = scene_write.add_source_camera(bpy.context, rig)
scene.camera = cam_obj
scene.render.resolution_x = scene.render.resolution_y = SIZE
RESULT["render_splats"] = sorted(bpy.ops.omg_avatar.render_splats(avatar="Holdout", filepath=OUT + "/op",
                                                                  frame_start=1, frame_end=2))
rep = dict(bpy.context.window_manager["omg_avatar_splats_report"])
RESULT["splats_report"] = {k: rep[k] for k in ("frames", "width", "height", "pngs", "video", "splats")}
RESULT["splats_image"] = rep.get("image")
RESULT["splats_last"] = dict(rep["last_frame_stages"])
bpy.ops.mesh.primitive_cube_add(size=0.02, location=tuple(axes.points_to_blender(np.float32([[0.0, 0.0, 0.12]]))[0]))
RESULT["occluded"] = sorted(bpy.ops.omg_avatar.render_splats(filepath=OUT + "/occ", frame_start=1, frame_end=1, video=False))
bpy.data.objects.remove(bpy.context.object)

# every operator that takes an avatar: by build name, and an unknown name
def call(op, **kw):
    try:
        return sorted(op(**kw))
    except RuntimeError as exc:
        return str(exc).strip().splitlines()[-1]
ops = bpy.ops.omg_avatar
named = {
    "set_lod": call(ops.set_lod, lod=0, avatar="Holdout"),
    "set_lod_head": call(ops.set_lod, lod=0, avatar="Holdout Head"),
    "export_ply": call(ops.export_ply, object_name="Holdout", filepath=OUT + "/holdout.ply"),
    "apply_track": call(ops.apply_track, filepath=PARAMS, avatar="Holdout", scene_start=1),
    "render_preview": call(ops.render_preview, avatar="Holdout", frame_start=1, frame_end=1,
                           resolution=(96, 96), filepath=OUT + "/preview"),
    "retarget_video": call(ops.retarget_video, filepath=PARAMS, avatar="Holdout"),
    "render_splats": call(ops.render_splats, avatar="Holdout LOD0", filepath=OUT + "/op2", video=False),
}
unknown = {
    "set_lod": call(ops.set_lod, lod=0, avatar="Nobody"),
    "export_ply": call(ops.export_ply, object_name="Nobody", filepath=OUT + "/nobody.ply"),
    "apply_track": call(ops.apply_track, filepath=PARAMS, avatar="Nobody"),
    "render_preview": call(ops.render_preview, avatar="Nobody", filepath=OUT + "/nobody"),
    "retarget_video": call(ops.retarget_video, filepath=PARAMS, avatar="Nobody"),
    "render_splats": call(ops.render_splats, avatar="Nobody", filepath=OUT + "/nobody2"),
}
RESULT["named"], RESULT["unknown"] = named, unknown
RESULT["nobody_files"] = [p for p in ("/nobody.ply", "/nobody", "/nobody2") if os.path.exists(OUT + p)]

# the draw handler: on, off, on again, then the add-on disabled
s = scene.omg_avatar
mods = [o.modifiers.get("OMG Splats") for o in scene_write.lod_objects(rig).values()]
s.show_splats = True
h1 = splat_viewport._HANDLE
RESULT["on"] = [splat_viewport.is_enabled(), all(not m.show_viewport for m in mods)]
s.show_splats = False
def removed(h):
    try:
        bpy.types.SpaceView3D.draw_handler_remove(h, "WINDOW")
        return False
    except ValueError:
        return True
RESULT["off"] = [splat_viewport.is_enabled(), removed(h1), all(m.show_viewport for m in mods)]
s.show_splats = True
h2 = splat_viewport._HANDLE
ours = lambda: [f.__module__ for hs in (bpy.app.handlers.depsgraph_update_post, bpy.app.handlers.frame_change_post,
                bpy.app.handlers.load_post) for f in hs if getattr(f, "__module__", "").startswith(pkg)]
RESULT["handlers_on"] = ours()
bpy.ops.preferences.addon_disable(module=pkg)
RESULT["disabled"] = [splat_viewport._HANDLE is None, removed(h2), ours(), all(m.show_viewport for m in mods)]
"""


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def _u8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0, 1) * 255.0).round()


@pytest.fixture(scope="module")
def child(addon_zip, tmp_path_factory):
    import torch

    from backend.avatar.pose_torch import TorchPoser
    from backend.head.params import HeadParams
    from backend.render.splat import splat

    tmp = tmp_path_factory.mktemp("splats")
    avatar, model, avatar_path = astronaut_avatar(tmp)
    params, _, _ = performance(avatar, model, 2, period=4.0)
    params.save(tmp / "perf.npz")
    src = avatar.camera.resized(SIZE, SIZE)
    pivot = avatar.rest_set(0).means.mean(0)
    cams = {"source": src, **{f"yaw{int(y)}": src.orbit_yaw(y, pivot=pivot) for y in YAWS}}
    cameras = {k: (c.K.tolist(), c.viewmat.tolist()) for k, c in cams.items()}
    head = (f"ZIP = {str(addon_zip)!r}\nAVATAR = {str(avatar_path)!r}\nPARAMS = {str(tmp / 'perf.npz')!r}\n"
            f"OUT = {str(tmp)!r}\nSIZE = {SIZE}\nJAW = {JAW}\nCAMERAS = {cameras!r}\nimport numpy as np\n"
            + same_standin())
    t0 = time.perf_counter()
    res = run_isolated(head + SCRIPT + "\nemit()\n", tmp, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    print(f"\nBlender child: {time.perf_counter() - t0:.0f} s")
    # the backend's renders of the same avatar, poses and cameras, posed like its previews
    # (TorchPoser: positions and Gaussian rotations)
    rest = avatar.rest_set(0)
    poser = TorchPoser(avatar, model, 0)
    zero = HeadParams.zeros(model)
    posed = HeadParams.zeros(model)
    posed.pose[0, 2, 0] = JAW
    refs = {tag: (zero, cam) for tag, cam in cams.items()}
    refs["jaw"] = (posed, src)
    white = np.ones(3, np.float32)
    images = {}
    for tag, (params, cam) in refs.items():
        with torch.no_grad():
            p = poser.pose_params(params)
            r = splat(p.means[0], p.quats[0], rest.scales, rest.opacities, rest.colors, cam, background=white,
                      backend="cpu")
        images[tag] = r.image[0].permute(1, 2, 0).numpy()
    return res.result, tmp, images


@pytest.mark.parametrize("tag", ["source", "yaw-30", "yaw30", "jaw"])
def test_offscreen_splats_match_the_backend_splatter(child, tag):
    r, tmp, ref = child
    got = np.load(tmp / f"splat_{tag}.npy")
    assert got.shape == (SIZE, SIZE, 4)
    p = _psnr(_u8(got[..., :3]), _u8(ref[tag]))
    print(f"{tag}: PSNR {p:.1f} dB")
    assert p >= MIN_PSNR


def test_display_follows_the_rig_in_the_mouth_region(child):
    r, tmp, ref = child
    rest, jaw = np.load(tmp / "splat_source.npy")[..., :3], np.load(tmp / "splat_jaw.npy")[..., :3]
    again = np.load(tmp / "splat_rest_again.npy")[..., :3]
    np.testing.assert_array_equal(rest, again)  # back at frame 1: the rest render again
    diff = np.abs(jaw - rest).mean(-1)
    moved = np.argwhere(diff > 0.1)
    assert len(moved) > 50
    # the change is in the lower face (the mouth and chin), not in the eyes or the hair
    assert moved[:, 0].min() > SIZE * 0.45
    # and it is the backend's posed render
    assert _psnr(_u8(jaw), _u8(ref["jaw"])) >= MIN_PSNR
    assert _psnr(_u8(jaw), _u8(ref["source"])) < MIN_PSNR - 5


def test_overlapping_splats_swap_order_when_the_view_flips(child):
    r = child[0]
    front, back = np.array(r["pair_front"]), np.array(r["pair_back"])
    assert front[0] > 0.9 and front[2] < 0.1   # red in front seen from +z
    assert back[2] > 0.9 and back[0] < 0.1     # blue in front seen from -z


def test_render_splats_writes_watermarked_frames(child):
    r, tmp, ref = child
    assert r["install"] == ["FINISHED"] and r["render_splats"] == ["FINISHED"]
    rep = r["splats_report"]
    assert rep["frames"] == 2 and rep["width"] == SIZE and rep["height"] == SIZE
    assert [Path(p).name for p in rep["pngs"]] == ["frame_00001.png", "frame_00002.png"]
    assert rep["video"] and Path(rep["video"]).stat().st_size > 0
    assert r["splats_image"] == "OMG Splats"
    png = Image.open(rep["pngs"][0])
    assert png.text.get("AI-generated") == "true"
    rgb = np.asarray(png.convert("RGB")).astype(np.float32)
    assert watermark_present(rgb.astype(np.uint8))
    # away from the watermark the file is the source-camera render (same camera, rounded)
    body = slice(0, SIZE - 40)
    assert _psnr(rgb[body], _u8(ref["source"])[body]) >= MIN_PSNR
    # a cube in front of the face hides the splats behind it (the background shows)
    assert r["occluded"] == ["FINISHED"]
    occ = np.asarray(Image.open(tmp / "occ" / "frame_00001.png").convert("RGB")).astype(np.float32)
    centre = (slice(SIZE // 2 - 4, SIZE // 2 + 4),) * 2
    assert rgb[centre].mean() < 200 and occ[centre].mean() > 250


def test_operators_accept_the_avatar_name_and_name_unknown_ones(child):
    r = child[0]
    named, unknown = r["named"], r["unknown"]
    for op in ("set_lod", "set_lod_head", "export_ply", "apply_track", "render_preview", "render_splats"):
        assert named[op] == ["FINISHED"], (op, named[op])
    # the name resolves; what stops it is the file, which is not a video (named in the message)
    assert "perf.npz" in named["retarget_video"] and "no OMG avatar" not in named["retarget_video"]
    for op, msg in unknown.items():
        assert "no OMG avatar named 'Nobody'" in msg and "Holdout" in msg, (op, msg)
    assert r["nobody_files"] == []


def test_draw_handler_goes_away_when_off_and_when_the_addon_is_disabled(child):
    r = child[0]
    assert r["on"] == [True, True]                # handler added, ellipsoids hidden in the viewport
    assert r["off"] == [False, True, True]       # handler removed (removing it again fails), ellipsoids back
    assert len(r["handlers_on"]) == 3             # depsgraph, frame change, load_post
    assert r["disabled"] == [True, True, [], True]
