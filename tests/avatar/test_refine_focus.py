"""Focus steps (RefineOptions.focus_steps): refinement steps that render only a crop around the face."""

from __future__ import annotations

import numpy as np
import torch

from backend.avatar.refine import RefineOptions, RefineView, _focus_crop, _focus_ids, refine
from backend.render import Camera, splat
from tests.avatar.test_refine import _scene


H, W = 112, 128


def _camera() -> Camera:
    """The scene's 10 cm fill the image: a crop shows part of the Gaussians."""
    return Camera.look_at((0.0, 0.0, 0.5), width=W, height=H, fov_y_deg=10.0)


def _focus() -> np.ndarray:
    f = np.zeros((H, W), bool)
    f[50:61, 60:70] = True
    return f


def test_the_crop_is_the_focus_box_grown_to_tiles_and_renders_the_same_pixels() -> None:
    gs, _ = _scene()
    cam = _camera()
    crop = _focus_crop(RefineView(cam, None, None, focus=_focus()), RefineOptions(focus_margin_px=4))
    # rows 50..60 grown by 4 -> 46..64, out to tiles -> 32..80; columns 60..69 -> 56..73 -> 48..80
    assert crop.box == (32, 80, 48, 80)
    assert (crop.camera.width, crop.camera.height) == (32, 48)
    y0, y1, x0, x1 = crop.box
    full = splat(gs.means, gs.quats, gs.scales, gs.opacities, gs.colors, cam, background=np.zeros(3),
                 backend="cpu", depth=False)
    part = splat(gs.means, gs.quats, gs.scales, gs.opacities, gs.colors, crop.camera, background=np.zeros(3),
                 backend="cpu", depth=False)
    # the same Gaussians composited at the same pixel centres; not bit for bit: the projection's
    # Jacobian is taken at the mean clamped to 1.3x the camera's field of view (gsplat's), so the
    # footprints of Gaussians well outside the crop differ a little (measured 6e-5 at most)
    assert torch.allclose(full.image[..., y0:y1, x0:x1], part.image, atol=2e-4)
    assert torch.allclose(full.alpha[..., y0:y1, x0:x1], part.alpha, atol=2e-4)
    # no focus region, or one whose box is the whole image: no crop
    assert _focus_crop(RefineView(cam, None, None, focus=np.zeros((H, W), bool)), RefineOptions()) is None
    assert _focus_crop(RefineView(cam, None, None, focus=np.ones((H, W), bool)), RefineOptions()) is None


def test_the_focus_steps_render_only_the_gaussians_that_can_reach_the_crop() -> None:
    """_focus_ids leaves out only Gaussians without a footprint in the crop: the crop's render of
    the subset is the render of all of them, bit for bit, and the subset is a real cut."""
    gs, _ = _scene()
    crop = _focus_crop(RefineView(_camera(), None, None, focus=_focus()), RefineOptions(focus_margin_px=4))
    t = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
    ids = _focus_ids(crop, t(gs.means), t(gs.quats), t(gs.scales), RefineOptions(), None).numpy()
    assert 20 < len(ids) < len(gs.means) - 20
    every = splat(gs.means, gs.quats, gs.scales, gs.opacities, gs.colors, crop.camera, background=np.zeros(3),
                  backend="cpu", depth=False)
    some = splat(gs.means[ids], gs.quats[ids], gs.scales[ids], gs.opacities[ids], gs.colors[ids], crop.camera,
                 background=np.zeros(3), backend="cpu", depth=False)
    assert torch.equal(every.image, some.image) and torch.equal(every.alpha, some.alpha)
    # movable Gaussians may come into the crop from further out: the set grows
    moving = _focus_ids(crop, t(gs.means), t(gs.quats), t(gs.scales), RefineOptions(max_offset_m=0.01),
                        np.ones(len(gs.means), bool)).numpy()
    assert set(ids) < set(moving)


def _target(gs, cam) -> np.ndarray:
    truth = np.random.default_rng(4).uniform(0.0, 1.0, (len(gs.means), 3)).astype(np.float32)
    return splat(gs.means, gs.quats, gs.scales, gs.opacities, truth, cam, backend="cpu").image[0].numpy().transpose(1, 2, 0)


def test_focus_steps_move_only_what_the_crop_shows_and_fit_it() -> None:
    """After one full step, focus steps change only Gaussians seen in the crop, and fit the focus
    region better than the full step alone."""
    gs, _ = _scene()
    cam = _camera()
    photo = _target(gs, cam)
    ones = np.ones((H, W), np.float32)
    base = dict(seconds=1e9, backend="cpu")
    one = refine(gs, None, photo, ones, cam, RefineOptions(max_steps=1, **base), focus=_focus())
    five = refine(gs, None, photo, ones, cam, RefineOptions(max_steps=5, focus_steps=4, focus_margin_px=4, **base),
                  focus=_focus())
    crop = _focus_crop(RefineView(cam, None, None, focus=_focus()), RefineOptions(focus_margin_px=4))
    ones_grad = torch.ones(len(gs.means), 1, requires_grad=True)
    shown = splat(gs.means, gs.quats, gs.scales, gs.opacities, ones_grad, crop.camera, background=torch.zeros(1),
                  backend="cpu", depth=False)
    shown.image.sum().backward()
    in_crop = ones_grad.grad[:, 0].numpy() > 0
    assert 20 < in_crop.sum() < len(gs.means) - 20
    # the Gaussians the crop does not show keep what the full step gave them
    assert np.array_equal(five.colors[~in_crop], one.colors[~in_crop])
    assert np.array_equal(five.opacities[~in_crop], one.opacities[~in_crop])
    moved = np.abs(five.colors[in_crop] - one.colors[in_crop]).max(1)
    assert (moved > 1e-3).mean() > 0.5

    def focus_rmse(res) -> float:
        img = splat(gs.means, gs.quats, gs.scales, res.opacities, res.colors, cam, backend="cpu").image[0]
        d = img.numpy().transpose(1, 2, 0) - photo
        return float(np.sqrt((d[_focus()] ** 2).mean()))

    assert focus_rmse(five) < 0.8 * focus_rmse(one)
