"""Face captures <-> motions: an ARKit capture mapped onto head-model parameters (a take file that
load_motion, Apply Track and retarget read), and a motion written back as ARKit channels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..head.model import N_JOINTS
from ..head.params import HeadParams
from .arkit import SOURCE_NAMES, MapEntry, resolve_mapping, sources_to_targets, targets_to_sources, upgrade_mapping
from .capture import Capture
from .files import Motion
from .frames import resample

TAKE_FORMAT = "omg-head-params"


def capture_to_motion(cap: Capture, mapping: list[MapEntry], expr_names: list[str], n_shape: int,
                      fps: float | None = None, mapping_path: str | Path | None = None) -> tuple[Motion, list[str]]:
    """Map ``cap`` onto the head model (``expr_names``, ``n_shape`` identity coefficients at 0) and
    resample to ``fps`` (None = the capture's rate) as retarget does. Returns the motion and the
    capture's channels the mapping leaves unused. A mapping onto the stand-in's old 24 expressions
    is converted to ARKit-52 (arkit.upgrade_mapping); InputError naming ``mapping_path`` on a target
    still unknown."""
    mapping = resolve_mapping(mapping, expr_names, mapping_path)
    expr, pose, unused = sources_to_targets(cap.values, cap.names, mapping, expr_names)
    T = cap.n_frames
    params = HeadParams(np.zeros(n_shape, np.float32), expr, pose, np.zeros((T, 3), np.float32))
    out_fps = cap.fps
    if fps is not None and abs(fps - cap.fps) > 1e-6:
        params, out_fps = resample(params, cap.fps, fps), float(fps)
    motion = Motion(params, float(out_fps), cap.source, None, np.ones(params.n_frames, np.float32), list(expr_names))
    return motion, unused


def save_take(motion: Motion, path: str | Path, start_seconds: float = 0.0) -> Path:
    """Write ``motion`` as a HeadParams .npz carrying its fps, source, expression names and start
    time (read back by load_motion). Atomic; returns the path written."""
    from ..output_safety import atomic_path

    p = motion.params
    target = Path(path) if str(path).endswith(".npz") else Path(f"{path}.npz")
    meta = {"format": TAKE_FORMAT, "version": 1, "fps": float(motion.fps), "source": motion.source,
            "expr_names": list(motion.expr_names or []), "start_seconds": float(start_seconds)}
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, shape=p.shape, expr=p.expr, pose=p.pose, transl=p.transl,
                 meta=np.array(json.dumps(meta)))
    return target


def motion_to_capture(motion: Motion, mapping: list[MapEntry], expr_names: list[str],
                      start_seconds: float = 0.0) -> Capture:
    """ARKit channels (52 weights + 9 angles) of ``motion`` by the inverse of ``mapping``
    (arkit.targets_to_sources: lossy where the map is many-to-one or leaves channels out).
    ``expr_names``: the motion's expression column names."""
    p = motion.params
    mapping, _ = upgrade_mapping(mapping, list(expr_names))
    E = len(expr_names)
    expr = np.zeros((p.n_frames, E), np.float32)
    k = min(E, p.expr.shape[1])
    expr[:, :k] = p.expr[:, :k]
    usable = [e for e in mapping if e.target in expr_names or "." in e.target]
    values = targets_to_sources(expr, p.pose.reshape(-1, N_JOINTS, 3), usable, list(expr_names))
    return Capture(values, list(SOURCE_NAMES), float(motion.fps), start_seconds, motion.source)
