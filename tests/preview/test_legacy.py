"""The benchmark's reference path (preview.legacy, the loop as it was when issue 19 was filed)
draws the same frames as today's loop (within the one 8-bit level of today's transmittance stop),
its old kernels give today's kernels' results, and its writer writes the same watermarked pixels."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from backend.preview import PreviewOptions, render_preview
from backend.preview.legacy import (_bin_tiles_sort, _project_fwd_serial, _stamp_whole_frame, legacy_splat_rgb,
                                    render_legacy)
from backend.render import _kernels
from backend.render.projection import project_fwd
from backend.render.watermark import stamp_watermark


def _gaussians(n: int = 3000, seed: int = 3):
    rng = np.random.default_rng(seed)
    means = np.concatenate([rng.uniform(-0.3, 0.3, (n, 2)), rng.uniform(1.5, 3.0, (n, 1))], 1).astype(np.float32)
    quats = rng.normal(size=(n, 4)).astype(np.float32)
    scales = rng.uniform(0.002, 0.03, (n, 3)).astype(np.float32)
    opac = rng.uniform(0.0, 1.0, n).astype(np.float32)
    return means, quats, scales, opac


def test_old_projection_and_binning_equal_todays_kernels():
    means, quats, scales, opac = _gaussians()
    view = np.eye(4, dtype=np.float32)[None].repeat(2, 0)
    view[1, :3, 3] = (0.05, -0.02, 0.1)
    K = np.array([[[150.0, 0, 80], [0, 150.0, 60], [0, 0, 1]]], np.float32).repeat(2, 0)
    b = lambda a: np.ascontiguousarray(np.broadcast_to(a, (2,) + a.shape))  # noqa: E731
    args = (b(means), b(quats), b(scales), b(opac), view, K, 160, 120, 0.3, 0.01, 1e10)
    old = _project_fwd_serial(*args)
    new = project_fwd(*args, True)
    for o, n in zip(old, new):
        np.testing.assert_array_equal(o, n)
    assert (old[3] > 0).any(axis=-1).sum() > 1000  # most Gaussians are drawn
    m2, _, dp, _, ext = new
    off_old, ids_old = _bin_tiles_sort(m2, ext, dp, 160, 120, 16)
    off_new, ids_new = _kernels.bin_tiles(m2, ext, dp, 160, 120, 16)
    np.testing.assert_array_equal(off_old, off_new)
    np.testing.assert_array_equal(ids_old, ids_new)


def test_old_watermark_stamps_the_same_pixels():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_stamp_whole_frame(frame), stamp_watermark(frame))


def test_reference_loop_draws_todays_frames(astronaut, tmp_path):
    avatar, model, _ = astronaut
    from backend.preview.bench import bench_motion

    params = bench_motion(avatar, model, 5)
    ref = render_legacy(avatar, model, params, 0, 128, tmp_path / "old")
    assert ref["stage_seconds"]["splat"] > 0 and ref["n_gaussians"] == len(avatar.rest_set(0))
    new = render_preview(avatar, params, tmp_path / "new" / "png",
                         PreviewOptions(lod=0, width=128, height=128, backend="cpu"),
                         video=tmp_path / "new" / "preview.mp4", model=model)
    old_pngs = sorted((tmp_path / "old" / "png").glob("*.png"))
    assert [p.name for p in old_pngs] == [p.name for p in new.pngs]
    assert (tmp_path / "old" / "preview.mp4").stat().st_size > 0
    for a, b in zip(old_pngs, new.pngs):
        old_px = np.asarray(Image.open(a).convert("RGB"), np.int16)
        new_px = np.asarray(Image.open(b).convert("RGB"), np.int16)
        diff = np.abs(old_px - new_px)
        # today's transmittance stop moves a channel by at most one level; the float32 torch and
        # numpy posings differ by far less than a pixel (6e-8 m here), which tips a rounding here
        # and there, and at the rest pose (frame 0) flips the order of a few overlapping Gaussians
        # whose depths are exactly equal (measured on this avatar: frames 1-4 within one level,
        # frame 0 35 of 49,152 channels over 2 levels, at most 10; both splatters give identical
        # frames on identical posed input)
        assert (diff > 2).mean() < 1e-3 and (diff > 1).mean() < 2e-3
        assert (diff > 0).mean() < 0.5
        assert Image.open(a).text.get("Comment") == Image.open(b).text.get("Comment")


def test_old_splat_is_exact_compositing():
    """The reference composites to gsplat's stop: it equals today's splat with no transmittance stop."""
    from backend.render.camera import Camera
    from backend.render.splat import splat

    means, quats, scales, opac = _gaussians(2000, seed=7)
    cols = np.random.default_rng(1).uniform(0, 1, (len(means), 3)).astype(np.float32)
    K = np.array([[150.0, 0, 64], [0, 150.0, 64], [0, 0, 1]], np.float32)
    cam = Camera(K=K, viewmat=np.eye(4, dtype=np.float32), width=128, height=128)
    t = torch.from_numpy
    bg = torch.ones(3)
    old = legacy_splat_rgb(t(means)[None], t(quats), t(scales), t(opac), t(cols), [cam], bg)
    with torch.no_grad():
        res = splat(t(means)[None], t(quats), t(scales), t(opac), t(cols), [cam], background=bg, backend="cpu")
    exact = (res.image[:, :3].clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(old, exact)
    assert (old < 250).any(axis=-1).mean() > 0.2  # not just background
