"""Named expression / jaw edits of HeadParams (export-ply poses and the build's preview)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..head.params import HeadParams

JAW = 2  # index of the jaw joint in JOINT_NAMES


def expression_index(model: "HeadModel", name: str) -> int:
    """Index of expression ``name`` (exact name, case-insensitive, or a plain integer index)."""
    names = [n.lower() for n in model.expr_names]
    key = name.strip().lower()
    if key in names:
        return names.index(key)
    if key.isdigit() and int(key) < len(names):
        return int(key)
    shown = ", ".join(model.expr_names[:12]) + (" ..." if len(names) > 12 else "")
    raise InputError(None, f"unknown expression '{name}' for head model '{model.name}' (has: {shown})")


def edit_params(model: "HeadModel", base: "HeadParams", expr: dict[str, float] | None = None,
                jaw_deg: float | None = None, neutral: bool = False) -> "HeadParams":
    """A copy of frame 0 of ``base`` with named expression values set and the jaw opened by
    ``jaw_deg`` degrees (rotation about the jaw joint's x axis: positive opens). ``neutral``
    starts from zero expression and pose (keeping the identity)."""
    from ..head.params import HeadParams

    p = base.frame(0)
    expr_arr = np.zeros((1, model.n_expr), np.float32)
    n = min(model.n_expr, p.expr.shape[1])
    if not neutral:
        expr_arr[:, :n] = p.expr[:, :n]
    pose = np.zeros_like(p.pose) if neutral else p.pose.copy()
    transl = np.zeros_like(p.transl) if neutral else p.transl.copy()
    for name, value in (expr or {}).items():
        expr_arr[0, expression_index(model, name)] = float(value)
    if jaw_deg is not None:
        pose[0, JAW] = (math.radians(float(jaw_deg)), 0.0, 0.0)
    return HeadParams(p.shape, expr_arr, pose, transl)


def preview_expression(model: "HeadModel") -> tuple[dict[str, float], float]:
    """A smile + open-jaw edit for the build preview: smile expressions at 0.8 when the model names
    them, else a 15 degree jaw opening alone."""
    smile = {n: 0.8 for n in model.expr_names if "smile" in n.lower()}
    return smile, 15.0
