"""Rendering: Gaussian splatting (gsplat on CUDA, own numba CPU splatter), mesh depth buffer,
AI-generated watermark. Shapes and conventions: docs/CONTRACTS.md ("backend/render").
"""

from .camera import Camera
from .depth import DepthBuffer, rasterize_depth, vertex_visibility
from .splat import SplatResult, cuda_available, select_backend, splat
from .watermark import WATERMARK_TEXT, save_png, stamp_watermark, to_uint8

__all__ = [
    "Camera",
    "DepthBuffer",
    "SplatResult",
    "WATERMARK_TEXT",
    "cuda_available",
    "rasterize_depth",
    "save_png",
    "select_backend",
    "splat",
    "stamp_watermark",
    "to_uint8",
    "vertex_visibility",
]
