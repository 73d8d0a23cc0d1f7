"""Load the numba kernels of the CPU splatter and the depth buffer ahead of their first use.

A fresh process pays for loading every cached kernel on its first call (LLVM start-up and the
cached machine code: a few hundred ms in all here). ``preload_kernels_async`` does that on a
background thread while the caller does something else (a build detects the face meanwhile), so
the build's later stages find them loaded. The kernels themselves are compiled once per install
and cached on disk (``cache=True``): in ``__pycache__`` beside the sources, or, when the installed
package is read-only, in the user's cache folder (numba's fallback; tests/render/test_numba_cache.py).
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np


def _tiny_scene():
    """(16x16 Camera, (3, 3) float32 triangle / three points in front of it): the kernels' warm-up input."""
    from .camera import Camera

    return (Camera.look_at((0.0, 0.0, 1.0), width=16, height=16),
            np.array([[-0.1, -0.1, 0.0], [0.1, -0.1, 0.0], [0.0, 0.1, 0.0]], np.float32))


def preload_kernels(exact: bool = True, splat: bool = True) -> None:
    """Call the depth-buffer kernel and (``splat``) the splat and frame-conversion kernels
    (:func:`preload_splat_kernels`, ``exact`` as there) once on tiny inputs of the real dtypes."""
    from .depth import rasterize_depth

    cam, tri = _tiny_scene()
    rasterize_depth(tri, np.array([[0, 1, 2]], np.int64), cam)
    if splat:
        preload_splat_kernels(exact)


def preload_splat_kernels(exact: bool = True) -> None:
    """Call the splat kernels of the previews (RGB over a background, the 8-lane kernel:
    PreviewOptions.simd) and the frame conversion once on tiny inputs.

    ``exact``: also the exact splat kernels (with depth), which source-view renders and the
    refinement use; a build that does neither (no refinement, no metrics) skips them: loading them
    took ~55 ms of Python-bound CPU on the preload thread while detection and the fit, themselves
    Python-bound, waited for the GIL."""
    import torch

    from ._kernels import to_uint8
    from .splat import splat

    cam, tri = _tiny_scene()
    to_uint8(np.zeros((1, 2, 2, 3), np.float32))
    with torch.no_grad():
        if exact:
            splat(tri, np.tile([[1.0, 0.0, 0.0, 0.0]], (3, 1)), np.full((3, 3), 0.01), np.full(3, 0.5),
                  np.full((3, 3), 0.5), cam, background=np.ones(3, np.float32), backend="cpu")
        splat(tri, np.tile([[1.0, 0.0, 0.0, 0.0]], (3, 1)), np.full((3, 3), 0.01), np.full(3, 0.5),
              np.full((3, 3), 0.5), cam, background=np.ones(3, np.float32), backend="cpu", depth=False, simd=True)


def preload_watermark() -> None:
    """Import the watermark (PIL) and draw its text once: the glyphs are cached per process, and the
    first drawing loads PIL's default font, which imports PIL's image plugins (~20 ms of CPU)."""
    from .watermark import WATERMARK_TEXT, _text_mask

    _text_mask(WATERMARK_TEXT)


def run_async(*steps: Callable[[], None], name: str = "omg-kernel-preload") -> threading.Thread:
    """Run ``steps`` one after another on a daemon thread; join it to wait (errors are ignored:
    the real first call raises them where they can be reported)."""

    def run() -> None:
        for f in steps:
            try:
                f()
            except Exception:  # noqa: BLE001 - only a warm-up
                pass

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t


def preload_kernels_async(*also: Callable[[], None], exact: bool = True, splat: bool = True) -> threading.Thread:
    """Start :func:`preload_kernels` (``exact`` and ``splat`` as there), then each of ``also``
    (callers' own kernel warm-ups, e.g. the posing kernels of backend.avatar), on a daemon thread
    (:func:`run_async`)."""
    return run_async(lambda: preload_kernels(exact, splat), *also)
