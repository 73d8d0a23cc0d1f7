"""Plain data about an imported avatar's rig, copied out of the scene on the UI thread
(scene_read.read_rig) and used by worker threads: keyframe planning and previews. No bpy."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

JOINTS = ("global", "neck", "jaw", "eye_L", "eye_R")  # backend JOINT_NAMES order


@dataclass
class BoneInfo:
    """name: bone name; rest: (3, 3) float64 rest rotation in armature space (bone.matrix_local);
    rotation_mode: the pose bone's mode ("QUATERNION", "AXIS_ANGLE" or an Euler order)."""

    name: str
    rest: np.ndarray
    rotation_mode: str


@dataclass
class RigInfo:
    """Plain data about one imported avatar (copied on the UI thread, read by workers).

    bones: {joint name: BoneInfo} for the joints present; expr_names: the head's expression shape
    keys in order (no "Basis"); slider: {name: (min, max)}; shape: (S,) identity; camera_*:
    the source camera (backend convention, model frame) or None; lod: the LOD shown;
    head_model_path: the head model the workers may open (None: the bundled stand-in)."""

    rig_name: str
    head_name: str | None
    key_name: str | None
    bones: dict[str, BoneInfo]
    expr_names: list[str]
    slider: dict[str, tuple[float, float]]
    shape: np.ndarray
    head_model_name: str
    head_model_path: str | None
    camera_K: np.ndarray | None
    camera_viewmat: np.ndarray | None
    camera_size: tuple[int, int] | None
    lod: int
    levels: list[int] = field(default_factory=list)
    head_model_refused: str | None = None  # recorded path not opened (head_model_trust): the stand-in is used
    source_pose: np.ndarray | None = None   # (5, 3) axis-angle: the photo's joints (tracking holds global there)
    built_from: str = ""  # the clip (file or folder name) a multi-view build came from; "" = photos / one photo
    # (V, 3) float32 metres, model frame: the head mesh's basis (the identity with the avatar's
    # vertex offsets), so a tracker that keeps the rig's identity keeps its offsets too; None = no head mesh
    head_rest: np.ndarray | None = None

    def source_camera(self):
        """The avatar's source camera as a backend Camera, or None when the rig has none."""
        from ..backend.render.camera import Camera

        if self.camera_K is None or self.camera_viewmat is None or self.camera_size is None:
            return None
        return Camera(self.camera_K, self.camera_viewmat, *self.camera_size)
