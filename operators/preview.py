"""Render Preview: the avatar's animation splatted by the backend into watermarked PNGs + an mp4.

UI thread (prepare): the rig's animation is sampled into HeadParams (fcurves.sample_params), the
shown LOD's Gaussians are read from the scene (scene_read.read_lod) and the camera is the avatar's
source camera or the scene camera per frame. Worker: the scene's Gaussians become a backend
GaussianAvatar, backend.preview.render_preview poses, splats (gsplat on CUDA when present, the CPU
splatter otherwise), writes the files and measures the achieved fps. Apply: the PNG sequence and
the movie clip are loaded and shown in an Image Editor.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
from bpy.props import EnumProperty, IntProperty, IntVectorProperty, StringProperty

from ..omg_blender_addon import jobs
from ..omg_blender_addon.addon_id import addon_preferences

REPORT_KEY = "omg_avatar_preview_report"
VIDEO_NAME = "preview.mp4"


@dataclass
class PreviewRequest:
    """Plain data for the worker."""

    info: object          # scene_read.RigInfo
    lod: object           # scene_read.SceneLOD
    params: object        # HeadParams, expression columns in info.expr_names order
    frames: list[int]
    cameras: object       # backend Camera | list[Camera] | None (source camera)
    width: int
    height: int
    out_dir: str
    fps: float
    backend: str


def preview_work(req: PreviewRequest):
    def work(progress):
        from ..backend.head.loader import load_head_model
        from ..backend.preview import PreviewOptions, render_preview
        from ..omg_blender_addon.keyframes import reorder_expr
        from ..omg_blender_addon.scene_read import gaussian_avatar

        model = load_head_model(req.info.head_model_path)
        avatar = gaussian_avatar(req.info, req.lod, model)
        params = reorder_expr(req.params, req.info.expr_names, model)
        opts = PreviewOptions(lod=req.lod.level, width=req.width, height=req.height, backend=req.backend,
                              camera=req.cameras)
        return render_preview(avatar, params, req.out_dir, opts, fps=req.fps,
                              video=os.path.join(req.out_dir, VIDEO_NAME), model=model, progress=progress,
                              first_number=req.frames[0])

    return work


_SESSION_DIR: list[str] = []  # this Blender session's private preview folder (made on first use)


def default_output() -> str:
    """//omg_preview next to a saved .blend, else a private folder for this user and session in
    the system temp dir (never a fixed shared path another user or session could own or read)."""
    if bpy.data.filepath:
        return bpy.path.abspath("//omg_preview")
    if not _SESSION_DIR or not os.path.isdir(_SESSION_DIR[0]):
        import getpass

        try:
            user = "".join(c for c in getpass.getuser() if c.isalnum())[:32]
        except (KeyError, OSError):  # no user name (some containers)
            user = "user"
        _SESSION_DIR[:] = [tempfile.mkdtemp(prefix=f"omg_preview_{user}_")]  # mode 0700
    return _SESSION_DIR[0]


class OMG_AVATAR_OT_render_preview(jobs.JobOperator, bpy.types.Operator):
    """Render the avatar's animation with the Gaussian splatter (watermarked PNG frames + mp4)"""

    bl_idname = "omg_avatar.render_preview"
    bl_label = "Render Preview"
    bl_options = {"REGISTER"}
    job_title = "Render preview"

    avatar: StringProperty(name="Avatar", default="",
                           description="The avatar's name, or its rig / head / LOD object; default: the active object's")
    frame_start: IntProperty(name="Start", default=-1, description="First scene frame (-1: the scene's start)")
    frame_end: IntProperty(name="End", default=-1, description="Last scene frame (-1: the scene's end)")
    camera: EnumProperty(name="Camera", default="SOURCE", items=(
        ("SOURCE", "Source", "The camera the avatar's photo was taken with"),
        ("SCENE", "Scene", "The scene's active camera")))
    resolution: IntVectorProperty(name="Resolution", size=2, default=(512, 512), min=80, max=4096,
                                  description="Frame width and height in pixels")
    lod: IntProperty(name="LOD", default=-1, min=-1, max=2, description="Level of detail (-1: the one shown)")
    filepath: StringProperty(name="Output", subtype="DIR_PATH", default="",
                             description="Folder for frame_#####.png and preview.mp4 (empty: //omg_preview)")

    def prepare(self, context):
        from ..omg_blender_addon.fcurves import sample_params, scene_fps
        from ..omg_blender_addon.scene_read import SceneError, find_rig, read_lod, read_rig, scene_cameras

        scene = context.scene
        start = scene.frame_start if self.frame_start < 0 else self.frame_start
        end = scene.frame_end if self.frame_end < 0 else self.frame_end
        if end < start:
            self.report({"ERROR"}, f"empty frame range {start}..{end}")
            return None
        w, h = (int(v) for v in self.resolution)
        try:
            rig = find_rig(self.avatar, context)
            info = read_rig(rig)
            level = info.lod if self.lod < 0 else self.lod
            lod = read_lod(rig, level)
            frames = list(range(start, end + 1))
            key = bpy.data.shape_keys.get(info.key_name) if info.key_name else None
            params = sample_params(rig, key, info, np.asarray(frames, np.float64))
            cameras = scene_cameras(context, rig, frames, w, h) if self.camera == "SCENE" else None
        except SceneError as exc:
            self.report({"ERROR"}, str(exc))
            return None
        if info.head_model_refused:
            from ..omg_blender_addon.head_model_trust import refused_message

            self.report({"WARNING"}, refused_message(info.head_model_refused))
        out = bpy.path.abspath(self.filepath) if self.filepath else default_output()
        prefs = addon_preferences(context)
        self._out, self._first, self._n = out, start, len(frames)
        req = PreviewRequest(info=info, lod=lod, params=params, frames=frames, cameras=cameras, width=w,
                             height=h, out_dir=out, fps=scene_fps(scene),
                             backend=prefs.device if prefs is not None else "auto")
        if prefs is not None and prefs.checkpoint_path:
            # the learned refiner needs the avatar's learned feature channels, which the scene's
            # Gaussian objects do not hold (python -m backend render uses it on .omgavatar files)
            self.report({"WARNING"}, "OMG checkpoint set: the refiner is not applied to scene avatars "
                                     "(they hold no learned feature channels); rendering splatted RGB")
        return preview_work(req)

    def apply(self, context, result) -> None:
        report = {**result.figures(), "pngs": [str(p) for p in result.pngs], "folder": self._out,
                  "first_frame": self._first}
        context.window_manager[REPORT_KEY] = report
        image = _show(context, result, self._first)
        if image is not None:
            report["image"] = image
            context.window_manager[REPORT_KEY] = report
        self.report({"INFO"}, f"preview: {result.n_frames} frames at {result.size[0]}x{result.size[1]}, LOD "
                              f"{result.lod} ({result.backend}) in {result.seconds:.1f} s = {result.fps:.2f} fps "
                              f"-> {self._out}")


def _show(context, result, first_frame: int, name: str = "OMG Preview") -> str | None:
    """Load the PNG sequence as an image and the mp4 as a movie clip; show the image in an Image
    Editor (an open one, else a new window) when Blender has a UI. Returns the image's name."""
    if not result.pngs:
        return None
    old = bpy.data.images.get(name)
    if old is not None:
        bpy.data.images.remove(old)
    img = bpy.data.images.load(str(result.pngs[0]), check_existing=False)
    img.name = name
    img.source = "SEQUENCE" if len(result.pngs) > 1 else "FILE"
    if result.video is not None and Path(result.video).is_file():
        clip_old = bpy.data.movieclips.get(Path(result.video).name)
        if clip_old is not None:
            bpy.data.movieclips.remove(clip_old)
        bpy.data.movieclips.load(str(result.video))
    screen = getattr(context, "screen", None)
    if bpy.app.background or screen is None or context.window is None:  # headless (scripts, tests): the datablocks are loaded, nothing to show
        return img.name
    try:
        area = next((a for a in screen.areas if a.type == "IMAGE_EDITOR"), None)
        if area is None:
            bpy.ops.wm.window_new()
            area = context.window_manager.windows[-1].screen.areas[0]
            area.type = "IMAGE_EDITOR"
        space = area.spaces.active
        space.image = img
        user = space.image_user
        user.frame_duration = len(result.pngs)
        user.frame_start = first_frame
        user.frame_offset = first_frame - 1
        user.use_auto_refresh = True
    except Exception as exc:  # noqa: BLE001 - showing is a convenience; the files are written
        print(f"OMG Avatar: could not open an Image Editor ({exc})")
    return img.name


CLASSES = (OMG_AVATAR_OT_render_preview,)
