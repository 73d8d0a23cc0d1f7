"""Our EWA projection vs gsplat 1.5.3's pure-torch reference (gsplat/cuda/_torch_impl.py).

In float64 the two agree to round-off (means2d 1e-9 px, conics 1e-8 relative, identical radii
and culling). In float32, against the float64 truth: means2d 1e-3 px, depths 1e-6 m, conic error
below 1e-4 relative (gsplat's own float32 reaches ~6% on needle-like huge Gaussians: we avoid the
cancellation in det = a c - b^2),
radii within +-1 px where ceil() meets round-off, equal for at least 99% of the Gaussians.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.render import Camera
from backend.render import _reference as ref
from backend.render.projection import project_gaussians
from backend.render.scenes import random_scene
from backend.rotations import matrix_to_quat, quat_to_matrix_torch

import gsplat.cuda._torch_impl as gs  # dev requirement: missing -> the run fails, never skips


def _cameras(width: int, height: int) -> list[Camera]:
    base = Camera.look_at((0.0, 0.0, 0.6), (0.0, 0.0, 0.0), width=width, height=height, fov_y_deg=25.0)
    off_centre = Camera(
        K=np.array([[150.0, 0, 20.0], [0, 170.0, 50.0], [0, 0, 1]], np.float32),
        viewmat=base.orbit_yaw(-40.0).viewmat, width=width, height=height,
    )  # fmt: skip
    return [base, base.orbit_yaw(75.0), off_centre, base.orbit_yaw(180.0, pivot=(0, 0, 0.3))]


def _scene(n: int, seed: int):
    s = random_scene(n, seed=seed, extent=0.3, scale_range=(1e-5, 0.2))
    means = s.means.clone()
    means[: n // 10] += torch.tensor([0.0, 0.0, 0.7])  # behind / at the camera for the +Z views
    means[n // 10 : n // 5] *= 8.0  # far off-screen
    return means, s.quats, s.scales, s.opacities


def _both(seed: int, dtype: torch.dtype, project=project_gaussians):
    W, H = 96, 80
    cams = _cameras(W, H)
    means, quats, scales, _ = (t.to(dtype) for t in _scene(2000, seed))
    viewmats = torch.from_numpy(np.stack([c.viewmat for c in cams])).to(dtype)
    Ks = torch.from_numpy(np.stack([c.K for c in cams])).to(dtype)
    covars, _ = gs._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    ref = gs._fully_fused_projection(means, covars, viewmats, Ks, W, H)  # radii, means2d, depths, conics, _
    B = len(cams)
    ours = project(
        means.expand(B, -1, -1), quats.expand(B, -1, -1), scales.expand(B, -1, -1), viewmats, Ks, W, H
    )
    return ours, ref


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projection_matches_gsplat_torch_impl_float64(seed: int) -> None:
    """The plain-torch twin (_reference.project_gaussians) uses gsplat's formulas: in float64
    everything agrees to round-off."""
    ours, (radii_ref, m2_ref, depth_ref, conic_ref, _) = _both(seed, torch.float64, ref.project_gaussians)
    valid_ref = (radii_ref > 0).all(-1)
    valid = (ours.radii > 0).all(-1)
    assert valid_ref.sum() > 1000 and (~valid_ref).sum() > 500  # both kinds present
    assert torch.equal(valid, valid_ref)
    torch.testing.assert_close(ours.depths, depth_ref, atol=1e-12, rtol=1e-12)
    v = valid_ref
    torch.testing.assert_close(ours.means2d[v], m2_ref[v], atol=1e-9, rtol=1e-9)
    scale = conic_ref[v].abs().amax(-1, keepdim=True)
    torch.testing.assert_close(ours.conics[v] / scale, conic_ref[v] / scale, atol=1e-8, rtol=0)
    assert torch.equal(ours.radii[v], radii_ref[v])


@pytest.mark.parametrize("seed", [0, 1])
def test_projection_float32_no_worse_than_gsplat(seed: int) -> None:
    """In float32 gsplat loses digits on needle-like huge Gaussians (cancellation in a c - b^2);
    we compute the determinant by Cauchy-Binet, so against float64 gsplat our conic error is
    below 1e-4 relative everywhere and never worse than gsplat's own float32 error + 1e-5."""
    ours, (radii, m2, depth, conic, _) = _both(seed, torch.float32)
    _, (radii64, m2_64, depth64, conic64, _) = _both(seed, torch.float64)
    valid = (radii64 > 0).all(-1)
    assert torch.equal((ours.radii > 0).all(-1), valid)
    v = valid
    torch.testing.assert_close(ours.means2d[v].double(), m2_64[v], atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(ours.depths.double(), depth64, atol=1e-6, rtol=1e-6)
    scale = conic64[v].abs().amax(-1, keepdim=True)
    err_ours = ((ours.conics[v].double() - conic64[v]) / scale).abs().amax(-1)
    err_gs = ((conic[v].double() - conic64[v]) / scale).abs().amax(-1)
    assert err_ours.max() < 1e-4
    assert (err_ours <= err_gs + 1e-5).all()
    dr = (ours.radii[v] - radii64[v]).abs()
    assert dr.max() <= 1 and (dr == 0).float().mean() > 0.99


@pytest.mark.parametrize("with_opacity", [False, True])
def test_numba_projection_matches_torch_twin_forward_and_backward(with_opacity: bool) -> None:
    """The numba kernels (float64 inside) vs autograd through _reference.project_gaussians in
    float64: outputs to float32 round-off, gradients to 1e-4 of their largest magnitude."""
    W, H = 96, 80
    cams = _cameras(W, H)
    B = len(cams)
    means, quats, scales, opac = _scene(1500, 5)
    viewmats = torch.from_numpy(np.stack([c.viewmat for c in cams]))
    Ks = torch.from_numpy(np.stack([c.K for c in cams]))
    op = opac.expand(B, -1) if with_opacity else None
    g = torch.Generator().manual_seed(1)
    w_m2, w_co, w_d = torch.randn(B, 1500, 2, generator=g), torch.randn(B, 1500, 3, generator=g), torch.randn(B, 1500, generator=g)

    def run(fn, dtype):
        ins = [t.to(dtype).expand(B, -1, -1).clone().requires_grad_(True) for t in (means, quats, scales)]
        p = fn(*ins, viewmats.to(dtype), Ks.to(dtype), W, H, opacities=None if op is None else op.to(dtype))
        valid = (p.radii > 0).any(-1)
        # culled Gaussians have no screen-space values (the rasterizer never reads them): mask them
        loss = ((p.means2d * w_m2).sum(-1) * valid).sum() + ((p.conics * w_co).sum(-1) * valid).sum()
        loss = loss + (p.depths * w_d).sum()
        return p, torch.autograd.grad(loss.double(), ins)

    ours, g_ours = run(project_gaussians, torch.float32)
    theirs, g_ref = run(ref.project_gaussians, torch.float64)
    assert torch.equal(ours.radii, theirs.radii.to(torch.int32))
    v = (theirs.radii > 0).any(-1)
    torch.testing.assert_close(ours.means2d[v].double(), theirs.means2d[v], atol=2e-4, rtol=1e-6)
    torch.testing.assert_close(ours.depths.double(), theirs.depths, atol=1e-6, rtol=1e-6)
    scale = theirs.conics[v].abs().amax(-1, keepdim=True)
    torch.testing.assert_close(ours.conics[v].double() / scale, theirs.conics[v] / scale, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.extents[v].double(), theirs.extents[v].double(), atol=1e-3, rtol=1e-5)
    for name, a, b in zip(["means", "quats", "scales"], g_ours, g_ref):
        s = b.abs().amax(dim=-1, keepdim=True).clamp(min=1e-6 * b.abs().max())  # per-Gaussian scale
        torch.testing.assert_close(a.double() / s, b / s, atol=1e-4, rtol=0, msg=name)


def test_opacity_aware_radii_are_tighter_and_cull_transparent() -> None:
    cam = _cameras(64, 64)[0]
    means, quats, scales, _ = _scene(500, 3)
    opac = torch.linspace(0.0, 1.0, 500)
    vm, K = torch.from_numpy(cam.viewmat)[None], torch.from_numpy(cam.K)[None]
    plain = project_gaussians(means[None], quats[None], scales[None], vm, K, 64, 64)
    tight = project_gaussians(means[None], quats[None], scales[None], vm, K, 64, 64, opacities=opac[None])
    assert (tight.radii <= plain.radii).all()
    assert (tight.radii[0, opac < 1 / 255] == 0).all()
    # extend = sqrt(2 ln(255 opacity)) < 3.33 for opacity < exp(3.33^2 / 2) / 255 ~ 1.0
    k = 250
    ext = np.sqrt(2 * np.log(255 * opac[k].item()))
    if tight.radii[0, k, 0] > 0:
        np.testing.assert_allclose(tight.extents[0, k] / plain.extents[0, k], ext / 3.33, rtol=1e-4)


def test_quaternion_helpers_roundtrip() -> None:
    q = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
    R = quat_to_matrix_torch(q)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3).expand(100, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(R, gs._quat_to_rotmat(q), atol=1e-6, rtol=0)  # gsplat's own, independent
    q2 = torch.from_numpy(matrix_to_quat(R.double().numpy())).float()
    torch.testing.assert_close(quat_to_matrix_torch(q2), R, atol=1e-5, rtol=0)
