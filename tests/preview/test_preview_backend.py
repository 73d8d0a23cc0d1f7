"""backend.preview: motion files, resampling, frame output, rendering (+ the learned refiner path)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from backend.errors import CancelledError, InputError
from backend.head.params import HeadParams
from backend.motion import load_motion, resample
from backend.preview import FrameWriter, PreviewOptions, render_preview
from backend.progress import Progress
from synthetic import performance, watermark_present


def test_resample_keeps_duration_and_interpolates_rotations():
    rng = np.random.default_rng(0)
    T = 31  # 30 fps -> 1 s
    t = np.arange(T) / 30.0
    pose = np.zeros((T, 5, 3), np.float32)
    pose[:, 2, 0] = 0.3 * t            # jaw opens linearly in time about x
    pose[:, 1] = rng.normal(0, 0.01, 3)  # constant neck
    p = HeadParams(np.zeros(3), np.stack([t, -t], 1), pose, np.stack([t, t, t], 1))
    r = resample(p, 30.0, 25.0)
    assert r.n_frames == 26  # floor(30 * 25 / 30) + 1: the same 1 s
    t2 = np.arange(26) / 25.0
    np.testing.assert_allclose(r.expr[:, 0], t2, atol=1e-6)
    np.testing.assert_allclose(r.transl[:, 2], t2, atol=1e-6)
    np.testing.assert_allclose(r.pose[:, 2, 0], 0.3 * t2, atol=1e-5)  # slerp about a fixed axis is linear
    np.testing.assert_allclose(r.pose[:, 1], np.repeat(pose[:1, 1], 26, 0), atol=1e-6)
    up = resample(p, 30.0, 60.0)
    assert up.n_frames == 61
    np.testing.assert_allclose(up.pose[::2], p.pose, atol=1e-5)  # original samples kept exactly
    assert resample(p, 25.0, 25.0).n_frames == T


def test_load_motion_reads_params_and_refuses_other_files(tmp_path):
    p = HeadParams(np.zeros(4), np.ones((5, 3)), np.zeros((5, 5, 3)), np.zeros((5, 3)))
    p.save(tmp_path / "p.npz")
    m = load_motion(tmp_path / "p.npz", fps=30.0)
    assert m.n_frames == 5 and m.fps == 30.0 and m.camera is None
    np.testing.assert_array_equal(m.params.expr, p.expr)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz"):
        load_motion(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(InputError, match="not a track"):
        load_motion(tmp_path / "other.npz")
    with pytest.raises(InputError, match="not found"):
        load_motion(tmp_path / "missing.npz")


def test_frame_writer_pads_odd_sizes_and_discards(tmp_path):
    import imageio_ffmpeg

    frames = [np.full((81, 101, 3), 40 * i, np.uint8) for i in range(5)]
    w = FrameWriter(tmp_path / "png", tmp_path / "v.mp4", fps=10.0, first_number=7)
    for f in frames:
        w.write(f)
    w.close()
    assert [p.name for p in w.pngs] == [f"frame_{i:05d}.png" for i in range(7, 12)]
    n, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "v.mp4"))
    assert n == 5
    meta = next(imageio_ffmpeg.read_frames(str(tmp_path / "v.mp4")))
    assert tuple(meta["size"]) == (102, 82)  # padded to even for yuv420p
    assert Image.open(w.pngs[0]).text["AI-generated"] == "true"
    # a second writer over the same paths that is discarded (cancel/error) removes only its own
    # temporary files: the finished files above stay byte-identical
    before = {p: p.read_bytes() for p in [*w.pngs, tmp_path / "v.mp4"]}
    w2 = FrameWriter(tmp_path / "png", tmp_path / "v.mp4", fps=10.0, first_number=7)
    for f in frames[::-1]:
        w2.write(f)
    assert {p: p.read_bytes() for p in before} == before  # nothing replaced before close()
    w2.discard()
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [p.name for p in w.pngs]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["png", "v.mp4"]
    with pytest.raises(InputError, match="mp4"):
        FrameWriter(None, tmp_path / "v.avi", fps=10.0)


def test_render_preview_writes_watermarked_frames_and_video(astronaut, tmp_path):
    import imageio_ffmpeg

    avatar, model, _ = astronaut
    params, jaw, _ = performance(avatar, model, 4, period=4.0)
    res = render_preview(avatar, params, tmp_path / "frames", PreviewOptions(lod=0, width=96, height=96, backend="cpu"),
                         fps=25.0, video=tmp_path / "frames" / "preview.mp4", model=model)
    assert res.n_frames == 4 and len(res.pngs) == 4 and res.backend == "cpu" and res.lod == 0
    assert res.fps > 0 and res.seconds > 0 and set(res.stage_seconds) >= {"pose", "splat", "write"}
    imgs = []
    for p in res.pngs:
        im = Image.open(p)
        assert im.size == (96, 96) and im.text["AI-generated"] == "true"
        imgs.append(np.asarray(im.convert("RGB")))
        assert watermark_present(imgs[-1])
    assert imageio_ffmpeg.count_frames_and_secs(str(res.video))[0] == 4
    # the jaw moves between frames 0 (closed) and 2 (open): the mouth region changes, the corner does not
    diff = np.abs(imgs[2].astype(int) - imgs[0].astype(int)).sum(-1)
    assert diff[40:70, 30:66].mean() > 2.0
    assert diff[:10, :10].max() == 0
    # the figure dictionary is JSON-able (the CLI writes it)
    json.dumps(res.figures())


def test_preview_early_stop_within_one_level_of_the_exact_render(astronaut):
    """The preview's transmittance stop (1/255 by default) changes frames by at most one uint8
    level against exact compositing (transmittance_stop=None), and does change some pixels."""
    from backend.preview import PreviewRenderer

    avatar, model, _ = astronaut
    params, _, _ = performance(avatar, model, 3)
    frames = {}
    for stop in (PreviewOptions().transmittance_stop, None):
        r = PreviewRenderer(avatar, model, PreviewOptions(lod=0, width=128, height=128, backend="cpu",
                                                          transmittance_stop=stop))
        frames[stop] = np.stack(list(r.frames(params))).astype(int)
    fast, exact = frames.values()
    assert PreviewOptions().transmittance_stop == pytest.approx(1 / 255)
    assert np.abs(fast - exact).max() == 1 and (fast != exact).any()


def test_preview_simd_compositing_within_one_level_of_the_exact_kernel(astronaut):
    """The preview's 8-lane compositing (PreviewOptions.simd, on by default) gives frames within
    one uint8 level of the exact kernel's (simd=False), and in at most 0.1 % of the values."""
    from backend.preview import PreviewRenderer

    avatar, model, _ = astronaut
    params, _, _ = performance(avatar, model, 3)
    frames = {}
    for simd in (True, False):
        r = PreviewRenderer(avatar, model, PreviewOptions(lod=0, width=128, height=128, backend="cpu", simd=simd))
        frames[simd] = np.stack(list(r.frames(params))).astype(int)
    fast, exact = frames[True], frames[False]
    assert PreviewOptions().simd
    assert fast.shape == exact.shape and fast.std() > 10  # real frames, not blank
    assert np.abs(fast - exact).max() <= 1 and (fast != exact).mean() <= 1e-3


def test_cancel_leaves_no_files(astronaut, tmp_path):
    avatar, model, _ = astronaut
    params, _, _ = performance(avatar, model, 6)
    calls = []

    def cb(f, m):
        calls.append(f)

    progress = Progress(callback=cb, should_cancel=lambda: len(calls) >= 2)
    with pytest.raises(CancelledError):
        render_preview(avatar, params, tmp_path / "out", PreviewOptions(lod=0, width=80, height=80, batch=1,
                                                                         backend="cpu"),
                       video=tmp_path / "out" / "preview.mp4", model=model, progress=progress)
    assert not list((tmp_path / "out").glob("*"))


def test_learned_refiner_path(astronaut, tmp_path):
    """An avatar with 32 learned feature channels renders through the checkpoint's refiner; an
    untrained refiner is the identity on the RGB channels (its last convolution starts at zero),
    so the result equals the plain RGB render on the same (black) background."""
    import torch

    from backend.model.omg import OMGConfig, UNetRefiner
    from backend.model.train import CHECKPOINT_FORMAT
    from dataclasses import replace

    avatar, model, _ = astronaut
    cfg = OMGConfig(unet_channels=(8, 16))
    net = UNetRefiner(cfg.feat_channels, cfg.unet_channels)
    ck = {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(),
          "model": {f"refiner.{k}": v for k, v in net.state_dict().items()}}
    torch.save(ck, tmp_path / "ck.pt")
    lod = avatar.lods[0]
    feats = lambda gs: np.concatenate([gs.colors, np.zeros((len(gs), cfg.feat_channels - 3), np.float32)], 1)  # noqa: E731
    learned = replace(avatar, lods={0: replace(lod, features=feats(lod))},
                      parts=[replace(p, gaussians=replace(p.gaussians, features=feats(p.gaussians)))
                             for p in avatar.parts])
    params = avatar.params
    opts = PreviewOptions(lod=0, width=80, height=80, backend="cpu")
    ref = render_preview(learned, params, tmp_path / "ref", replace(opts, checkpoint=str(tmp_path / "ck.pt")),
                         model=model)
    plain = render_preview(avatar, params, tmp_path / "plain", replace(opts, background=(0.0, 0.0, 0.0)),
                           model=model)
    assert ref.refined and not plain.refined
    a = np.asarray(Image.open(ref.pngs[0]).convert("RGB")).astype(int)
    b = np.asarray(Image.open(plain.pngs[0]).convert("RGB")).astype(int)
    assert np.abs(a - b).max() <= 1
    # an analytic avatar (no features) with a checkpoint is refused with a clear message
    with pytest.raises(InputError, match="no learned features"):
        render_preview(avatar, params, None, replace(opts, checkpoint=str(tmp_path / "ck.pt")),
                       video=tmp_path / "x.mp4", model=model)
