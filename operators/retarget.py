"""Retarget Video / Apply Track: a performance -> keyframes on an imported avatar.

Both are JobOperators (omg_blender_addon/jobs.py): the UI thread copies the rig description
(scene_read.read_rig), the worker gets the performance from the backend (backend.motion: track the
video or read the track file, frame range, smoothing, resampling) and plans the key values
(keyframes.plan_channels, numpy), and only ``apply`` writes keys and scene settings
(fcurves.write_keyframes), so a cancelled or failed run leaves no keyframes. One undo step.
Retarget Video tracks with the rig's own identity (only pose, expression and camera fitted) when
the rig was built from the same clip, or when asked (Identity: Avatar); else the clip's identity.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..omg_blender_addon import jobs
from ..omg_blender_addon.properties import IDENTITY_ITEMS

VIDEO_FILTER = "*.mp4;*.mov;*.m4v;*.webm;*.mkv;*.avi;*.gif"
REPORT_KEY = "omg_avatar_retarget_report"


@dataclass
class RetargetRequest:
    """Plain data for the worker (copied on the UI thread)."""

    path: str
    info: object                     # scene_read.RigInfo
    frame_start: int                 # first source frame (0-based)
    frame_end: int                   # last source frame (inclusive), -1 = the last
    smoothing: float
    apply: object                    # keyframes.ApplyOptions
    match_scene_fps: bool
    scene_fps: float
    track_out: str | None = None     # retarget_video: also save the track here
    is_track_file: bool = False
    key_tolerance: float = 0.0       # keyframes.reduce_channels (0 = a key on every frame)
    identity: bool | None = None     # track with the rig's identity (True), the clip's (False), or
                                     # None: the rig's when it was built from this clip (motion.keeps_identity)
    lod: object | None = None        # scene_read.SceneLOD the render pass renders (None: the plain fit)


@dataclass
class RetargetResult:
    channels: object                 # keyframes.Channels
    fps: float                       # rate of the planned keys (video's, or the scene's when resampled)
    source_fps: float
    n_source_frames: int
    source: str
    seconds: dict[str, float] = field(default_factory=dict)
    frames_without_face: list[int] = field(default_factory=list)
    identity: str = "clip"           # whose identity the tracker used: "avatar" (the rig's) or "clip"
    render_pass: bool = False        # the head was moved onto the avatar's render (face.track.DRIVING_PASSES)


def retarget_work(req: RetargetRequest):
    """``work(progress) -> RetargetResult`` (no bpy): the performance from the backend
    (backend.motion.load_performance), its keys planned by the add-on (keyframes.plan_channels)."""

    def work(progress):
        from ..backend.motion import PerformanceRequest, keeps_identity, load_performance
        from ..omg_blender_addon.keyframes import plan_channels, reduce_channels

        keep = (not req.is_track_file and req.info.shape.size > 0
                and keeps_identity(req.identity, req.info.built_from, req.path))
        reader = None
        if keep and req.lod is not None:     # the render-and-compare pass renders the rig's own Gaussians
            from ..backend.avatar.render_compare import AvatarReader
            from ..backend.errors import InputError
            from ..backend.head.loader import load_head_model
            from ..omg_blender_addon.scene_read import SceneError, gaussian_avatar

            model = load_head_model(req.info.head_model_path)
            try:
                reader = AvatarReader(gaussian_avatar(req.info, req.lod, model), model)
            except (SceneError, InputError):    # the scene's Gaussians do not fit the head model: the plain fit
                reader = None
        perf = load_performance(PerformanceRequest(
            req.path, req.is_track_file, req.frame_start, req.frame_end, req.smoothing,
            fps=None if req.match_scene_fps else req.scene_fps, head_model_path=req.info.head_model_path,
            avatar_shape=req.info.shape, avatar_pose=req.info.source_pose,  # the rig's photo pose holds global
            keep_identity=keep, avatar_head=req.info.head_rest, render_reader=reader,
        ), progress)
        t1 = time.perf_counter()
        channels = reduce_channels(plan_channels(perf.params, req.info, req.apply, perf.expr_names),
                                   req.key_tolerance)
        secs = {**perf.seconds, "plan": time.perf_counter() - t1}
        if req.track_out and perf.track is not None:
            # written after the last cancellation point and the last step that can fail
            progress.check_cancel()
            Path(req.track_out).parent.mkdir(parents=True, exist_ok=True)
            perf.track.save(req.track_out)
        return RetargetResult(channels, perf.fps, perf.source_fps, perf.n_source_frames, perf.source, secs,
                              perf.frames_without_face, "avatar" if keep else "clip", reader is not None)

    return work


class _RetargetBase(jobs.FileJobOperator):
    """Properties and the apply step shared by Retarget Video and Apply Track."""

    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="File", subtype="FILE_PATH", default="")
    avatar: StringProperty(name="Avatar", default="",
                           description="The avatar's name, or its rig / head / LOD object; default: the active object's")
    frame_start: IntProperty(name="First Frame", default=0, min=0,
                             description="First frame of the source to use (0 = its first frame)")
    frame_end: IntProperty(name="Last Frame", default=-1, min=-1,
                           description="Last frame of the source to use (-1 = its last frame)")
    scene_start: IntProperty(name="Scene Start", default=1, description="Scene frame of the first key")
    apply_expression: BoolProperty(name="Expression", default=True, description="Key the expression shape keys")
    apply_jaw: BoolProperty(name="Jaw", default=True, description="Key the jaw bone")
    apply_eyes: BoolProperty(name="Eyes", default=True, description="Key the eye bones")
    apply_neck: BoolProperty(name="Neck", default=True, description="Key the neck bone")
    apply_global: BoolProperty(name="Head Motion", default=True,
                               description="Key the global bone (whole-head rotation and translation)")
    key_tolerance: FloatProperty(
        name="Key Reduction", default=0.0, min=0.0, max=0.1, precision=4,
        description="Drop keys that straight lines between the kept keys reproduce within this "
                    "tolerance (shape-key value, quaternion component, metres); 0 = a key on every frame")
    new_take: BoolProperty(
        name="New Take", default=True,
        description="Key into a new action named after the source and push the earlier one to the NLA, "
                    "so every take stays (off: add the keys to the current action, replacing keys in "
                    "the same frames)")
    match_scene_fps: BoolProperty(
        name="Match Scene FPS", default=True,
        description="Set the scene's frame rate to the source's (one key per source frame); off: keep "
                    "the scene's rate and resample the performance to it")

    _is_track_file = False

    def _apply_options(self):
        from ..omg_blender_addon.keyframes import ApplyOptions

        return ApplyOptions(expression=self.apply_expression, jaw=self.apply_jaw, eyes=self.apply_eyes,
                            neck=self.apply_neck, global_motion=self.apply_global)

    def _request(self, context) -> RetargetRequest | None:
        from ..omg_blender_addon.fcurves import scene_fps
        from ..omg_blender_addon.scene_read import SceneError, find_rig, read_rig

        path = bpy.path.abspath(self.filepath)
        if not path or not Path(path).exists():
            self.report({"ERROR"}, f"{path or 'no file chosen'}: no such file")
            return None
        if self.frame_end >= 0 and self.frame_end < self.frame_start:
            self.report({"ERROR"}, f"empty frame range {self.frame_start}..{self.frame_end}")
            return None
        try:
            rig = find_rig(self.avatar, context)
        except SceneError as exc:
            self.report({"ERROR"}, str(exc))
            return None
        info = read_rig(rig)
        if info.head_model_refused:
            from ..omg_blender_addon.head_model_trust import refused_message

            self.report({"WARNING"}, refused_message(info.head_model_refused))
        opts = self._apply_options()
        if not (opts.expression or opts.jaw or opts.eyes or opts.neck or opts.global_motion):
            self.report({"ERROR"}, "nothing to apply: enable at least one of expression, jaw, eyes, neck, head motion")
            return None
        lod = None
        # the worker decides whether the identity is kept (motion.keeps_identity, beside torch); the
        # LOD is copied here unless it plainly is not (Identity: Clip, or a rig without an identity)
        if self._render_pass() and self._identity() is not False and info.shape.size > 0:
            from ..omg_blender_addon.scene_read import read_lod

            try:
                lod = read_lod(rig, info.lod)
            except SceneError as exc:   # no Gaussians to render: the plain fit, and say why
                self.report({"WARNING"}, f"render pass skipped: {exc}")
        self._t0 = time.perf_counter()
        return RetargetRequest(path=path, info=info, frame_start=self.frame_start, frame_end=self.frame_end,
                               smoothing=float(self.smoothing), apply=opts,
                               match_scene_fps=bool(self.match_scene_fps), scene_fps=scene_fps(context.scene),
                               track_out=self._track_out(), is_track_file=self._is_track_file,
                               key_tolerance=float(self.key_tolerance), identity=self._identity(), lod=lod)

    def _track_out(self) -> str | None:
        return None

    def _identity(self) -> bool | None:
        return None

    def _render_pass(self) -> bool:
        return False

    def _applied(self, context) -> None:
        """Hook run on the UI thread after the keys are written (subclasses store settings)."""

    def prepare(self, context):
        req = self._request(context)
        if req is None:
            return None
        self._rig_name = req.info.rig_name
        self._key_name = req.info.key_name
        return retarget_work(req)

    def apply(self, context, result: RetargetResult) -> None:
        from ..omg_blender_addon.fcurves import match_scene, write_keyframes

        t = time.perf_counter()
        rig = bpy.data.objects.get(self._rig_name)
        key = bpy.data.shape_keys.get(self._key_name) if self._key_name else None
        if rig is None:
            from ..backend.errors import OMGError

            raise OMGError(f"the avatar '{self._rig_name}' was removed while retargeting")
        ch = result.channels
        first = int(self.scene_start)
        frames = first + np.arange(ch.n_frames, dtype=np.float64)
        stats = write_keyframes(rig, key, ch, frames, Path(self.filepath).stem or "Performance", bool(self.new_take))
        self._applied(context)
        match_scene(context.scene, result.fps if self.match_scene_fps else None, first, first + ch.n_frames - 1)
        context.scene.frame_set(first)
        keying = time.perf_counter() - t
        total = time.perf_counter() - getattr(self, "_t0", t)
        report = {
            "frames": ch.n_frames, "source_frames": result.n_source_frames, "source": result.source,
            "source_fps": result.source_fps, "fps": result.fps, "curves": stats.curves, "keys": stats.keys,
            "actions": stats.actions, "clipped": ch.clipped, "frames_without_face": result.frames_without_face,
            "seconds": {**result.seconds, "keyframes": keying, "total": total},
            "throughput_fps": result.n_source_frames / total if total > 0 else 0.0,
            "identity": result.identity, "render_pass": result.render_pass,
        }
        context.window_manager[REPORT_KEY] = report
        msg = (f"{rig.name}: {ch.n_frames} frames keyed ({stats.curves} curves) at {result.fps:.3g} fps, "
               f"{report['throughput_fps']:.1f} frames/s")
        if result.frames_without_face:
            msg += f"; {len(result.frames_without_face)} frames without a face were interpolated"
        if ch.clipped:
            msg += f"; {ch.clipped} expression values clipped to the slider range"
        if result.identity == "avatar":
            msg += "; tracked with the avatar's identity" + (" and matched to its render" if result.render_pass else "")
        self.report({"INFO"}, msg)


class OMG_AVATAR_OT_retarget_video(_RetargetBase, bpy.types.Operator):
    """Track the face in a video and key the performance onto the avatar's rig and expression keys"""

    bl_idname = "omg_avatar.retarget_video"
    bl_label = "Retarget Video"
    job_title = "Retarget video"

    filter_glob: StringProperty(default=VIDEO_FILTER, options={"HIDDEN"})
    filter_movie: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    smoothing: FloatProperty(name="Smoothing", default=2.0, min=0.0, max=8.0,
                             description="Temporal smoothing: 0 off, 1 light, 2 default, 4 strong "
                                         "(fast motion is kept at any strength)")
    track_path: StringProperty(name="Save Track", subtype="FILE_PATH", default="",
                               description="Also save the track (.npz) for Apply Track (empty: don't)")

    identity: EnumProperty(
        name="Identity", default="AUTO", items=IDENTITY_ITEMS,
        description="Whose face shape the tracker fits the clip with")

    def _track_out(self) -> str | None:
        return bpy.path.abspath(self.track_path) if self.track_path else None

    render_pass: BoolProperty(
        name="Match the Avatar's Render", default=True,
        description="With the avatar's identity: render the avatar at every 6th tracked frame, read it with "
                    "face mesh and place the head so that the render's eyes, brows and nose land on the clip's "
                    "(head turns land closer; the mouth keeps the clip's shape; tracking takes about twice as long)")

    def _identity(self) -> bool | None:
        return {"AVATAR": True, "CLIP": False}.get(self.identity)

    def _render_pass(self) -> bool:
        return bool(self.render_pass)


class OMG_AVATAR_OT_apply_track(_RetargetBase, bpy.types.Operator):
    """Key a saved track file (.npz from 'python -m backend track' or Retarget Video) onto the avatar"""

    bl_idname = "omg_avatar.apply_track"
    bl_label = "Apply Track"
    job_title = "Apply track"
    _is_track_file = True

    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    smoothing: FloatProperty(name="Extra Smoothing", default=0.0, min=0.0, max=8.0,
                             description="Additional smoothing on top of the track's own (0 = none)")


CLASSES = (OMG_AVATAR_OT_retarget_video, OMG_AVATAR_OT_apply_track)
