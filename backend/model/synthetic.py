"""A synthetic talking-head dataset in the training format: renders of a head model (the stand-in in
tests) with per-clip identity, texture, clothing and background, and per-frame expression and pose,
splatted with our own renderer. Used to prove the training pipeline learns, without any real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..face.crop import crop_intrinsics, crop_viewmat
from ..head.lbs import HeadModelTensors, lbs
from ..head.lod import build_lods
from ..head.model import HeadModel
from ..head.params import HeadParams
from ..render import Camera, splat
from .data import DatasetWriter
from .omg import HeadPose, shoulder_transform_for


def _texture(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) RGB in [0, 1]: skin tone + smooth random pattern + darker 'hair' on the top/back."""
    skin = rng.uniform([0.45, 0.3, 0.2], [0.95, 0.75, 0.6])
    hair = rng.uniform(0.05, 0.5, 3)
    col = np.tile(skin, (len(points), 1))
    for _ in range(3):  # smooth coloured waves: a per-identity texture the network must read
        k = rng.normal(0, 60, 3)
        amp = rng.uniform(0.05, 0.2, 3)
        col += amp * np.sin(points @ k + rng.uniform(0, 2 * np.pi))[:, None]
    top = (points[:, 1] > 0.06 - 0.1 * np.clip(-points[:, 2] / 0.1, 0, 1)).astype(np.float64)
    col = col * (1 - top[:, None]) + hair * top[:, None]
    return np.clip(col, 0, 1).astype(np.float32)


def _torso(rng: np.random.Generator, n_side: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Rest-frame shoulder slab points (N, 3) below the neck and their colours (N, 3)."""
    x, y = np.meshgrid(np.linspace(-0.2, 0.2, n_side), np.linspace(-0.32, -0.14, n_side // 2))
    keep = np.abs(x) > 0.05 + 0.5 * np.clip(y + 0.14, 0, None) * 0  # leave room for the neck at the top
    keep &= ~((np.abs(x) < 0.06) & (y > -0.2))
    pts = np.stack([x[keep], y[keep] - 0.02 * (x[keep] / 0.2) ** 2, np.full(keep.sum(), -0.04)], 1)
    cloth = rng.uniform(0.1, 0.9, 3)
    col = np.clip(cloth + 0.1 * np.sin(pts[:, :1] * 40), 0, 1)
    return pts.astype(np.float32), col.astype(np.float32)


def render_synthetic_frame(heads: HeadModelTensors, U, colors: np.ndarray, torso: tuple[np.ndarray, np.ndarray],
                           params: HeadParams, t: int, camera: Camera, background: np.ndarray,
                           scale: float) -> tuple[np.ndarray, np.ndarray]:
    """One frame: (S, S, 3) uint8 image with background and (S, S) float32 portrait mask (alpha)."""
    with torch.no_grad():
        out = lbs(heads, torch.as_tensor(params.shape)[None], torch.as_tensor(params.expr[t:t + 1]),
                  torch.as_tensor(params.pose[t:t + 1]), torch.as_tensor(params.transl[t:t + 1]))
        verts = U @ out.vertices[0].numpy()
        M = shoulder_transform_for(heads, HeadPose.from_params(params, t)).numpy()
    tp = torso[0] @ M[:3, :3].T + M[:3, 3]
    means = np.concatenate([verts, tp]).astype(np.float32)
    n = len(means)
    quats = np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1))
    scales = np.full((n, 3), scale, np.float32)
    scales[len(verts):] = 0.006
    res = splat(means, quats, scales, np.full(n, 0.99, np.float32), np.concatenate([colors, torso[1]]),
                camera, background=torch.as_tensor(background, dtype=torch.float32), backend="cpu")
    img = res.image[0].permute(1, 2, 0).numpy()
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), res.alpha[0].numpy()


def make_synthetic_dataset(root: str | Path, model: HeadModel, n_clips: int = 3, n_frames: int = 6,
                           size: int = 128, seed: int = 0, names: list[str] | None = None,
                           frame_seed: int | None = None) -> Path:
    """Write ``n_clips`` clips of ``n_frames`` frames at ``size`` px into ``root``; returns dataset.json.

    ``seed`` draws the identities (shape, texture, clothes, background); ``frame_seed`` (default: the
    same stream) the per-frame expressions and poses, so held-out frames of the same people can be made."""
    rng = np.random.default_rng(seed)
    frng = rng if frame_seed is None else np.random.default_rng(frame_seed)
    heads = HeadModelTensors.from_model(model)
    lod = build_lods(model.faces, model.n_verts, (1,))[0]
    U = lod.upsample
    camera = Camera(crop_intrinsics(size), crop_viewmat(), size, size)  # the face module's source camera
    writer = DatasetWriter(root, size, model.name, None, model.n_verts)
    rest = U @ model.v_template
    edge = np.linalg.norm(rest[lod.faces[:, 0]] - rest[lod.faces[:, 1]], axis=1).mean()
    for c in range(n_clips):
        shape = rng.normal(0, 1.0, model.n_shape).astype(np.float32)
        colors = _texture(rest, rng)
        torso = _torso(rng)
        bg = rng.uniform(0, 1, 3).astype(np.float32)
        expr = np.clip(frng.normal(0, 0.4, (n_frames, model.n_expr)), 0, 1).astype(np.float32)
        pose = np.zeros((n_frames, 5, 3), np.float32)
        pose[:, 0] = frng.uniform(-0.25, 0.25, (n_frames, 3)) * np.array([0.6, 1.0, 0.3])  # pitch, yaw, roll
        pose[:, 1] = frng.uniform(-0.1, 0.1, (n_frames, 3))
        pose[:, 2, 0] = frng.uniform(0, 0.25, n_frames)                                     # jaw opening
        transl = frng.uniform(-0.01, 0.01, (n_frames, 3)).astype(np.float32)
        params = HeadParams(shape, expr, pose, transl)
        frames, masks = zip(*[render_synthetic_frame(heads, U, colors, torso, params, t, camera, bg, 0.6 * edge)
                              for t in range(n_frames)])
        name = names[c] if names else f"clip{c:03d}"
        writer.add_clip(name, frames, masks, params, [camera] * n_frames, fps=25.0)
    return writer.close()
