"""Pipelined posing (PreviewOptions.pipeline: batch k + 1 posed on a thread while batch k is
splatted) draws exactly the frames of the one-thread loop, and a failure on the posing thread
reaches the caller."""

from __future__ import annotations

import numpy as np
import pytest

from backend.preview import PreviewOptions
from backend.preview.bench import bench_motion
from backend.preview.renderer import PreviewRenderer


def _render(avatar, model, params, pipeline: bool):
    r = PreviewRenderer(avatar, model, PreviewOptions(lod=0, width=96, height=96, backend="cpu", batch=2,
                                                      pipeline=pipeline))
    secs: dict[str, float] = {}
    frames = list(r.frames(params, stage_seconds=secs))
    return r, np.stack(frames), secs


def test_pipelined_frames_equal_the_serial_loop(astronaut):
    avatar, model, _ = astronaut
    params = bench_motion(avatar, model, 7)  # 4 batches, the last one short
    r, serial, s_secs = _render(avatar, model, params, False)
    r2, piped, p_secs = _render(avatar, model, params, True)
    assert serial.shape == (7, 96, 96, 3)
    assert r2._pipelined()  # the splatter has run: the threading layer is known and thread-safe
    np.testing.assert_array_equal(piped, serial)
    assert not np.array_equal(serial[0], serial[6])  # the motion moves the head
    assert p_secs["pose_thread"] > 0 and s_secs["pose"] >= s_secs["pose_thread"] * 0.99


def test_a_posing_error_on_the_thread_reaches_the_caller(astronaut):
    avatar, model, _ = astronaut
    params = bench_motion(avatar, model, 6)
    r = PreviewRenderer(avatar, model, PreviewOptions(lod=0, width=96, height=96, backend="cpu", batch=2))
    real = r.poser.pose
    calls = []

    def failing(expr, pose, transl):
        calls.append(len(expr))
        if len(calls) == 2:
            raise RuntimeError("posing failed on purpose")
        return real(expr, pose, transl)

    r.poser.pose = failing
    got = []
    with pytest.raises(RuntimeError, match="on purpose"):
        for f in r.frames(params):
            got.append(f)
    assert len(got) == 2  # the first batch was delivered, nothing after the failure


def test_bench_preview_runs_on_a_saved_avatar_without_a_build(astronaut, tmp_path, monkeypatch):
    """``bench preview --avatar``: the loop on a built .omgavatar (a GPU machine without the face
    detector runs it so); a LOD the file lacks is refused naming the file."""
    import argparse
    import json

    from backend.errors import InputError
    from backend.preview import bench

    _, _, path = astronaut
    p = argparse.ArgumentParser()
    bench.add_arguments(p)

    def no_build(*a, **k):
        raise AssertionError("--avatar must not build from a photo")

    monkeypatch.setattr("backend.avatar.build.build_avatar", no_build)
    out = tmp_path / "bench.json"
    args = p.parse_args(["--avatar", str(path), "--lod", "0", "--frames", "3", "--size", "96",
                         "--repeats", "1", "--paths", "batched", "--backend", "cpu", "--no-video",
                         "--json", str(out)])
    assert bench.run(args) == 0
    fig = json.loads(out.read_text())
    assert fig["avatar"] == str(path) and fig["backend"] == "cpu" and fig["frames"] == 3
    assert fig["fps"] > 0 and f"--avatar {path}" in fig["command"] and fig["video"] is False
    with pytest.raises(InputError, match="no LOD 2") as err:
        bench.run(p.parse_args(["--avatar", str(path), "--lod", "2", "--frames", "1", "--paths", "batched"]))
    assert str(err.value).startswith(path.name)
    with pytest.raises(SystemExit):  # a photo and an avatar at once
        p.parse_args(["--avatar", str(path), "--photo", "x.png"])
