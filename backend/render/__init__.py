"""Rendering: Gaussian splatting (gsplat on CUDA, own numba CPU splatter), mesh depth buffer,
AI-generated watermark. Shapes and conventions: docs/CONTRACTS.md ("backend/render").

The camera and the depth buffer import with the package; the splatter (torch autograd functions,
its numba kernels' dispatchers) and the watermark (PIL) on first use of one of their names: a
photo build needs only the first two until its previews, and importing the rest at its start was
~45 ms of Python-bound CPU on the critical path, before its other threads start.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from .camera import Camera
from .depth import DepthBuffer, rasterize_depth, vertex_visibility

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

# name -> the submodule that defines it, imported on first access (PEP 562)
_LAZY = {"SplatResult": "splat", "cuda_available": "splat", "select_backend": "splat", "splat": "splat",
         "WATERMARK_TEXT": "watermark", "save_png": "watermark", "stamp_watermark": "watermark",
         "to_uint8": "watermark"}


def __getattr__(name: str) -> Any:
    sub = _LAZY.get(name)
    if sub is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{sub}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package's ``splat`` is the function (as when it was imported eagerly), never the
    submodule of that name: importing ``backend.render.splat`` binds the submodule to the
    package's attribute, which would then hide the function from ``from backend.render import
    splat``. The submodule stays in sys.modules (``from backend.render.splat import ...``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "splat" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
