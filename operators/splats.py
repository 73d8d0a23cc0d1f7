"""Render Splats: the scene camera's view of the avatars, drawn offscreen by the add-on's splat
renderer (the viewport display's renderer), written as watermarked PNGs (+ an mp4 for a range).
``renderer="ENGINE"`` renders with the scene's engine (EEVEE or Cycles: the Geometry Nodes display,
the whole scene) instead, in splatter colours (the engine blends display values like the backend
splatter; other objects look darker) or linear colours (the Standard view transform's look); see
omg_blender_addon.display_render.

GPU drawing must run on Blender's main thread, so from the UI the operator is modal: one frame per
timer tick, the status bar shows progress and Esc cancels (the frames written so far are removed).
From scripts (``bpy.ops.omg_avatar.render_splats(...)``) it runs synchronously.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatVectorProperty, IntProperty, IntVectorProperty, StringProperty

REPORT_KEY = "omg_avatar_splats_report"
VIDEO_NAME = "splats.mp4"
ENGINES = ("BLENDER_EEVEE", "BLENDER_EEVEE_NEXT", "CYCLES")  # engines that run the splat material


def default_output() -> str:
    """//omg_splats next to a saved .blend, else a folder in the system temp dir."""
    if bpy.data.filepath:
        return bpy.path.abspath("//omg_splats")
    return os.path.join(tempfile.gettempdir(), "omg_splats")


def render_frame(context, width: int, height: int, background, objects=None):
    """(H, W, 4) float32 offscreen splat render of the scene camera at the current frame, with
    the scene's visible meshes as occluders; plus {stage: seconds}."""
    import numpy as np

    from ..omg_blender_addon.scene_read import SceneError
    from ..omg_blender_addon.splat_draw import SplatView, occluder_triangles, render_offscreen
    from ..omg_blender_addon.splat_scene import scene_splats, visible_splat_objects

    cam = context.scene.camera
    if cam is None or cam.type != "CAMERA":
        raise SceneError("the scene has no active camera")
    t0 = time.perf_counter()
    objs = visible_splat_objects(context) if objects is None else objects
    data = scene_splats(context, objs)
    view = SplatView.from_camera_object(cam, width, height)
    occ = occluder_triangles(context, exclude={o.name for o in objs})
    t1 = time.perf_counter()
    img = render_offscreen(data, view, background, occ if len(occ) else None)
    return img, {"pose": t1 - t0, "render": time.perf_counter() - t1, "splats": float(len(data)),
                 "occluder_triangles": float(len(occ)), "alpha_mean": float(np.mean(img[..., 3]))}


class OMG_AVATAR_OT_render_splats(bpy.types.Operator):
    """Render the scene camera's view of the avatars with the splat renderer (watermarked PNGs + mp4)"""

    bl_idname = "omg_avatar.render_splats"
    bl_label = "Render Splats"
    bl_options = {"REGISTER"}

    avatar: StringProperty(name="Avatar", default="",
                           description="Render only this avatar (its name, or its rig / head / LOD object); "
                                       "empty: every visible Gaussian object")
    filepath: StringProperty(name="Output", subtype="DIR_PATH", default="",
                             description="Folder for frame_#####.png and splats.mp4 (empty: //omg_splats)")
    frame_start: IntProperty(name="Start", default=-1, description="First scene frame (-1: the current frame)")
    frame_end: IntProperty(name="End", default=-1, description="Last scene frame (-1: the same as Start)")
    resolution: IntVectorProperty(name="Resolution", size=2, default=(0, 0), min=0, max=8192,
                                  description="Width and height in pixels (0: the scene's render resolution)")
    background: FloatVectorProperty(name="Background", size=3, subtype="COLOR", default=(1.0, 1.0, 1.0),
                                    min=0.0, max=1.0, description="Colour behind the splats (display values)")
    video: BoolProperty(name="Video", default=True, description="Also write splats.mp4 when rendering several frames")
    show: BoolProperty(name="Show", default=True, description="Load the frames into an Image Editor")
    renderer: EnumProperty(
        name="Renderer", default="SPLATS",
        items=(("SPLATS", "Splat Renderer", "The add-on's splat renderer (the viewport display's): the avatars only"),
               ("ENGINE", "Scene Engine", "The scene's render engine (EEVEE or Cycles) through the Geometry Nodes "
                                          "display: the whole scene, minutes a frame on a CPU")))
    colors: EnumProperty(
        name="Colours", default="SPLATTER",
        items=(("SPLATTER", "Splatter", "Scene Engine: blend the Gaussians' display colours as the backend "
                                        "splatter does (other objects look darker, as under the Raw view transform)"),
               ("LINEAR", "Linear", "Scene Engine: blend in linear light, written with the Standard view "
                                    "transform's sRGB curve (the look of a plain render)")))

    # -- set-up shared by execute and invoke --------------------------------------------------------
    def _start(self, context) -> bool:
        from ..backend.errors import OMGError
        from ..backend.preview.output import FrameWriter
        from ..backend.preview.renderer import MIN_SIZE
        from ..omg_blender_addon.scene_write import lod_objects
        from ..omg_blender_addon.fcurves import scene_fps
        from ..omg_blender_addon.scene_read import find_rig

        scene = context.scene
        start = scene.frame_current if self.frame_start < 0 else self.frame_start
        end = start if self.frame_end < 0 else self.frame_end
        if end < start:
            self.report({"ERROR"}, f"empty frame range {start}..{end}")
            return False
        r = scene.render
        pct = r.resolution_percentage / 100.0
        w, h = (int(v) for v in self.resolution)
        w = w or max(1, int(r.resolution_x * pct))
        h = h or max(1, int(r.resolution_y * pct))
        if min(w, h) < MIN_SIZE:
            self.report({"ERROR"}, f"{w}x{h} is too small: at least {MIN_SIZE} pixels a side (the watermark must fit)")
            return False
        try:
            if scene.camera is None or scene.camera.type != "CAMERA":
                raise OMGError("the scene has no active camera: set one to render splats")
            self._objects = None
            if self.renderer == "ENGINE" and scene.render.engine not in ENGINES:
                raise OMGError(f"the scene engine is {scene.render.engine}: set EEVEE or Cycles to render "
                               "the Geometry Nodes display, or use the splat renderer")
            if self.renderer == "ENGINE" and self.avatar:
                raise OMGError("the scene engine renders the whole scene: leave Avatar empty "
                               "(or use the splat renderer to render one avatar)")
            if self.avatar:
                rig = find_rig(self.avatar, context)
                shown = lod_objects(rig).get(int(rig.omg_avatar.lod))
                if shown is None:
                    raise OMGError(f"{rig.name}: no Gaussian LOD is imported")
                self._objects = [shown]
            out = Path(bpy.path.abspath(self.filepath) if self.filepath else default_output())
            frames = list(range(start, end + 1))
            video = out / VIDEO_NAME if self.video and len(frames) > 1 else None
            self._writer = FrameWriter(out, video, scene_fps(scene), first_number=start)
        except OMGError as exc:
            self.report({"ERROR"}, str(exc))
            return False
        self._frames, self._i, self._size, self._out = frames, 0, (w, h), out
        self._keep_frame = scene.frame_current
        self._stages: dict[str, float] = {}
        self._t0 = time.perf_counter()
        return True

    def _step(self, context) -> None:
        """Render and write the next frame."""
        from ..omg_blender_addon.splat_draw import to_uint8

        scene = context.scene
        scene.frame_set(self._frames[self._i])
        if self._objects is not None:  # the avatar's shown LOD must stay visible for the render
            self._objects = [o for o in self._objects if o.name in bpy.data.objects]
        if self.renderer == "ENGINE":
            from ..omg_blender_addon.display_render import render_engine_frame

            t = time.perf_counter()
            img = render_engine_frame(scene, *self._size, tuple(self.background), self.colors)
            secs = {"pose": 0.0, "render": time.perf_counter() - t, "splats": 0.0, "occluder_triangles": 0.0,
                    "alpha_mean": float(img[..., 3].mean())}
        else:
            img, secs = render_frame(context, *self._size, tuple(self.background), self._objects)
        t = time.perf_counter()
        self._writer.write(to_uint8(img))
        secs["write"] = time.perf_counter() - t
        for k in ("pose", "render", "write"):
            self._stages[k] = self._stages.get(k, 0.0) + secs[k]
        self._last = secs
        self._i += 1

    def _finish(self, context) -> None:
        from .preview import _show

        w = self._writer
        w.close()
        context.scene.frame_set(self._keep_frame)
        seconds = time.perf_counter() - self._t0
        n = w.n_frames
        report = {"frames": n, "seconds": seconds, "fps": n / seconds if seconds > 0 else 0.0,
                  "width": self._size[0], "height": self._size[1], "stage_seconds": dict(self._stages),
                  "splats": int(self._last["splats"]), "pngs": [str(p) for p in w.pngs], "folder": str(self._out),
                  "video": None if w.video is None else str(w.video), "first_frame": self._frames[0],
                  "last_frame_stages": dict(self._last)}
        if self.show:
            name = _show(context, SimpleNamespace(pngs=w.pngs, video=w.video), self._frames[0], "OMG Splats")
            report["image"] = name
        context.window_manager[REPORT_KEY] = report
        self.report({"INFO"}, f"splats: {n} frames at {self._size[0]}x{self._size[1]} in {seconds:.1f} s "
                              f"({report['fps']:.2f} fps) -> {self._out}")

    def _abort(self, context) -> None:
        self._writer.discard()  # a cancelled or failed render leaves no partial files
        context.scene.frame_set(self._keep_frame)

    def _fail(self, context, exc) -> set:
        from ..backend.errors import OMGError

        self._abort(context)
        self.report({"ERROR"}, str(exc) if isinstance(exc, OMGError) else f"render failed: {exc}")
        return {"CANCELLED"}

    # -- scripts: synchronous -----------------------------------------------------------------------
    def execute(self, context):
        if not self._start(context):
            return {"CANCELLED"}
        try:
            while self._i < len(self._frames):
                self._step(context)
        except Exception as exc:  # noqa: BLE001 - reported in one line; no partial files remain
            return self._fail(context, exc)
        self._finish(context)
        return {"FINISHED"}

    # -- UI: one frame per timer tick -----------------------------------------------------------------
    def invoke(self, context, event):
        if not self._start(context):
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.01, window=context.window)
        wm.progress_begin(0, len(self._frames))
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _end_modal(self, context) -> None:
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()

    def modal(self, context, event):
        if event.type == "ESC":
            self._end_modal(context)
            self._abort(context)
            self.report({"WARNING"}, "Render Splats cancelled: no files kept")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            self._step(context)
        except Exception as exc:  # noqa: BLE001
            self._end_modal(context)
            return self._fail(context, exc)
        context.window_manager.progress_update(self._i)
        if self._i < len(self._frames):
            return {"RUNNING_MODAL"}
        self._end_modal(context)
        self._finish(context)
        return {"FINISHED"}


CLASSES = (OMG_AVATAR_OT_render_splats,)
