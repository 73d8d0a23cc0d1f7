"""The avatar at a glance: a turntable strip (head yaw -60, -30, 0, +30, +60 degrees) and one
open-mouth, blinking frame, rendered by the backend splatter at the source camera; and the same
for the back of the head (BACK_YAWS), which no photo shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..avatar.gaussians import GaussianAvatar
    from ..head.model import HeadModel

TURNTABLE_YAWS = (-60.0, -30.0, 0.0, 30.0, 60.0)
BACK_YAWS = (120.0, 180.0, -120.0)
OPEN_MOUTH_JAW_DEG = 20.0


def turntable_params(avatar: "GaussianAvatar", model: "HeadModel", yaws=TURNTABLE_YAWS):
    """HeadParams with len(yaws) + 1 frames: the source pose turned by each yaw (degrees, about the
    head's vertical axis), then the source view with the jaw open and both eyes closed (the
    model's blink expressions, when it names them)."""
    from ..avatar.expressions import edit_params
    from ..head.params import HeadParams

    p = avatar.params.frame(0)
    blink = {n: 1.0 for n in model.expr_names if "blink" in n.lower()}
    mouth = edit_params(model, p, expr=blink, jaw_deg=OPEN_MOUTH_JAW_DEG)
    T = len(yaws)
    e = max(p.expr.shape[1], mouth.expr.shape[1])
    expr = np.zeros((T + 1, e), np.float32)
    expr[:T, : p.expr.shape[1]] = p.expr[0]
    expr[T, : mouth.expr.shape[1]] = mouth.expr[0]
    pose = np.concatenate([np.repeat(p.pose, T, 0), mouth.pose], 0)
    pose[:T, 0, 1] += np.radians(np.asarray(yaws, np.float32))
    transl = np.concatenate([np.repeat(p.transl, T, 0), mouth.transl], 0)
    return HeadParams(p.shape, expr, pose, transl)


def turntable_strip(avatar: "GaussianAvatar", model: "HeadModel", lod: int = 2, tile: int = 256,
                    background=(1.0, 1.0, 1.0), backend: str = "auto", yaws: tuple[float, ...] = TURNTABLE_YAWS,
                    expression: bool = True) -> np.ndarray:
    """(tile, n * tile, 3) float32 [0, 1]: the views turned by ``yaws`` (degrees) and, with
    ``expression``, the open-mouth, blinking frame, side by side (each the 512 source-camera render,
    resized to ``tile``); n = len(yaws) + expression."""
    from itertools import islice

    from PIL import Image

    from ..avatar.rendering import render_frames

    n = len(yaws) + bool(expression)
    frames = islice(render_frames(avatar, model, turntable_params(avatar, model, yaws), lod, background=background,
                                  backend=backend), n)
    tiles = [np.asarray(Image.fromarray((np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8)).resize(
        (tile, tile), Image.LANCZOS), np.float32) / 255.0 for f in frames]
    return np.concatenate(tiles, axis=1)
