"""Render speed per LOD and splatting backend: pose + splat of a short head-turn sequence at the
avatar's source camera (512x512). The first frame is a warm-up (numba compiles the CPU splatter,
gsplat compiles its CUDA kernels) and is not timed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..results import RenderTiming
from ..measure import measure
from ...avatar.rendering import render_frames

if TYPE_CHECKING:
    from ...avatar.gaussians import GaussianAvatar
    from ...head.model import HeadModel
    from ...head.params import HeadParams


def turn_sequence(params: "HeadParams", frames: int, max_yaw_deg: float = 15.0) -> "HeadParams":
    """``frames`` copies of frame 0 of ``params`` with the global yaw swept over +/- max_yaw_deg."""
    from ...head.params import HeadParams

    p = params.frame(0)
    pose = np.repeat(p.pose, frames, axis=0)
    pose[:, 0, 1] += np.radians(np.linspace(-max_yaw_deg, max_yaw_deg, frames)).astype(np.float32)
    return HeadParams(p.shape, np.repeat(p.expr, frames, 0), pose, np.repeat(p.transl, frames, 0))


def available_backends() -> list[str]:
    from ...render import cuda_available

    return ["cpu", "cuda"] if cuda_available() else ["cpu"]


def render_speed(avatar: "GaussianAvatar", model: "HeadModel", lods, backends=None,
                 frames: int = 8) -> list[RenderTiming]:
    """Frames per second per LOD and backend: posing (vectorized over the frames) and splatting
    (one frame per call, as in interactive use, image copied to the host) timed separately."""
    import torch

    from ...avatar.pose_torch import TorchPoser
    from ...render import splat

    backends = backends or available_backends()
    out: list[RenderTiming] = []
    seq = _tail(turn_sequence(avatar.params, frames + 1))
    cam = avatar.camera
    bg = np.zeros(3, np.float32)
    for backend in backends:
        cuda = backend == "cuda"
        for lod in lods:
            rest = avatar.rest_set(lod)
            args = [torch.as_tensor(a) for a in (rest.scales, rest.opacities, rest.colors)]
            if cuda:
                args = [a.cuda() for a in args]
            poser = TorchPoser(avatar, model, lod, "cuda" if cuda else "cpu")
            # warm-up (compilation, caches): not timed
            next(render_frames(avatar, model, avatar.params, lod, backend=backend, chunk=1))
            with measure(cuda=cuda) as mp, torch.no_grad():
                posed = poser.pose_params(seq)                          # (T, N, ...) on the device
            with measure(cuda=cuda) as ms, torch.no_grad():
                for t in range(frames):
                    scales = args[0] if posed.growth is None else args[0] * posed.growth[t][:, None]
                    res = splat(posed.means[t], posed.quats[t], scales, *args[1:], cam, background=bg, backend=backend)
                    res.image.cpu()
            out.append(RenderTiming(lod=lod, backend=backend, n_gaussians=avatar.counts()[lod]["total"],
                                    width=cam.width, height=cam.height, frames=frames,
                                    seconds=mp.seconds + ms.seconds, pose_seconds=mp.seconds,
                                    peak_rss_mb=max(mp.peak_rss_mb, ms.peak_rss_mb), peak_cuda_mb=ms.peak_cuda_mb))
            if cuda:
                torch.cuda.empty_cache()
    return out


def _tail(params: "HeadParams") -> "HeadParams":
    from ...head.params import HeadParams

    return HeadParams(params.shape, params.expr[1:], params.pose[1:], params.transl[1:])
