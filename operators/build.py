"""Build Avatar from Photo: backend build in a worker thread, then the avatar lands in the scene.

One photo builds as a photo; a clip (a video file or an image-sequence folder), or several photos
selected together, make a multi-view build (backend/avatar/multiview.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy
from bpy.props import BoolProperty, CollectionProperty, IntProperty, IntVectorProperty, StringProperty

from ..omg_blender_addon import jobs
from ..omg_blender_addon.addon_id import addon_preferences
from ..omg_blender_addon.properties import MULTIVIEW_OPTIONS

IMAGE_FILTER = "*.png;*.jpg;*.jpeg;*.bmp;*.tif;*.tiff;*.webp;*.mp4;*.mov;*.webm;*.mkv;*.avi;*.m4v;*.gif"


@dataclass
class BuildRequest:
    """Plain data copied out of bpy on the UI thread; the worker reads only this."""

    photo: str
    name: str
    lods: tuple[int, ...]
    refine: bool
    head_model: str | None = None
    device: str = "auto"
    avatar_path: str | None = None  # also write the backend avatar (.omgavatar) here
    checkpoint: str | None = None   # trained OMG weights (preferences): the learned build
    dinov2: str | None = None       # DINOv2 weights that go with the checkpoint
    inputs: tuple[str, ...] = ()    # a clip or several photos: the multi-view build
    views: int = 8                  # multi-view: views picked from a clip
    views_from: tuple[int, int | None] = (0, None)  # a clip's frames the views come from (end inclusive)
    anchor: int | None = None       # the clip's frame / the photo's position that anchors the build


def build_work(request: BuildRequest):
    """``work(progress) -> AvatarSceneData``: the backend build plus the scene layout (no bpy)."""

    def work(progress):
        from ..backend.avatar.build import BuildOptions, build_avatar
        from ..backend.progress import Progress
        from ..omg_blender_addon.scene_data import scene_data

        # the build's own 0..1 goes to 0..0.9; laying out the scene arrays takes the rest
        inner = Progress(callback=lambda f, m: progress.report(0.9 * f, m), should_cancel=progress.should_cancel)
        opts = BuildOptions(lods=request.lods, head_model=request.head_model, refine=request.refine,
                            render_backend="cpu" if request.device == "cpu" else "auto", metrics=False,
                            method="learned" if request.checkpoint else "analytic",
                            checkpoint=request.checkpoint, dinov2=request.dinov2)
        reconstruct = None
        if opts.method == "learned":
            from ..backend.model import reconstruct_avatar as reconstruct
        if request.inputs:
            from ..backend.avatar.multiview import MultiViewOptions, build_from_views

            mv = MultiViewOptions(views=request.views, views_from=request.views_from, anchor_frame=request.anchor)
            result = build_from_views(list(request.inputs), opts, mv, inner)
        else:
            result = build_avatar(request.photo, opts, inner, reconstruct)
        progress.report(0.9, "preparing the scene data")
        data = scene_data(result.avatar, result.model, request.name, request.lods, progress)
        data.info = {**data.info, "photo": Path(request.photo).name, "method": result.avatar.method,
                     "views": len(result.avatar.options.get("views", [])) or 1,
                     "build_seconds": round(float(result.seconds.get("total", 0.0)), 2),
                     "build_stage_seconds": {k: round(float(v), 2) for k, v in result.seconds.items()},
                     "refined": bool(result.avatar.options.get("refined", False))}
        views = result.avatar.options.get("views", [])
        if request.inputs:
            # which views, which anchored it, and the clip it came from: Retarget Video keeps the
            # rig's identity by default when it drives the rig with that clip (backend.motion)
            data.info["view_labels"] = "; ".join(v["label"] for v in views)
            data.info["anchor"] = next((v["label"] for v in views if v.get("primary")), "")
            data.info["built_from"] = (result.avatar.options.get("multiview") or {}).get("source", "")
        progress.report(1.0, "adding the avatar to the scene")
        if request.avatar_path:
            # written after the last cancellation point, so a cancelled build leaves no file behind
            from ..backend.avatar.fileformat import save_avatar

            save_avatar(result.avatar, request.avatar_path)
        return data

    return work


class OMG_AVATAR_OT_build_from_photo(jobs.FileJobOperator, bpy.types.Operator):
    """Build an animatable multi-LOD Gaussian head avatar from one portrait photo, a clip (video or image-sequence folder) or several photos of one person"""

    bl_idname = "omg_avatar.build_from_photo"
    bl_label = "Build Avatar from Photo"
    # one undo step; no REGISTER: a redo panel would re-run the whole build synchronously
    bl_options = {"UNDO"}
    job_title = "Build avatar"

    filepath: StringProperty(name="Photo", subtype="FILE_PATH", default="")
    filter_glob: StringProperty(default=IMAGE_FILTER, options={"HIDDEN"})
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_movie: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    # several photos selected together in the file browser: a multi-view build
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    views: IntProperty(**MULTIVIEW_OPTIONS["views"])
    views_start: IntProperty(**MULTIVIEW_OPTIONS["views_start"])
    views_end: IntProperty(**MULTIVIEW_OPTIONS["views_end"])
    anchor: IntProperty(**MULTIVIEW_OPTIONS["anchor"])
    # read as self.properties.name: Operator.name (the operator's own name) shadows it on self
    name: StringProperty(name="Name", default="", description="Avatar name (default: the panel's)")
    lods: IntVectorProperty(name="LODs", size=3, default=(-1, -1, -1), min=-1, max=2,
                            description="Levels to import, e.g. (0, 1, 2) or (0, -1, -1) (-1 = unused slot, repeats "
                                        "count once); all -1: the panel's LOD toggles")
    refine: BoolProperty(name="Refine", default=True,
                         description="Short photometric refinement against the photo")
    avatar_path: StringProperty(name="Save Avatar", subtype="FILE_PATH", default="",
                                description="Optional: also write the built avatar as an .omgavatar file "
                                            "(for the command line: render, retarget, export)")

    def invoke(self, context, event):
        settings = context.scene.omg_avatar
        if not self.filepath and settings.photo_path:
            self.filepath = bpy.path.abspath(settings.photo_path)
        if not self.properties.is_property_set("refine"):
            self.refine = settings.refine
        return super().invoke(context, event)  # no photo yet: the file browser, filtered to images

    def _request(self, context) -> BuildRequest | None:
        settings = context.scene.omg_avatar
        photo = bpy.path.abspath(self.filepath or settings.photo_path)
        if not photo:
            self.report({"ERROR"}, "choose a photo first")
            return None
        names = [f.name for f in self.files if f.name]
        if len(names) > 1:
            folder = bpy.path.abspath(self.directory) if self.directory else str(Path(photo).parent)
            inputs = [str(Path(folder) / n) for n in names]
        else:
            inputs = [str(Path(photo))]  # a folder picked without a file: "dir/" -> "dir"
        if len(inputs) == 1 and Path(inputs[0]).is_dir():  # an image-sequence folder: a clip
            from ..backend.face.video import IMAGE_SUFFIXES

            if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in Path(inputs[0]).iterdir() if f.is_file()):
                self.report({"ERROR"}, f"{inputs[0]}: folder holds no image files (expected an image sequence)")
                return None
        else:
            for p in inputs:
                if not Path(p).is_file():
                    self.report({"ERROR"}, f"{p}: no such file")
                    return None
        from ..backend.filekind import is_video

        multi = len(inputs) > 1 or is_video(inputs[0])
        clip = multi and len(inputs) == 1
        anchor = int(self.anchor) if self.anchor >= 0 else None
        views_from = (int(self.views_start), int(self.views_end) if self.views_end >= 0 else None)
        if views_from != (0, None) and not clip:
            self.report({"ERROR"}, f"{inputs[0]}: Views From/To pick frames of a clip; a photo build uses every "
                                   "photo given")
            return None
        if views_from[1] is not None and views_from[1] < views_from[0]:
            self.report({"ERROR"}, f"{inputs[0]}: empty frame range {views_from[0]}..{views_from[1]} to pick "
                                   "views from")
            return None
        if anchor is not None and not multi:
            self.report({"ERROR"}, f"{inputs[0]}: the anchor chooses among the views of a multi-view build: "
                                   "choose a clip or several photos")
            return None
        if anchor is not None and not clip and anchor >= len(inputs):
            self.report({"ERROR"}, f"anchor {anchor}: give the position of one of the {len(inputs)} photos "
                                   f"(0..{len(inputs) - 1})")
            return None
        first, last = views_from
        if anchor is not None and clip and (anchor < first or (last is not None and anchor > last)):
            self.report({"ERROR"}, f"{inputs[0]}: anchor frame {anchor} lies outside the frames views are "
                                   f"picked from ({first}..{'the last' if last is None else last})")
            return None
        photo = inputs[0]
        lods = tuple(sorted({l for l in self.lods if l >= 0})) or tuple(settings.lods())
        if not lods:
            self.report({"ERROR"}, "select at least one LOD to import")
            return None
        prefs = addon_preferences(context)
        head = bpy.path.abspath(prefs.flame_path) if prefs is not None and prefs.flame_path else None
        device = prefs.device if prefs is not None else "auto"
        checkpoint = bpy.path.abspath(prefs.checkpoint_path) if prefs is not None and prefs.checkpoint_path else None
        dinov2 = bpy.path.abspath(prefs.dinov2_path) if prefs is not None and prefs.dinov2_path else None
        name = (self.properties.name or settings.avatar_name or Path(photo).stem).strip() or "Avatar"
        if multi and checkpoint:
            self.report({"ERROR"}, "the multi-view build is analytic: clear the OMG checkpoint in the "
                                   "preferences or build from one photo")
            return None
        avatar_path = bpy.path.abspath(self.avatar_path) if self.avatar_path else None
        return BuildRequest(photo=photo, name=name, lods=lods, refine=bool(self.refine), head_model=head,
                            device=device, avatar_path=avatar_path, checkpoint=checkpoint, dinov2=dinov2,
                            inputs=tuple(inputs) if multi else (), views=int(self.views),
                            views_from=views_from, anchor=anchor)

    def prepare(self, context):
        request = self._request(context)
        return None if request is None else build_work(request)

    def apply(self, context, result) -> None:
        from ..omg_blender_addon.scene_write import create_avatar

        rig = create_avatar(context, result)
        counts = ", ".join(f"LOD{l} {lod.n:,}" for l, lod in sorted(result.lods.items()))
        self.report({"INFO"}, f"{rig.name}: {counts} Gaussians ({result.info.get('build_seconds', 0):.0f} s)")


CLASSES = (OMG_AVATAR_OT_build_from_photo,)
