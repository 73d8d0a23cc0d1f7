"""Per-photo refinement: a short photometric optimisation with the differentiable splatter.

Starting from the analytic avatar at the source pose, Adam adjusts per-Gaussian colours, opacities
(as logits) and small head position offsets (L2-penalised, clamped to ``max_offset_m``) so that the
render at the source camera matches the photo inside the portrait mask, and (``alpha_weight``)
its alpha matches the portrait mask over the whole image: every Gaussian (head and parts: hair,
body, mouth, eyes) is refined against the whole portrait, not the face.

With ``foreground`` (the person's own colour, face.matte.foreground_colors) the colour term is the
whole portrait's, split the way a matte splits a photo: the render (over black) against its own
alpha times the foreground colour, over the whole image, and the alpha against the matte. Colours
then learn the person's colour even where the photo mixes in the background (no halo of background
colour at the silhouette, no darkened edge colours either), and only opacities answer for the
silhouette; together they bound the error against the cut-out person (matte * foreground over
black, what the eval scores). Gaussians the source view
does not cover (the synthesized back and sides) get no step (coverage-scaled updates), so the
refinement never undoes the synthesized texture. Stops at ``max_steps`` or
when ``seconds`` of wall time are used, whichever comes first. Only appearance and a tiny geometry
nudge change: scales and rotations stay those of the mesh so novel views keep their coverage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from .gaussians import GaussianSet

if TYPE_CHECKING:
    from ..render.camera import Camera


@dataclass
class RefineOptions:
    seconds: float = 20.0          # wall-time budget
    max_steps: int = 300
    lr_color: float = 0.02
    lr_opacity: float = 0.05
    lr_offset: float = 2e-4        # metres per step (Adam's step size)
    max_offset_m: float = 0.003    # offsets are clamped to +/- this per axis
    offset_weight: float = 1e3     # L2 penalty on offsets (per m^2, mean over Gaussians)
    ssim_weight: float = 0.2       # loss = (1 - w) L1 + w (1 - SSIM) over the mask
    alpha_weight: float = 0.2      # + this * mean |render alpha - portrait mask| over the image
    full_trust_px: float = 4.0     # a Gaussian covering this many source pixels (sum of alpha*T) moves freely
    backend: str = "auto"
    # torch's intra-op threads while refining on the CPU (None: leave as is). One: the splatter's
    # numba kernels already use every core, and with two threads torch's OpenMP barriers made a
    # step 2-3x slower once other work shared the 2 cores (docs/figures/loop.md).
    cpu_torch_threads: int | None = 1


@dataclass
class RefineResult:
    colors: np.ndarray             # (N, 3)
    opacities: np.ndarray          # (N,)
    offsets: np.ndarray            # (N, 3) world offsets at the source pose (zero where frozen)
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    # wall seconds per phase of the steps: forward (splat), loss, backward, update (Adam + trust)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def _ssim_map(x: torch.Tensor, y: torch.Tensor, win: int = 7) -> torch.Tensor:
    """Mean-filter SSIM map of (1, C, H, W) images in [0, 1] -> (1, C, H, W)."""
    pool = torch.nn.functional.avg_pool2d
    pad = win // 2
    mu_x, mu_y = pool(x, win, 1, pad), pool(y, win, 1, pad)
    sxx = pool(x * x, win, 1, pad) - mu_x ** 2
    syy = pool(y * y, win, 1, pad) - mu_y ** 2
    sxy = pool(x * y, win, 1, pad) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))


def source_coverage(gs: GaussianSet, camera: "Camera", backend: str = "auto") -> torch.Tensor:
    """(N,) float32: each Gaussian's total compositing weight in the source view, in pixels.

    The render is linear in the features, so the gradient of the summed one-channel image with
    respect to a Gaussian's feature is the sum over pixels of its weight alpha * T.
    """
    from ..render.splat import splat

    ones = torch.ones(len(gs.means), 1, requires_grad=True)
    res = splat(torch.from_numpy(gs.means), torch.from_numpy(gs.quats), torch.from_numpy(gs.scales),
                torch.from_numpy(gs.opacities), ones, camera, background=torch.zeros(1), backend=backend)
    res.image.sum().backward()
    return ones.grad[:, 0].detach().cpu()


def refine(gs: GaussianSet, movable: np.ndarray, photo: np.ndarray, mask: np.ndarray, camera: "Camera",
           opts: "RefineOptions | None" = None, on_step: Callable[[int, float], None] | None = None,
           portrait: np.ndarray | None = None, foreground: np.ndarray | None = None) -> RefineResult:
    """Optimise ``gs`` (world frame, source pose) against ``photo``; see :func:`_refine`. On the
    CPU, torch runs with ``opts.cpu_torch_threads`` intra-op threads meanwhile."""
    from ..render.splat import select_backend

    opts = opts or RefineOptions()
    threads = opts.cpu_torch_threads if select_backend(opts.backend) == "cpu" else None
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _refine(gs, movable, photo, mask, camera, opts, on_step, portrait, foreground)
    finally:
        if threads:
            torch.set_num_threads(before)


def _refine(gs: GaussianSet, movable: np.ndarray, photo: np.ndarray, mask: np.ndarray, camera: "Camera",
           opts: RefineOptions | None = None, on_step: Callable[[int, float], None] | None = None,
           portrait: np.ndarray | None = None, foreground: np.ndarray | None = None) -> RefineResult:
    """Optimise ``gs`` (world frame, source pose) against ``photo``.

    movable (N,) bool: Gaussians allowed to move (the head; shoulders stay on their plane).
    photo (H, W, 3) float32 [0, 1], mask (H, W) float32 loss weights (portrait mask).
    portrait (H, W) float32 [0, 1]: the alpha target (default ``mask``).
    foreground (H, W, 3) float32 [0, 1] or None: the person's colour everywhere (see the module
    docstring); when given, the colour target is the render's own alpha (no gradient) times it,
    weighted by ``mask`` (ones: the whole image), and ``photo`` is unused.
    on_step(step, fraction_of_budget) is called after every step (progress / cancellation).
    """
    from ..render.splat import splat

    opts = opts or RefineOptions()
    t0 = time.perf_counter()
    src = photo if foreground is None else foreground
    target = torch.from_numpy(np.ascontiguousarray(np.asarray(src, np.float32).transpose(2, 0, 1)))[None]  # (1, 3, H, W)
    w = torch.from_numpy(np.ascontiguousarray(mask, np.float32))[None, None]           # (1, 1, H, W)
    wsum = w.sum().clamp(min=1.0) * 3
    a_target = torch.from_numpy(np.ascontiguousarray(mask if portrait is None else portrait, np.float32))[None]
    means0 = torch.from_numpy(gs.means)
    quats, scales = torch.from_numpy(gs.quats), torch.from_numpy(gs.scales)
    colors = torch.from_numpy(gs.colors.copy()).requires_grad_(True)
    op = np.clip(gs.opacities, 1e-4, 1 - 1e-4)
    op_logit = torch.from_numpy(np.log(op) - np.log1p(-op)).requires_grad_(True)
    offsets = torch.zeros_like(means0, requires_grad=True)
    mov = torch.from_numpy(np.asarray(movable, np.float32))[:, None]
    # Adam steps every parameter by about its learning rate however small its gradient, so Gaussians
    # the photo barely shows (grazing angles, the closed mouth's interior) would drift to arbitrary
    # colours; each Gaussian's step is scaled by how much of the source view it covers.
    trust = (source_coverage(gs, camera, opts.backend) / opts.full_trust_px).clamp(0.0, 1.0)  # (N,)
    optim = torch.optim.Adam([
        {"params": [colors], "lr": opts.lr_color},
        {"params": [op_logit], "lr": opts.lr_opacity},
        {"params": [offsets], "lr": opts.lr_offset},
    ])
    bg = torch.zeros(3)
    losses: list[float] = []
    step = 0
    # at least one step once asked to refine (the first also pays for any kernel compilation)
    stages = {"forward": 0.0, "loss": 0.0, "backward": 0.0, "update": 0.0}
    clock = time.perf_counter
    while step < opts.max_steps and (step == 0 or time.perf_counter() - t0 < opts.seconds):
        optim.zero_grad(set_to_none=True)
        tp = clock()
        res = splat(means0 + offsets * mov, quats, scales, torch.sigmoid(op_logit), colors, camera,
                    background=bg, backend=opts.backend)
        img = res.image.cpu() if res.image.device.type != "cpu" else res.image
        alpha = res.alpha.cpu() if res.alpha.device.type != "cpu" else res.alpha   # (1, H, W)
        stages["forward"] += clock() - tp
        tp = clock()
        tgt = target if foreground is None else target * alpha.detach()[:, None]
        l1 = ((img - tgt).abs() * w).sum() / wsum
        loss = (1 - opts.ssim_weight) * l1
        if opts.ssim_weight > 0:
            loss = loss + opts.ssim_weight * ((1 - _ssim_map(img, tgt)) * w).sum() / wsum
        if opts.alpha_weight > 0:
            loss = loss + opts.alpha_weight * (alpha - a_target).abs().mean()
        loss = loss + opts.offset_weight * (offsets * mov).pow(2).sum(1).mean()
        stages["loss"] += clock() - tp
        tp = clock()
        loss.backward()
        stages["backward"] += clock() - tp
        tp = clock()
        before = [colors.detach().clone(), op_logit.detach().clone(), offsets.detach().clone()]
        optim.step()
        with torch.no_grad():
            for param, old in zip((colors, op_logit, offsets), before):
                t = trust if param.dim() == 1 else trust[:, None]
                param.copy_(old + t * (param - old))
            colors.clamp_(0.0, 1.0)
            offsets.clamp_(-opts.max_offset_m, opts.max_offset_m)
        losses.append(loss.item())
        stages["update"] += clock() - tp
        step += 1
        if on_step is not None:
            on_step(step, min(1.0, max(step / opts.max_steps, (time.perf_counter() - t0) / opts.seconds)))
    with torch.no_grad():
        return RefineResult(colors.numpy().copy(), torch.sigmoid(op_logit).numpy().copy(),
                            (offsets * mov).numpy().copy(), step, time.perf_counter() - t0, losses, stages)
