"""One clear line for the smaller input problems: truncated videos, tiny or sideways faces, huge
images (the real pixel limit, with the image's size)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backend.errors import InputError


def test_truncated_faststart_video_warns_with_counts(tmp_path):
    import imageio_ffmpeg

    from backend.face.video import TruncatedVideoWarning, iter_video

    path = tmp_path / "cut.mp4"
    rng = np.random.default_rng(0)
    writer = imageio_ffmpeg.write_frames(str(path), (64, 64), fps=25, codec="libx264", quality=8,
                                         macro_block_size=1, ffmpeg_log_level="error",
                                         output_params=["-movflags", "+faststart"])  # index first
    writer.send(None)
    for _ in range(100):
        writer.send(rng.integers(0, 255, (64, 64, 3), np.uint8))  # noise: frames take real bytes
    writer.close()
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 2 // 5])  # a download cut short
    reader = iter_video(path)
    assert reader.n_frames == 100  # the container still announces every frame
    with pytest.warns(TruncatedVideoWarning, match=r"cut.mp4: the video is truncated or damaged: "
                                                   r"\d+ frames decoded of the 100"):
        n = sum(1 for _ in reader)
    assert 0 < n < 90 and reader.frames_decoded == n
    # a whole file: no warning
    path.write_bytes(whole)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedVideoWarning)
        assert sum(1 for _ in iter_video(path)) == 100


def test_pixel_limit_names_the_size(tmp_path):
    from backend.face.image import MAX_PIXELS, load_image

    assert MAX_PIXELS == 100_000_000
    big = tmp_path / "scan.png"
    Image.new("1", (12_000, 9_000)).save(big)  # 108 MP, a few kB on disk
    with pytest.raises(InputError, match=r"scan.png: image is too large: 12000x9000 pixels = 108 MP "
                                         r"\(the limit is 100 MP\)"):
        load_image(big)
    huge = tmp_path / "bomb.png"
    Image.new("1", (15_000, 14_000)).save(huge)  # 210 MP: Pillow refuses before giving the size
    with pytest.raises(InputError, match=r"bomb.png: image is too large: 210 MP \(the limit is 100 MP\)"):
        load_image(huge)
    ok = tmp_path / "wide.png"
    Image.new("1", (10_000, 9_500)).save(ok)  # 95 MP: above Pillow's 89.5 MP warning, below ours
    assert load_image(ok).rgb.shape == (9_500, 10_000, 3)


def _small_face(astronaut: np.ndarray, side: int) -> np.ndarray:
    canvas = np.full((640, 640, 3), 200, np.uint8)
    canvas[100:100 + side, 100:100 + side] = np.asarray(Image.fromarray(astronaut).resize((side, side)))
    return canvas


def test_face_too_small_is_not_no_face(analyzer, astronaut):
    with pytest.raises(InputError, match=r"the face is too small: \d+ px across \(eye corners, or eyes to mouth on a turned head\), at least 30"):
        analyzer.analyze(_small_face(astronaut, 128))
    with pytest.raises(InputError, match="no face found"):
        analyzer.analyze(np.full((640, 640, 3), 200, np.uint8))


@pytest.mark.parametrize("turns, direction", [(1, "counter-clockwise"), (3, "clockwise"),
                                              (2, "180 deg")])
def test_sideways_face_asks_to_rotate(analyzer, astronaut, turns, direction):
    img = np.ascontiguousarray(np.rot90(astronaut, turns))  # np.rot90 turns counter-clockwise
    with pytest.raises(InputError, match=f"no upright face: the face is rotated by about .*{direction}"
                                         ".*rotate the photo"):
        analyzer.analyze(img)
    # a slight tilt is a normal portrait
    tilted = np.asarray(Image.fromarray(astronaut).rotate(20, fillcolor=(255, 255, 255)))
    assert analyzer.analyze(tilted).n_faces_found >= 1
