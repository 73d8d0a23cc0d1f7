"""The background preview writer: the same files as the synchronous FrameWriter, and a cancel
mid-way leaves no partial mp4 and removes nothing it did not create."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from backend.errors import CancelledError
from backend.output_safety import TMP_MARK
from backend.preview import PreviewOptions, render_preview
from backend.preview.output import BackgroundWriter, FrameWriter
from backend.progress import Progress


def _frames(n: int, h: int = 96, w: int = 128) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_background_writer_writes_the_same_bytes_as_the_synchronous_one(tmp_path):
    frames = _frames(12)
    sync = FrameWriter(tmp_path / "a" / "png", tmp_path / "a" / "v.mp4", fps=25.0, first_number=3)
    for f in frames:
        sync.write(f)
    sync.close()
    bg = BackgroundWriter(FrameWriter(tmp_path / "b" / "png", tmp_path / "b" / "v.mp4", fps=25.0, first_number=3),
                          max_queue=2)
    for f in frames:
        bg.put(f)
    bg.close()
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 13 and "v.mp4" in a
    assert a == b  # every PNG and the mp4, byte for byte
    assert bg.n_frames == 12 and [p.name for p in bg.pngs] == [f"frame_{i:05d}.png" for i in range(3, 15)]


class _SlowWriter(FrameWriter):
    """A FrameWriter whose frames wait for a gate: the cancel happens while frames are queued and
    the mp4 is half written."""

    gate: threading.Event
    reached: threading.Event

    def write(self, frame):
        if self.n_frames >= 3:
            self.reached.set()
            self.gate.wait(30)
        super().write(frame)


@pytest.mark.parametrize("earlier_files", [False, True])
def test_cancel_mid_way_leaves_no_partial_mp4_and_keeps_other_files(tmp_path, earlier_files):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's file")
    if earlier_files:  # an earlier render at the same paths
        (out / "v.mp4").write_bytes(os.urandom(4000))
        (out / "frame_00001.png").write_bytes(os.urandom(500))
    before = _files(out)
    w = _SlowWriter(out, out / "v.mp4", fps=25.0)
    w.gate, w.reached = threading.Event(), threading.Event()
    bg = BackgroundWriter(w, max_queue=4)
    for f in _frames(6):
        bg.put(f)
    assert w.reached.wait(30)  # three frames written, the fourth waits, two are queued
    # frames are being written: the mp4 and PNGs exist only as temporary files beside their targets
    # (ffmpeg creates its file once it has started, which takes a while on a loaded machine)
    deadline = time.monotonic() + 30
    while not any(TMP_MARK in p.name and p.suffix == ".mp4" for p in out.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(TMP_MARK in p.name and p.suffix == ".mp4" for p in out.iterdir())
    w.gate.set()
    bg.discard()
    assert _files(out) == before  # byte-identical; no temporary files, no partial mp4
    assert not any(TMP_MARK in p.name for p in out.iterdir())


def test_writer_error_reaches_the_caller_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    bg = BackgroundWriter(FrameWriter(out, out / "v.mp4", fps=25.0))
    bg.put(_frames(1)[0])
    bg.put(np.zeros((96, 128), np.uint8))  # not RGB: the worker's stamp fails
    with pytest.raises(ValueError, match="uint8"):
        bg.close()
    assert not out.exists() or not any(out.iterdir())


def test_render_preview_cancel_mid_way_keeps_earlier_files(astronaut, tmp_path):
    avatar, model, _ = astronaut
    from backend.head.params import HeadParams

    params = HeadParams.zeros(model, 12)
    params.shape = avatar.params.shape
    params.pose[:, 2, 0] = np.linspace(0, 0.3, 12)
    out = tmp_path / "out"
    out.mkdir()
    (out / "preview.mp4").write_bytes(os.urandom(3000))
    before = _files(out)
    calls: list[float] = []
    progress = Progress(callback=lambda f, m: calls.append(f), should_cancel=lambda: len(calls) >= 5)
    with pytest.raises(CancelledError):
        render_preview(avatar, params, out, PreviewOptions(lod=0, width=96, height=96, batch=4, backend="cpu"),
                       video=out / "preview.mp4", model=model, progress=progress)
    assert _files(out) == before


@pytest.mark.parametrize("background", [False, True])
def test_writers_as_context_managers_commit_on_success_and_discard_on_error(tmp_path, background):
    """Both writers share one __enter__/__exit__: a clean block moves the files into place, a
    block that raises leaves the folder as it was (an earlier frame file byte-identical)."""
    frames = _frames(3)

    def writer(folder):
        w = FrameWriter(folder / "png", folder / "v.mp4", fps=25.0)
        return BackgroundWriter(w) if background else w

    with writer(tmp_path / "ok") as w:
        for f in frames:
            (w.put if background else w.write)(f)
    assert sorted(_files(tmp_path / "ok")) == ["png/frame_00000.png", "png/frame_00001.png",
                                               "png/frame_00002.png", "v.mp4"]
    (tmp_path / "bad" / "png").mkdir(parents=True)
    (tmp_path / "bad" / "png" / "frame_00000.png").write_bytes(b"earlier")
    with pytest.raises(RuntimeError, match="stop"):
        with writer(tmp_path / "bad") as w:
            for f in frames:
                (w.put if background else w.write)(f)
            raise RuntimeError("stop")
    assert _files(tmp_path / "bad") == {"png/frame_00000.png": b"earlier"}


def test_uint8_frames_match_torch_rounding_bit_for_bit():
    """The preview's numba float -> uint8 conversion equals torch's clamp * 255, round half to even,
    on values around every rounding boundary and outside [0, 1], for contiguous and permuted input."""
    import torch

    from backend.preview.renderer import to_uint8_frames

    k = torch.arange(256, dtype=torch.float32)
    edges = torch.cat([(k + 0.5) / 255.0, k / 255.0, torch.tensor([-1.0, -1e-8, 1.0 + 1e-7, 2.0, 0.0, 1.0])])
    for delta in (0.0, 1e-7, -1e-7):
        vals = (edges + delta).repeat(3 * 4 * 7)[: 2 * 4 * 7 * 3 * 8].reshape(2, 4, 7, 3 * 8)
        for img in (vals[..., :3].permute(0, 3, 1, 2), vals.reshape(2, 3 * 8, 4, 7)):
            want = (img[:, :3].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            np.testing.assert_array_equal(to_uint8_frames(img), want)
    half = torch.full((1, 3, 2, 2), 0.5 / 255.0)  # exactly half a step: rounds to even (0)
    assert int(to_uint8_frames(half).max()) == int((half * 255.0).round().max()) == 0
