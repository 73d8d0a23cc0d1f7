"""Render Preview on the installed add-on (headless bpy, one child process).

The astronaut avatar is put in the scene, a known performance (HeadParams file) is keyed with
Apply Track, and previews are rendered from the source camera and from a scene camera placed where
the source camera is: frame count, watermark, PNG text, mp4 length, the jaw visibly moving, and the
scene-camera render matching the source-camera render (also after moving, turning and scaling the
rig and the camera together).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from isolated_blender import installed_script, run_isolated

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preview"))
from synthetic import astronaut_avatar, performance, same_standin, watermark_present  # noqa: E402

pytestmark = pytest.mark.blender

N_FRAMES = 4
SIZE = 96
SAME_VIEW_TOL = 2.0  # mean |difference| (0..255) between source-camera and matching scene-camera renders

SCRIPT = """
T0 = INSTALL_T0
TIMES = RESULT.setdefault("times", {})
def mark(name):
    TIMES[name] = round(time.perf_counter() - T0, 1)
mark("install")
avatar, model, rig = avatar_rig(AVATAR, "Astro")
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = 25, 1.0
mark("avatar")
RESULT["apply"] = sorted(bpy.ops.omg_avatar.apply_track(filepath=PARAMS, avatar=rig.name, scene_start=1))
RESULT["range"] = [scene.frame_start, scene.frame_end]

RESULT["source"] = sorted(bpy.ops.omg_avatar.render_preview(avatar=rig.name, frame_start=1, frame_end=N,
                          camera="SOURCE", resolution=(SIZE, SIZE), filepath=OUT1))
mark("source preview")
rep = dict(bpy.context.window_manager["omg_avatar_preview_report"])
RESULT["source_report"] = {k: rep[k] for k in ("frames", "fps", "seconds", "backend", "lod", "width", "height", "video")}
RESULT["source_pngs"] = list(rep["pngs"])
img = bpy.data.images.get(rep.get("image", ""))
RESULT["image"] = None if img is None else [img.source, img.filepath]
RESULT["clips"] = [c.name for c in bpy.data.movieclips]

# a scene camera where the source camera is: model (0, 0, d) looking along -Z, i.e. Blender (0, -d, 0)
K = np.array(list(rig["omg_camera_K"])).reshape(3, 3)
V = np.array(list(rig["omg_camera_viewmat"])).reshape(4, 4)
w, h = rig["omg_camera_size"]
cam_data = bpy.data.cameras.new("Cam")
cam_data.sensor_fit, cam_data.sensor_width = "HORIZONTAL", 36.0
cam_data.lens = K[0, 0] / w * 36.0
cam = bpy.data.objects.new("Cam", cam_data)
scene.collection.objects.link(cam)
centre = -V[:3, :3].T @ V[:3, 3]                       # camera centre, model frame
cam.location = (centre[0], -centre[2], centre[1])       # model -> Blender
cam.rotation_euler = (math.pi / 2, 0.0, 0.0)            # looks along Blender +Y = model -Z
scene.camera = cam
bpy.context.view_layer.update()
RESULT["scene"] = sorted(bpy.ops.omg_avatar.render_preview(avatar=rig.name, frame_start=1, frame_end=1,
                         camera="SCENE", resolution=(SIZE, SIZE), filepath=OUT2))
mark("scene preview")
RESULT["scene_pngs"] = list(dict(bpy.context.window_manager["omg_avatar_preview_report"])["pngs"])

# move, turn and scale the rig and the camera together: the view is unchanged
from mathutils import Matrix
M = Matrix.Translation((0.4, -1.0, 0.3)) @ Matrix.Rotation(math.radians(35), 4, "Z") @ Matrix.Scale(2.0, 4)
rig.matrix_world = M @ rig.matrix_world
cam.matrix_world = M @ cam.matrix_world
bpy.context.view_layer.update()
RESULT["moved"] = sorted(bpy.ops.omg_avatar.render_preview(avatar=rig.name, frame_start=1, frame_end=1,
                         camera="SCENE", resolution=(SIZE, SIZE), filepath=OUT3))
mark("moved preview")
RESULT["moved_pngs"] = list(dict(bpy.context.window_manager["omg_avatar_preview_report"])["pngs"])

# no camera in the scene: a clear error, nothing written
scene.camera = None
try:
    RESULT["nocam"] = sorted(bpy.ops.omg_avatar.render_preview(avatar=rig.name, camera="SCENE", filepath=OUT3 + "_x"))
except RuntimeError as exc:
    RESULT["nocam"] = str(exc)
"""


@pytest.fixture(scope="module")
def child(addon_zip, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("preview")
    avatar, model, avatar_path = astronaut_avatar(tmp)
    params, jaw, _ = performance(avatar, model, N_FRAMES, period=4.0)
    params.save(tmp / "perf.npz")  # a bare HeadParams file: Apply Track at the scene's 25 fps
    script = installed_script(addon_zip, SCRIPT, "import numpy as np\n" + same_standin(), AVATAR=str(avatar_path),
                              PARAMS=str(tmp / "perf.npz"), N=N_FRAMES, SIZE=SIZE, OUT1=str(tmp / "src"),
                              OUT2=str(tmp / "scn"), OUT3=str(tmp / "moved"))
    t0 = time.perf_counter()
    res = run_isolated(script, tmp, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    print(f"\nBlender child: {time.perf_counter() - t0:.0f} s {res.result.get('times')}")
    return res.result, tmp


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float32)


def test_preview_writes_watermarked_frames_and_video(child):
    import imageio_ffmpeg

    r, tmp = child
    assert r["install"] == ["FINISHED"] and r["apply"] == ["FINISHED"] and r["range"] == [1, N_FRAMES]
    assert r["source"] == ["FINISHED"]
    rep = r["source_report"]
    assert rep["frames"] == N_FRAMES and (rep["width"], rep["height"]) == (SIZE, SIZE) and rep["lod"] == 0
    assert rep["fps"] > 0 and rep["backend"] in ("cpu", "cuda")
    pngs = [Path(p) for p in r["source_pngs"]]
    assert [p.name for p in pngs] == [f"frame_{f:05d}.png" for f in range(1, N_FRAMES + 1)]  # scene frames
    assert sorted(p.name for p in (tmp / "src").glob("frame_*.png")) == [p.name for p in pngs]
    for p in pngs:
        im = Image.open(p)
        assert im.size == (SIZE, SIZE) and im.text.get("AI-generated") == "true"
        assert watermark_present(np.asarray(im.convert("RGB")))
    assert imageio_ffmpeg.count_frames_and_secs(rep["video"])[0] == N_FRAMES
    assert r["image"][0] == "SEQUENCE" and r["clips"]  # loaded for viewing
    # the keyed jaw opens between frames 1 and 3 (period 4): the lower face changes, the corner not
    a, b = _rgb(pngs[0]), _rgb(pngs[2])
    assert np.abs(b - a)[SIZE // 2:, SIZE // 4: 3 * SIZE // 4].mean() > 1.0
    assert np.abs(b - a)[:8, :8].max() == 0


def test_scene_camera_matches_the_source_camera(child):
    r, _ = child
    assert r["scene"] == ["FINISHED"] and r["moved"] == ["FINISHED"]
    src = _rgb(r["source_pngs"][0])
    for key in ("scene_pngs", "moved_pngs"):
        other = _rgb(r[key][0])
        diff = float(np.abs(other - src).mean())
        assert diff < SAME_VIEW_TOL, f"{key}: mean difference {diff:.2f}"
    assert "no active camera" in r["nocam"]
