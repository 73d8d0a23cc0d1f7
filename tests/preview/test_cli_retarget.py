"""``python -m backend retarget`` and ``python -m backend render`` end to end on the synthetic clip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from backend.cli import main
from synthetic import pearson, synthetic_clip, watermark_present

ROOT = Path(__file__).resolve().parents[2]
JAW_R_MIN = 0.8  # Pearson r between the tracked and the rendered jaw rotation


def test_cli_retarget_then_render(astronaut, preview_assets, tmp_path):
    import imageio_ffmpeg

    from backend.face.track import Track

    _, _, avatar_path = astronaut
    clip = synthetic_clip(preview_assets)
    out = tmp_path / "reenact.mp4"
    rc = main(["retarget", str(avatar_path), str(clip.path), "-o", str(out), "--lod", "0", "--size", "96",
               "--backend", "cpu", "--frames", str(tmp_path / "frames"), "--save-track", str(tmp_path / "t.npz"),
               "--json", str(tmp_path / "r.json"), "--no-progress"])
    assert rc == 0
    T = clip.params.n_frames
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == T
    pngs = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert len(pngs) == T
    assert all(watermark_present(np.asarray(Image.open(p).convert("RGB"))) for p in pngs[:: max(1, T // 4)])
    fig = json.loads((tmp_path / "r.json").read_text())
    assert fig["frames"] == T and fig["render"]["frames"] == T and fig["render"]["lod"] == 0
    assert fig["track_fps"] > 0 and fig["render"]["fps"] > 0 and fig["video_fps"] == clip.fps
    track = Track.load(tmp_path / "t.npz")
    r = pearson(track.params.pose[:, 2, 0], clip.jaw)
    assert r > JAW_R_MIN, f"jaw r = {r:.3f}"

    # render: the saved track, a sub-range, resampled to 50 fps
    rc = main(["render", str(avatar_path), str(tmp_path / "t.npz"), "-o", str(tmp_path / "render"), "--size", "96",
               "--start", "2", "--end", "5", "--fps", "50", "--backend", "cpu", "--json", str(tmp_path / "f.json"),
               "--no-progress"])
    assert rc == 0
    fig = json.loads((tmp_path / "f.json").read_text())
    assert fig["frames"] == 7 and fig["video_fps"] == 50  # 4 frames at 25 fps span 3/25 s = 7 frames at 50
    assert len(list((tmp_path / "render").glob("frame_*.png"))) == 7
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "render" / "preview.mp4"))[0] == 7


def test_cli_errors_name_the_file(astronaut, tmp_path):
    _, _, avatar_path = astronaut
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    proc = subprocess.run([sys.executable, "-m", "backend", "render", str(avatar_path), str(bad), "-o",
                           str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and "bad.npz" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "backend", "retarget", str(avatar_path), str(tmp_path / "none.mp4"),
                           "-o", str(tmp_path / "o.mp4")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and "none.mp4" in proc.stderr and "Traceback" not in proc.stderr
