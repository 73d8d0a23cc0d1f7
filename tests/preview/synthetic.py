"""A synthetic talking-head clip with a known performance, rendered by our own splatter.

The avatar (built from the public-domain astronaut) is posed with a known jaw-open sine and a known
smile curve, splatted with backend.render.splat and written as an H.264 mp4, so tests can check that
tracking/retargeting recovers the curves it was made from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

JAW = 2          # JOINT_NAMES index of the jaw
# mediapipe face-mesh inner lip contour (landmark ids)
INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
JAW_AXIS = 0     # jaw opens about the model x axis (positive = open)


@dataclass
class SyntheticClip:
    """path: mp4; params: the HeadParams (T frames) it was rendered from; jaw: (T,) known jaw
    rotation (rad); smile: (T,) known smile coefficient (0 when the model has none); fps."""

    path: Path
    params: object
    jaw: np.ndarray
    smile: np.ndarray
    fps: float


def darken_mouth(avatar, model, jaw: float = 0.28, stretch_min: float = 1.5) -> int:
    """Give the LOD-0 avatar a dark mouth inside, so its opening shows in renders like a real one.

    The mouth's inside = LOD-0 Gaussians between the mouth corners, near the lip line, whose mesh
    edges stretch more than ``stretch_min`` times when the jaw opens by ``jaw`` rad. They become
    dark red and no larger than the median Gaussian (the build may colour and size them to close
    the lips, which hides the jaw from a tracker). Returns how many were changed.
    """
    from backend.avatar.posing import lbs_numpy
    from backend.head.params import HeadParams

    z = HeadParams.zeros(model, 2)
    z.shape = avatar.params.shape
    z.pose[1, JAW, JAW_AXIS] = jaw
    v = lbs_numpy(model, z)[0]                                               # (2, V, 3)
    e = np.concatenate([model.faces[:, [0, 1]], model.faces[:, [1, 2]], model.faces[:, [2, 0]]])
    ratio = (np.linalg.norm(v[1][e[:, 0]] - v[1][e[:, 1]], axis=1)
             / np.maximum(np.linalg.norm(v[0][e[:, 0]] - v[0][e[:, 1]], axis=1), 1e-12))
    stretch = np.zeros(model.n_verts)
    np.maximum.at(stretch, e[:, 0], ratio)
    np.maximum.at(stretch, e[:, 1], ratio)
    ring = model.landmarks.points(v[0], model.faces)[list(INNER_LIP)]
    c = ring.mean(0)
    half_w = 0.5 * float(np.ptp(ring[:, 0]))
    near = ((np.abs(v[0][:, 0] - c[0]) < half_w) & (np.abs(v[0][:, 1] - c[1]) < max(0.4 * half_w, 0.004))
            & (v[0][:, 2] > c[2] - 0.03))
    mask = np.zeros(len(avatar.lods[0]), bool)
    mask[: model.n_verts] = (stretch > stretch_min) & near
    g = avatar.lods[0]
    g.colors[mask] = (0.12, 0.04, 0.04)
    g.scales[mask] = np.minimum(g.scales[mask], np.median(g.scales, 0))
    return int(mask.sum())


def performance(avatar, model, n_frames: int, period: float = 16.0, jaw_max: float = 0.28,
                smile_max: float = 0.8):
    """HeadParams (T = n_frames): the avatar's source frame with the jaw opening and closing
    (raised cosine, 0 .. jaw_max rad, ``period`` frames) and a slower smile (phase-shifted), plus
    a small head turn so the tracker also sees pose changes."""
    from backend.head.params import HeadParams

    t = np.arange(n_frames, dtype=np.float32)
    jaw = jaw_max * 0.5 * (1.0 - np.cos(2.0 * np.pi * t / period))
    smile = smile_max * 0.5 * (1.0 - np.cos(2.0 * np.pi * t / (2.3 * period) + 1.0))
    src = avatar.params
    expr = np.repeat(src.expr[:1], n_frames, 0).copy()
    pose = np.repeat(src.pose[:1], n_frames, 0).copy()
    transl = np.repeat(src.transl[:1], n_frames, 0).copy()
    pose[:, JAW, :] = 0.0
    pose[:, JAW, JAW_AXIS] = jaw
    names = list(model.expr_names)
    if "jawOpen" in names:  # the jaw joint alone carries the opening
        expr[:, names.index("jawOpen")] = 0.0
    if "mouthSmileLeft" in names and "mouthSmileRight" in names:
        expr[:, names.index("mouthSmileLeft")] = smile
        expr[:, names.index("mouthSmileRight")] = smile
    else:
        smile = np.zeros(n_frames, np.float32)
    pose[:, 1, 1] = 0.08 * np.sin(2.0 * np.pi * t / (3.1 * period))  # neck yaw
    return HeadParams(src.shape, expr, pose, transl), jaw, smile


def render_clip(avatar, model, params, path: Path, size: int = 192, fps: float = 25.0, lod: int = 0,
                batch: int = 4) -> Path:
    """Splat every frame of ``params`` from the avatar's source camera at ``size`` px and write an mp4."""
    from backend.avatar import pose
    from backend.face.video import write_video
    from backend.render import splat, to_uint8

    rest = avatar.rest_set(lod)
    cam = avatar.camera.resized(size, size)
    frames = []
    for t0 in range(0, params.n_frames, batch):
        sl = slice(t0, min(params.n_frames, t0 + batch))
        from backend.head.params import HeadParams

        sub = HeadParams(params.shape, params.expr[sl], params.pose[sl], params.transl[sl])
        means = pose(avatar, model, sub, lod)
        res = splat(means, rest.quats, rest.scales, rest.opacities, rest.colors, cam,
                    background=np.ones(3, np.float32), backend="cpu")
        frames += [to_uint8(img) for img in res.image]
    write_video(path, frames, fps)
    return Path(path)


def make_clip(avatar, model, folder: Path, n_frames: int = 32, size: int = 192, fps: float = 25.0) -> SyntheticClip:
    params, jaw, smile = performance(avatar, model, n_frames)
    path = render_clip(avatar, model, params, Path(folder) / "synthetic.mp4", size=size, fps=fps)
    return SyntheticClip(path, params, jaw, smile, fps)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / den) if den > 0 else 0.0


# -- shared, built once per test session (both tests/preview and tests/blender import this module) --
_CACHE: dict[str, object] = {}


def astronaut_avatar(folder: Path):
    """(avatar, model, path): the astronaut avatar, LOD 0 only, no refinement, dark mouth inside
    (darken_mouth), saved as .omgavatar.
    Built once per test session (about 10 s) and shared by every test that imports this module.
    The file is saved again into ``folder`` when the earlier caller's folder is gone (pytest removes
    a passed test's tmp_path: tmp_path_retention_policy)."""
    from backend.avatar import save_avatar

    if "avatar" not in _CACHE:
        from backend.avatar import build_avatar
        from backend.avatar.build import BuildOptions

        result = build_avatar(None, BuildOptions(lods=(0,), refine=False, metrics=False))
        darken_mouth(result.avatar, result.model)
        path = save_avatar(result.avatar, Path(folder) / "astronaut.omgavatar")
        _CACHE["avatar"] = (result.avatar, result.model, path)
    avatar, model, path = _CACHE["avatar"]
    if not Path(path).is_file():
        _CACHE["avatar"] = (avatar, model, save_avatar(avatar, Path(folder) / "astronaut.omgavatar"))
    return _CACHE["avatar"]


def synthetic_clip(folder: Path, n_frames: int = 32, size: int = 192) -> SyntheticClip:
    """The synthetic clip of the astronaut avatar (rendered once per session)."""
    key = f"clip{n_frames}x{size}"
    if key not in _CACHE or not Path(_CACHE[key].path).is_file():  # (its folder may be gone: astronaut_avatar)
        avatar, model, _ = astronaut_avatar(folder)
        out = Path(folder) / key
        out.mkdir(parents=True, exist_ok=True)
        _CACHE[key] = make_clip(avatar, model, out, n_frames=n_frames, size=size)
    return _CACHE[key]


def watermark_present(rgb: np.ndarray) -> bool:
    """True when the bottom-right corner holds the dark watermark box with light text in it, on a
    frame whose opposite corner is the light background (preview frames use a white background)."""
    from backend.render.watermark import _text_mask, watermark_scale

    H, W = rgb.shape[:2]
    s = watermark_scale(H)
    mh, mw = _text_mask("AI-generated").shape
    bh, bw = mh * s + 6 * s, mw * s + 6 * s
    box = rgb[H - 2 * s - bh + s: H - 2 * s - s, W - 2 * s - bw + s: W - 2 * s - s].astype(np.float32)
    lum = box.mean(-1)
    dark = np.mean(lum < 110)
    light = np.mean(lum > 180)
    return bool(dark > 0.4 and light > 0.05)


def same_standin() -> str:
    """Child-script line pointing Blender's backend at this process's stand-in head-model cache, so
    the avatar built here and the add-on in the child use the very same stand-in file."""
    from backend.head.standin import standin_path

    folder = str(standin_path().parent.parent)  # <cache>/head/standin_v*.npz -> <cache>
    return f"os.environ['OMG_AVATAR_CACHE'] = {folder!r}\n"
