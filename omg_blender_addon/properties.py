"""Scene-level UI settings and per-object avatar data (what the panels edit and the operators read).

``Scene.omg_avatar``: the build panel's inputs. ``Scene.omg_avatar_animation``: the Retarget /
Preview panels' inputs.
``Object.omg_avatar``: marks the objects of an imported avatar. The rig holds the avatar-level
``lod`` (its update shows that LOD's Gaussian object and hides the others, see
scene_write.apply_lod); the head mesh and the Gaussian objects point back to the rig. Being
registered properties, all of it is saved in the .blend and works again after reopening.
"""

from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, IntVectorProperty,
                       PointerProperty, StringProperty)

LOD_ITEMS = (
    ("0", "LOD 0", "Head-model resolution (FLAME: 5,023 head Gaussians)"),
    ("1", "LOD 1", "One midpoint subdivision (FLAME: 20,018 head Gaussians)"),
    ("2", "LOD 2", "Two midpoint subdivisions (FLAME: 79,936 head Gaussians)"),
)

# Retarget Video: whose identity (face shape) the tracker uses (backend.motion.keeps_identity)
IDENTITY_ITEMS = (
    ("AUTO", "Auto", "The avatar's own identity when it was built from this clip (the same person), "
                     "else the clip's"),
    ("AVATAR", "Avatar", "Keep the avatar's identity: fit only pose, expression and camera (the clip shows "
                         "the avatar's person)"),
    ("CLIP", "Clip", "Fit the clip's own identity (another person drives the avatar)"),
)

# the multi-view build's options (backend.avatar.multiview.MultiViewOptions), declared once: the
# build panel's settings and the build operator's keyword arguments (operators/build.py) share
# names, ranges and help, and the panel copies one onto the other
MULTIVIEW_OPTIONS: dict[str, dict] = {
    "views": dict(name="Views", default=8, min=2, max=64,
                  description="Multi-view build from a clip: frames picked to cover the head poses"),
    "views_start": dict(name="Views From", default=0, min=0,
                        description="Multi-view build from a clip: first frame views may be picked from"),
    "views_end": dict(name="Views To", default=-1, min=-1,
                      description="Multi-view build from a clip: last frame views may be picked from (-1: the "
                                  "clip's last)"),
    "anchor": dict(name="Anchor", default=-1, min=-1,
                   description="Multi-view build: the view that anchors framing, body and rest pose (a clip's "
                               "frame, always made a view; or the position of a photo, from 0); -1: the most "
                               "frontal view"),
}


def _show_splats_update(self, context) -> None:
    from . import splat_viewport

    if self.show_splats:
        splat_viewport.enable()
    else:
        splat_viewport.disable()


class OMGAvatarSceneSettings(bpy.types.PropertyGroup):
    photo_path: StringProperty(name="Photo", subtype="FILE_PATH", default="",
                               description="Portrait photo to build the avatar from")
    avatar_name: StringProperty(name="Name", default="Avatar",
                                description="Name of the new collection (made unique when taken)")
    lod0: BoolProperty(name="LOD 0", default=True, description="Import the LOD 0 Gaussians")
    lod1: BoolProperty(name="LOD 1", default=True, description="Import the LOD 1 Gaussians")
    lod2: BoolProperty(name="LOD 2", default=True, description="Import the LOD 2 Gaussians")
    refine: BoolProperty(name="Refine", description="Short photometric refinement against the photo", default=True)
    # a clip (or several photos) as input: the multi-view build's options (operators/build.py)
    views: IntProperty(**MULTIVIEW_OPTIONS["views"])
    views_start: IntProperty(**MULTIVIEW_OPTIONS["views_start"])
    views_end: IntProperty(**MULTIVIEW_OPTIONS["views_end"])
    anchor: IntProperty(**MULTIVIEW_OPTIONS["anchor"])
    show_splats: BoolProperty(name="Gaussian Splats", default=False, update=_show_splats_update,
                              description="Draw the Gaussians as sorted, Gaussian-falloff splats in the 3D viewport "
                                          "(the same renderer as Render Splats); off: the Geometry Nodes ellipsoids")

    def lods(self) -> list[int]:
        return [l for l, on in enumerate((self.lod0, self.lod1, self.lod2)) if on]


def _head_model_update(self, context) -> None:
    """A path set in this session (by the build or the user) may be opened (head_model_trust)."""
    from . import head_model_trust

    head_model_trust.remember(bpy.path.abspath(self.head_model_path))


def _lod_update(self, context) -> None:
    from .scene_write import ROLE_RIG, apply_lod

    rig = self.id_data
    if self.role != ROLE_RIG or not isinstance(rig, bpy.types.Object):
        return
    shown = apply_lod(rig, int(self.lod))
    if shown >= 0 and str(shown) != self.lod:
        self.lod = str(shown)  # asked for a LOD that was not imported: show the nearest one


class OMGAvatarObjectSettings(bpy.types.PropertyGroup):
    role: EnumProperty(
        name="Role",
        items=(("NONE", "None", "Not part of an OMG avatar"),
               ("RIG", "Rig", "The avatar's armature"),
               ("HEAD", "Head", "The head mesh with the expression shape keys (control surface)"),
               ("GAUSSIANS", "Gaussians", "One LOD of the avatar's Gaussians")),
        default="NONE",
    )
    rig: PointerProperty(name="Rig", type=bpy.types.Object, description="The avatar's armature")
    level: IntProperty(name="Level", default=0, min=0, description="LOD level of a Gaussian object")
    n_head: IntProperty(name="Head Gaussians", default=0, min=0)
    n_parts: IntProperty(name="Part Gaussians", default=0, min=0,
                         description="Gaussians of the skinned parts (body, mouth interior, eyes)")
    lod: EnumProperty(name="LOD", items=LOD_ITEMS, default="0", update=_lod_update,
                      description="Level of detail shown (the other LODs are hidden)")
    head_model_name: StringProperty(name="Head model", default="")
    head_model_path: StringProperty(name="Head model path", default="", subtype="FILE_PATH", update=_head_model_update,
                                    description="Head model the avatar was built with. A path that came in with a "
                                    ".blend file is opened only once chosen in this session (or set as the "
                                    "FLAME model in the preferences)")


class OMGCaptureMapEntry(bpy.types.PropertyGroup):
    """One line of the face-capture mapping (backend.motion.arkit.MapEntry): target += gain * source."""

    source: StringProperty(name="Source", default="", description="Capture channel (ARKit name, e.g. eyeBlinkLeft)")
    target: StringProperty(name="Target", default="",
                           description="Shape key name (mouthSmileLeft) or joint channel (jaw.x, neck.y, eye_L.x)")
    gain: FloatProperty(name="Gain", default=1.0, description="Target units (radians for joints) per unit of source")


class OMGAvatarAnimationSettings(bpy.types.PropertyGroup):
    """The Retarget / Preview panels' inputs (stored per scene)."""

    video_path: StringProperty(name="Video", subtype="FILE_PATH", default="",
                               description="Driving video (mp4/mov/webm/mkv/gif) or a folder of numbered images")
    track_path: StringProperty(name="Track", subtype="FILE_PATH", default="",
                               description="Saved track (.npz) to apply without re-tracking")
    save_track: StringProperty(name="Save Track", subtype="FILE_PATH", default="",
                               description="Also save the video's track here (.npz; empty: don't)")
    frame_start: IntProperty(name="First", default=0, min=0, description="First source frame (0-based)")
    frame_end: IntProperty(name="Last", default=-1, min=-1, description="Last source frame (-1: the last)")
    scene_start: IntProperty(name="Scene Start", default=1, description="Scene frame of the first key")
    smoothing: FloatProperty(name="Smoothing", default=2.0, min=0.0, max=8.0,
                             description="0 off, 1 light, 2 default, 4 strong (fast motion is kept)")
    key_tolerance: FloatProperty(name="Key Reduction", default=0.0, min=0.0, max=0.1, precision=4,
                                 description="Drop keys that lines between kept keys reproduce within this "
                                             "tolerance (0 = a key on every frame)")
    apply_expression: BoolProperty(name="Expression", default=True)
    apply_jaw: BoolProperty(name="Jaw", default=True)
    apply_eyes: BoolProperty(name="Eyes", default=True)
    apply_neck: BoolProperty(name="Neck", default=True)
    apply_global: BoolProperty(name="Head Motion", default=True)
    match_scene_fps: BoolProperty(name="Match Scene FPS", default=True,
                                  description="Use the video's frame rate (off: resample to the scene's)")
    identity: EnumProperty(name="Identity", default="AUTO", items=IDENTITY_ITEMS,
                           description="Whose face shape the tracker fits the clip with")
    render_pass: BoolProperty(name="Match the Avatar's Render", default=True,
                              description="With the avatar's identity: place the head so that the avatar's render, "
                                          "read every 6th frame, lands on the clip (eyes, brows and nose; the mouth "
                                          "keeps the clip's shape; tracking takes about twice as long)")
    capture_path: StringProperty(name="Capture", subtype="FILE_PATH", default="",
                                 description="Live Link Face CSV, or a CSV / JSON of ARKit weights per frame")
    capture_mapping: CollectionProperty(type=OMGCaptureMapEntry, name="Capture Mapping",
                                        description="Source -> shape key / joint channel; filled with the "
                                                    "stand-in's defaults on the first import, kept in the .blend")
    capture_mapping_index: IntProperty(name="Mapping Row", default=0, min=0)
    preview_camera: EnumProperty(name="Camera", default="SOURCE", items=(
        ("SOURCE", "Source", "The avatar's photo camera"), ("SCENE", "Scene", "The scene's active camera")))
    preview_resolution: IntVectorProperty(name="Resolution", size=2, default=(512, 512), min=80, max=4096)
    preview_path: StringProperty(name="Output", subtype="DIR_PATH", default="",
                                 description="Folder for the frames and preview.mp4 (empty: //omg_preview)")


CLASSES = (OMGAvatarSceneSettings, OMGAvatarObjectSettings, OMGCaptureMapEntry, OMGAvatarAnimationSettings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.omg_avatar = PointerProperty(type=OMGAvatarSceneSettings)
    bpy.types.Object.omg_avatar = PointerProperty(type=OMGAvatarObjectSettings)
    bpy.types.Scene.omg_avatar_animation = PointerProperty(type=OMGAvatarAnimationSettings)


def unregister() -> None:
    del bpy.types.Scene.omg_avatar_animation
    del bpy.types.Object.omg_avatar
    del bpy.types.Scene.omg_avatar
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
