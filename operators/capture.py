"""Import Face Capture: a Live Link Face CSV (or ARKit CSV/JSON) -> keyframes on an imported avatar.

A JobOperator like Apply Track (operators/retarget.py): the UI thread copies the rig description and
the scene's mapping table (Scene.omg_avatar_animation.capture_mapping), the worker reads and maps
the capture (backend.motion: capture, arkit, takes), smooths and resamples it and plans the key
values (keyframes.plan_channels); ``apply`` writes them into a new action named after the file
(the earlier take pushed to the NLA) and stores the mapping used in the .blend for the next import.
"""

from __future__ import annotations

import time
from pathlib import Path

import bpy
from bpy.props import BoolProperty, FloatProperty, StringProperty

from .retarget import RetargetResult, _RetargetBase


def capture_work(path: str, info, apply, mapping: list, smoothing: float, scene_fps: float | None,
                 capture_fps: float | None, timecode_fps: float | None, frame_start: int = 0, frame_end: int = -1,
                 key_tolerance: float = 0.0):
    """``work(progress) -> RetargetResult`` (no bpy): read ``path``, map it with ``mapping``
    (list of arkit.MapEntry) onto the rig's shape keys (``info.expr_names``) and joints, smooth,
    resample to ``scene_fps`` (None = keep the capture's rate), plan the keys. frame_start,
    frame_end: the capture frames to use (0-based, inclusive; -1 = the last)."""

    def work(progress):
        from ..backend.motion.capture import read_capture
        from ..backend.motion.frames import smooth
        from ..backend.motion.takes import capture_to_motion
        from ..omg_blender_addon.keyframes import plan_channels, reduce_channels

        t0 = time.perf_counter()
        cap = read_capture(path, capture_fps, timecode_fps, tuple(e.source for e in mapping))
        progress.check_cancel()
        last = cap.n_frames - 1 if frame_end < 0 else min(frame_end, cap.n_frames - 1)
        if frame_start > last:
            from ..backend.errors import InputError

            raise InputError(path, f"frame range {frame_start}..{frame_end} is outside the {cap.n_frames} frames")
        cap.values = cap.values[frame_start:last + 1]
        motion, _ = capture_to_motion(cap, mapping, list(info.expr_names), 0, scene_fps)
        params = smooth(motion.params, motion.fps, smoothing)
        secs = {"load": time.perf_counter() - t0}
        t1 = time.perf_counter()
        channels = reduce_channels(plan_channels(params, info, apply, list(info.expr_names)), key_tolerance)
        secs["plan"] = time.perf_counter() - t1
        return RetargetResult(channels, motion.fps, cap.fps, cap.n_frames, cap.source, secs)

    return work


def scene_mapping(settings) -> list:
    """The scene's mapping table as arkit.MapEntry rows; the stand-in's defaults when it is empty."""
    from ..backend.motion.arkit import MapEntry, canonical_name, default_mapping

    rows = [MapEntry(canonical_name(r.source), r.target.strip(), float(r.gain))
            for r in settings.capture_mapping if r.source.strip() and r.target.strip()]
    return rows or default_mapping()


def store_mapping(settings, mapping: list) -> None:
    """Write ``mapping`` into the scene's table (kept in the .blend, edited in the panel)."""
    settings.capture_mapping.clear()
    for e in mapping:
        row = settings.capture_mapping.add()
        row.source, row.target, row.gain = e.source, e.target, e.gain


class OMG_AVATAR_OT_import_face_capture(_RetargetBase, bpy.types.Operator):
    """Key a face capture (Live Link Face CSV, or a CSV / JSON of ARKit weights) onto the avatar, mapped by
    the scene's capture mapping table, as a new take"""

    bl_idname = "omg_avatar.import_face_capture"
    bl_label = "Import Face Capture"
    job_title = "Import face capture"

    filter_glob: StringProperty(default="*.csv;*.json", options={"HIDDEN"})
    smoothing: FloatProperty(name="Smoothing", default=0.0, min=0.0, max=8.0,
                             description="Temporal smoothing of the capture (0 = none)")
    new_take: BoolProperty(name="New Take", default=True,
                           description="Key into a new action named after the file; earlier takes go to the NLA")
    capture_fps: FloatProperty(name="Capture FPS", default=0.0, min=0.0,
                               description="The capture's frame rate (0 = from its timecodes)")
    timecode_fps: FloatProperty(name="Timecode FPS", default=0.0, min=0.0,
                                description="Live Link Face timecode rate (0 = from the timecodes)")

    def prepare(self, context):
        from ..backend.errors import InputError
        from ..backend.motion.arkit import resolve_mapping, upgrade_mapping

        req = self._request(context)
        if req is None:
            return None
        settings = context.scene.omg_avatar_animation
        mapping = scene_mapping(settings)
        names = list(req.info.expr_names)
        try:   # a table saved for the stand-in's old 24 expressions is carried over to ARKit-52
            self._converted = upgrade_mapping(mapping, names)[1]
            mapping = resolve_mapping(mapping, names, "the scene's capture mapping")
        except InputError as exc:
            self.report({"ERROR"}, str(exc))
            return None
        self._mapping = mapping
        self._rig_name = req.info.rig_name
        self._key_name = req.info.key_name
        return capture_work(req.path, req.info, req.apply, mapping, float(self.smoothing),
                            None if self.match_scene_fps else req.scene_fps,
                            self.capture_fps or None, self.timecode_fps or None, req.frame_start, req.frame_end,
                            req.key_tolerance)

    def _applied(self, context) -> None:
        settings = context.scene.omg_avatar_animation
        if not len(settings.capture_mapping) or self._converted:
            # the defaults, or the old table carried over to ARKit-52, now editable in the panel
            store_mapping(settings, self._mapping)
            if self._converted:
                self.report({"INFO"}, "Capture mapping: old stand-in targets carried over to ARKit-52 "
                                      f"({', '.join(self._converted)})")


class OMG_AVATAR_OT_reset_capture_mapping(bpy.types.Operator):
    """Replace the scene's face-capture mapping with the stand-in's ARKit-52 defaults"""

    bl_idname = "omg_avatar.reset_capture_mapping"
    bl_label = "Default Mapping"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from ..backend.motion.arkit import default_mapping

        store_mapping(context.scene.omg_avatar_animation, default_mapping())
        return {"FINISHED"}


CLASSES = (OMG_AVATAR_OT_import_face_capture, OMG_AVATAR_OT_reset_capture_mapping)
