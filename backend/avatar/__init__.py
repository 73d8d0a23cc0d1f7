"""Avatars: build a multi-LOD head + body Gaussian avatar (with skinned parts) from one photo, pose it, store it.

Public API (what the CLI and the Blender add-on call):
    build_avatar(photo, BuildOptions, Progress[, reconstruct]) -> BuildResult  (build.py)
    pose(avatar, model, params, lod) -> (T, N_l + n_parts, 3)      (posing.py)
    posed_set(avatar, model, params, lod, frame) -> GaussianSet
    save_avatar(avatar, path) / load_avatar(path) / read_header(path) (fileformat.py)
    write_ply(path, GaussianSet) / read_ply(path) -> GaussianSet     (ply.py)
Heavy modules (torch, mediapipe) load lazily, so importing this package is cheap.
"""

from __future__ import annotations

from .fileformat import FORMAT_VERSION, load_avatar, read_header, save_avatar
from .gaussians import GaussianAvatar, GaussianSet, SkinnedPart
from .ply import read_ply, write_ply
from .posed import posed_set
from .posing import NECK_FOLLOW, pose


def build_avatar(photo=None, options=None, progress=None, reconstruct=None):
    """See backend.avatar.build.build_avatar (imported lazily: it pulls in torch and mediapipe)."""
    from .build import build_avatar as _build

    return _build(photo, options, progress, reconstruct)


def __getattr__(name: str):
    if name in ("BuildOptions", "BuildResult"):  # lazily, like build_avatar
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BuildOptions", "BuildResult", "FORMAT_VERSION", "GaussianAvatar", "GaussianSet", "NECK_FOLLOW",
           "SkinnedPart", "build_avatar", "load_avatar", "pose", "posed_set", "read_header", "read_ply", "save_avatar",
           "write_ply"]
