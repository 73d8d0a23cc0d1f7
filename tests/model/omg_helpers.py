"""Small configurations shared by the model tests (imported as a plain module: tests/ has no packages)."""

from __future__ import annotations

from backend.face.crop import crop_intrinsics, crop_viewmat
from backend.model.dinov2 import DinoConfig
from backend.model.omg import OMGConfig
from backend.render.camera import Camera

SMALL_DINO = DinoConfig(dim=64, depth=2, heads=1, pretrain_grid=8)


def small_config(n_verts: int, levels=(0, 1, 2), self_attention: bool = True) -> OMGConfig:
    """The paper's structure at toy widths: 64-wide DINO at 112 px (8x8 tokens), 32-wide features."""
    return OMGConfig(n_verts=n_verts, levels=tuple(levels), dino_dim=64, dino_input=112, local_size=48, dim=32,
                     decoder_heads=4, mlp_hidden=32, self_attention=self_attention, shoulder_points=400,
                     shoulder_plane=24, shoulder_hidden=16, unet_channels=(8, 16))


def crop_camera(size: int) -> Camera:
    """The face module's fixed source camera at ``size`` px (focal 12 normalized, 2 m away)."""
    return Camera(crop_intrinsics(size), crop_viewmat(), size, size)
