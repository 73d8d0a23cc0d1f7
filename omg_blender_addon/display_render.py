"""One frame of the scene's own render engine (EEVEE or Cycles) through the Geometry Nodes display.

Render Splats' "scene engine" renderer: the engine renders the scene camera's view (every visible
object, as F12 does) with a transparent film into a scene-linear OpenEXR in a temporary folder,
which is read back and composited over the background here, so the result does not depend on the
scene's view transform, look or world:

- ``colors="LINEAR"``: the splat material decodes the Gaussians' display (sRGB) colours to linear
  light, the engine blends in linear light (what a plain F12 render under the Standard view
  transform shows); the composite over the background is made in linear light and encoded with the
  sRGB curve (= the Standard view transform).
- ``colors="SPLATTER"``: the scene's custom property ``omg_splat_display_colors`` is 1 for the
  render, so the material emits the display values themselves; the engine's blend of them is the
  backend splatter's display-space blend, and the result is written without encoding. Other
  objects' linear-light colours are then written unencoded too, so they look darker than under
  the Standard view transform (as under the Raw one): this mode is for splat-only scenes.

Everything the render changes (resolution, film, output settings, the custom property) is
restored afterwards, also when it fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

import bpy
import numpy as np

from .gaussian_display import DISPLAY_COLORS_PROP

COLOR_MODES = ("LINEAR", "SPLATTER")


def srgb_encode(x: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB display values (the exact piecewise curve), clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def srgb_decode(x: np.ndarray) -> np.ndarray:
    """sRGB display values -> linear light (the exact piecewise curve)."""
    x = np.asarray(x, np.float64)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


@contextmanager
def _settings(scene, width: int, height: int, path: str, display_colors: bool):
    """Set the render settings this frame needs; restore every one afterwards."""
    r, im = scene.render, scene.render.image_settings
    saved = {(r, "resolution_x"): width, (r, "resolution_y"): height, (r, "resolution_percentage"): 100,
             (r, "film_transparent"): True, (r, "filepath"): path, (r, "use_file_extension"): False,
             (im, "file_format"): "OPEN_EXR", (im, "color_mode"): "RGBA", (im, "color_depth"): "32"}
    old = {key: getattr(*key) for key in saved}
    had_prop = DISPLAY_COLORS_PROP in scene.keys()
    old_prop = scene.get(DISPLAY_COLORS_PROP)
    try:
        for (owner, name), value in saved.items():
            setattr(owner, name, value)
        scene[DISPLAY_COLORS_PROP] = 1.0 if display_colors else 0.0
        yield
    finally:
        for (owner, name), value in old.items():
            setattr(owner, name, value)
        if had_prop:
            scene[DISPLAY_COLORS_PROP] = old_prop
        else:
            del scene[DISPLAY_COLORS_PROP]


def render_engine_frame(scene, width: int, height: int, background=(1.0, 1.0, 1.0),
                        colors: str = "SPLATTER") -> np.ndarray:
    """(H, W, 4) float32: the scene engine's render of the current frame, RGB composited over
    ``background`` (display values) in display values, and the alpha; row 0 at the top."""
    if colors not in COLOR_MODES:
        raise ValueError(f"colors must be one of {COLOR_MODES}, not {colors!r}")
    folder = tempfile.mkdtemp(prefix="omg_display_")
    path = os.path.join(folder, "frame.exr")
    try:
        with _settings(scene, int(width), int(height), path, colors == "SPLATTER"):
            bpy.ops.render.render(write_still=True, scene=scene.name)
        img = bpy.data.images.load(path)
        try:
            img.colorspace_settings.is_data = True  # the file's values as written, no conversion
            px = np.empty(len(img.pixels), np.float32)
            img.pixels.foreach_get(px)
            w, h = img.size
        finally:
            bpy.data.images.remove(img)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rgba = px.reshape(h, w, 4)[::-1].astype(np.float64)
    # Blender's float pixels are premultiplied by alpha: over = C + (1 - A) * background
    alpha = np.clip(rgba[..., 3:], 0.0, 1.0)
    bg = np.asarray(background, np.float64)
    if colors == "SPLATTER":
        rgb = np.clip(rgba[..., :3] + (1.0 - alpha) * bg, 0.0, 1.0)
    else:
        rgb = srgb_encode(rgba[..., :3] + (1.0 - alpha) * srgb_decode(bg))
    return np.concatenate([rgb, alpha], -1).astype(np.float32)
