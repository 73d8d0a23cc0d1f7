"""Users' files survive every way a run can end badly: they are byte-identical afterwards.

Ctrl-C is a real SIGINT to a child process group (as a terminal sends it); a write error is a real
one (the child's file-size limit, RLIMIT_FSIZE, makes writes fail with EFBIG); a second build runs
the real command.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.cli import main
from backend.output_safety import TMP_MARK

ROOT = Path(__file__).resolve().parents[2]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def long_motion(path: Path, model, frames: int) -> Path:
    from backend.head.params import HeadParams

    p = HeadParams.zeros(model, frames)
    p.pose[:, 2, 0] = 0.2 * np.sin(np.linspace(0, 20, frames))  # jaw moves: every frame differs
    p.save(path)
    return path


def _terminal_sigint() -> None:
    """In the child: SIGINT at its default disposition, as a command started from a terminal has it.
    An ignored SIGINT is inherited across exec (and Python then installs no KeyboardInterrupt
    handler): in the full suite the pytest process had it ignored, and the render ran on
    through the test's Ctrl-C (rc 0). No test does that: a non-interactive shell ignores SIGINT
    in the commands it starts in the background (`cmd &`, as the suite is run unattended), and the
    ignored disposition reaches pytest and its children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_render_leaves_existing_outputs_byte_identical(astronaut, tmp_path):
    _, model, avatar_path = astronaut
    motion = long_motion(tmp_path / "motion.npz", model, 2000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "preview.mp4").write_bytes(os.urandom(5000))  # the user's earlier render
    (out / "frame_00000.png").write_bytes(os.urandom(700))
    before = snapshot(out)
    proc = subprocess.Popen([sys.executable, "-m", "backend", "render", str(avatar_path), str(motion),
                             "-o", str(out), "--size", "96", "--backend", "cpu", "--no-progress"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_terminal_sigint)
    try:
        deadline = time.monotonic() + 120
        # wait until frames are being written (temporary files beside the targets)
        while not any(TMP_MARK in p.name and p.suffix == ".mp4" for p in out.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the render never started writing"
            time.sleep(0.05)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group (ffmpeg too)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["cancelled"], err  # one line, no traceback
    assert snapshot(out) == before  # byte-identical, and no temporary files left


def _no_big_writes() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-limit writes fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_write_error_leaves_existing_output_byte_identical(astronaut, tmp_path):
    _, _, avatar_path = astronaut
    out = tmp_path / "plys"
    out.mkdir()
    (out / "astronaut_lod0.ply").write_bytes(os.urandom(3000))
    before = snapshot(out)
    proc = subprocess.run([sys.executable, "-m", "backend", "export-ply", str(avatar_path), "-o", str(out)],
                          cwd=ROOT, capture_output=True, text=True, preexec_fn=_no_big_writes, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: astronaut_lod0.ply: cannot write the file"), \
        proc.stderr
    assert snapshot(out) == before


def test_failed_preview_leaves_existing_frames_and_video(astronaut, tmp_path):
    from backend.preview import PreviewOptions, render_preview
    from backend.progress import Progress

    avatar, model, _ = astronaut
    out = tmp_path / "frames"
    out.mkdir()
    for name in ("frame_00000.png", "frame_00001.png", "preview.mp4"):
        (out / name).write_bytes(os.urandom(400))
    before = snapshot(out)
    from backend.head.params import HeadParams

    params = HeadParams.zeros(model, 6)

    def fail_on_third(fraction, message):
        if fraction > 0.4:
            raise OSError(5, "Input/output error")

    with pytest.raises(OSError):
        render_preview(avatar, params, out, PreviewOptions(width=96, height=96, backend="cpu"),
                       video=out / "preview.mp4", model=model, progress=Progress(callback=fail_on_third))
    assert snapshot(out) == before
    # and a run that succeeds replaces them
    res = render_preview(avatar, params, out, PreviewOptions(width=96, height=96, backend="cpu"),
                         video=out / "preview.mp4", model=model)
    assert res.n_frames == 6 and snapshot(out)["frame_00000.png"] != before["frame_00000.png"]
    assert not [p for p in out.iterdir() if TMP_MARK in p.name]


@pytest.mark.slow
def test_second_build_into_the_same_folder(tmp_path, capsys):
    """A second build of the same name is refused (files untouched); with --force it replaces the
    avatar and removes the earlier build's LOD files it does not remake."""
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"astronaut.omgavatar": os.urandom(300), "astronaut_lod1.ply": os.urandom(200),
               "astronaut_lod2.ply": os.urandom(200), "friend.omgavatar": os.urandom(100)}
    for name, data in earlier.items():
        (out / name).write_bytes(data)
    argv = ["build", "-o", str(out), "--lods", "0", "--refine-seconds", "0", "--no-previews", "--no-progress"]
    assert main(argv) == 1
    assert "already holds an avatar named 'astronaut'" in capsys.readouterr().err
    assert snapshot(out) == earlier
    assert main([*argv, "--force"]) == 0
    after = snapshot(out)
    assert sorted(after) == ["astronaut.omgavatar", "astronaut_lod0.ply", "friend.omgavatar"]
    assert after["friend.omgavatar"] == earlier["friend.omgavatar"]  # another avatar: untouched
    assert after["astronaut.omgavatar"] != earlier["astronaut.omgavatar"]
    from backend.avatar import load_avatar

    assert load_avatar(out / "astronaut.omgavatar").levels == [0]
