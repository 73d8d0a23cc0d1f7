"""Training losses: L2 + SSIM + a perceptual term on frozen DINOv2 features, plus the offset penalty."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .dinov2 import DinoV2, preprocess


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # [1, 1, k, k]


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of images (B, C, H, W) in [0, 1] (Gaussian window, valid region, C1/C2 of Wang et al.)."""
    C = a.shape[1]
    w = _gaussian_window(window, sigma, a.device).expand(C, 1, window, window)
    mu_a, mu_b = F.conv2d(a, w, groups=C), F.conv2d(b, w, groups=C)
    saa = F.conv2d(a * a, w, groups=C) - mu_a**2
    sbb = F.conv2d(b * b, w, groups=C) - mu_b**2
    sab = F.conv2d(a * b, w, groups=C) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return s.mean()


def perceptual(dino: DinoV2, a: torch.Tensor, b: torch.Tensor, size: int) -> torch.Tensor:
    """Mean squared distance of DINOv2 patch tokens of a and b (B, 3, H, W) at ``size`` (multiple of 14).

    DINOv2 is frozen (no parameter gradients) but differentiable w.r.t. its input ``a``."""
    fa = dino(preprocess(a, size)).tokens
    with torch.no_grad():
        fb = dino(preprocess(b, size)).tokens
    return F.mse_loss(fa, fb)


@dataclass
class LossWeights:
    l2: float = 1.0
    ssim: float = 0.2
    perceptual: float = 0.1
    coarse: float = 1.0     # weight of the coarse (splatted RGB) image terms
    refined: float = 1.0    # weight of the refined (UNet) image terms
    offset: float = 10.0    # on the mean squared vertex offset (metres^2 -> small)


def image_terms(pred: torch.Tensor, target: torch.Tensor, dino: DinoV2 | None, w: LossWeights,
                perceptual_size: int) -> dict[str, torch.Tensor]:
    """L2, 1 - SSIM and the perceptual term of pred vs target (B, 3, H, W)."""
    out = {"l2": F.mse_loss(pred, target), "dssim": 1.0 - ssim(pred, target)}
    if dino is not None and w.perceptual > 0:
        out["perceptual"] = perceptual(dino, pred, target, perceptual_size)
    return out


def total_loss(coarse: torch.Tensor, refined: torch.Tensor, target: torch.Tensor, offsets: torch.Tensor,
               dino: DinoV2 | None, w: LossWeights, perceptual_size: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over coarse and refined images + the offset regularizer; returns (loss, parts)."""
    parts: dict[str, torch.Tensor] = {}
    total = offsets.new_zeros(())
    for name, img, k in (("coarse", coarse, w.coarse), ("refined", refined, w.refined)):
        terms = image_terms(img, target, dino, w, perceptual_size)
        for t, v in terms.items():
            parts[f"{name}_{t}"] = v
        total = total + k * (w.l2 * terms["l2"] + w.ssim * terms["dssim"]
                             + w.perceptual * terms.get("perceptual", offsets.new_zeros(())))
    parts["offset"] = offsets.pow(2).sum(-1).mean()
    total = total + w.offset * parts["offset"] * 1e4  # offsets are ~1e-2 m: scale to O(1)
    return total, {k: float(v.detach()) for k, v in parts.items()}
