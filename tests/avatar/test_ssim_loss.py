"""The refinement's fused SSIM term equals autograd through its plain torch twin."""

from __future__ import annotations

import pytest
import torch

from backend.avatar.ssim_loss import ssim_loss, ssim_map_reference


def _pair(batch: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.zeros(batch, 3, h, w), torch.zeros(batch, 3, h, w)
    # non-zero boxes that overlap but differ, inside a black frame: the kernel crops to their box
    x[..., 10:60, 5:50] = torch.rand(batch, 3, 50, 45, generator=g)
    y[..., 12:70, 8:52] = torch.rand(batch, 3, 58, 44, generator=g)
    return x, y, torch.rand(batch, 1, h, w, generator=g)


def _reference(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, win: int) -> tuple[float, torch.Tensor]:
    xd = x.double().requires_grad_(True)
    loss = ((1 - ssim_map_reference(xd, y.double(), win)) * w.double()).sum()
    loss.backward()
    return float(loss.detach()), xd.grad


@pytest.mark.parametrize("batch, h, w, win", [(1, 96, 80, 7), (2, 80, 64, 7), (1, 72, 70, 5)])
def test_fused_ssim_equals_the_reference(batch: int, h: int, w: int, win: int) -> None:
    x, y, wt = _pair(batch, h, w, seed=batch + win)
    ref_loss, ref_grad = _reference(x, y, wt, win)
    xf = x.clone().requires_grad_(True)
    loss = ssim_loss(xf, y, wt, win)
    (3.0 * loss).backward()                      # an upstream factor reaches the gradient
    assert abs(float(loss.detach()) - ref_loss) <= 1e-5 * abs(ref_loss)
    # the gradient of the summed loss is O(1) a pixel here (max about 5)
    assert (xf.grad / 3.0 - ref_grad).abs().max().item() < 1e-5
    assert ref_grad.abs().max().item() > 0.5     # a real gradient, not zeros on both sides


def test_fused_ssim_on_a_whole_image_and_on_identical_images() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 40, 48, generator=g)     # no black frame: the box is the whole image
    y = (x + 0.1 * torch.rand(1, 3, 40, 48, generator=g)).clamp(0, 1)
    wt = torch.ones(1, 1, 40, 48)
    ref_loss, ref_grad = _reference(x, y, wt, 7)
    xf = x.clone().requires_grad_(True)
    loss = ssim_loss(xf, y, wt)
    loss.backward()
    assert abs(float(loss.detach()) - ref_loss) <= 1e-5 * abs(ref_loss)
    assert (xf.grad - ref_grad).abs().max().item() < 1e-5
    same = x.clone().requires_grad_(True)
    zero = ssim_loss(same, x, wt)
    zero.backward()
    assert abs(float(zero)) < 1e-6 and same.grad.abs().max().item() < 1e-6
    black = torch.zeros(1, 3, 16, 16, requires_grad=True)
    assert float(ssim_loss(black, torch.zeros(1, 3, 16, 16), torch.ones(1, 1, 16, 16))) == 0.0
