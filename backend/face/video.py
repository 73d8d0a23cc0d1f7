"""Video input: mp4 / mov / webm / mkv / avi / gif files and image-sequence folders, streamed.

Frames are decoded one at a time (ffmpeg pipe via imageio-ffmpeg; Pillow for GIF; one file at a
time for folders), so memory stays at one frame whatever the length of the clip.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError, OMGWarning
from ..ffmpeg import ensure_ffmpeg
from .image import MAX_PIXELS, load_image


class TruncatedVideoWarning(OMGWarning):
    """Fewer frames decoded than the container announces (a cut or damaged file)."""

GIF_SUFFIXES = (".gif",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
DEFAULT_SEQUENCE_FPS = 25.0


@dataclass
class VideoReader:
    """Iterable over the frames of a clip: each item is an RGB uint8 (H, W, 3) array.

    fps:      frames per second (from the container; image folders use ``sequence_fps``).
    n_frames: frame count; exact for folders and GIFs, an estimate (duration x fps) for videos.
    size:     (width, height) of the frames.
    """

    path: Path
    fps: float
    n_frames: int
    size: tuple[int, int]
    kind: str  # "ffmpeg" | "gif" | "folder"
    _files: list[Path] = field(default_factory=list, repr=False)
    frames_decoded: int | None = None  # set once a full pass over a video has ended

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.kind == "folder":
            return self._iter_folder()
        if self.kind == "gif":
            return self._iter_gif()
        return self._iter_ffmpeg()

    def _iter_folder(self) -> Iterator[np.ndarray]:
        for f in self._files:
            yield load_image(f).rgb

    def _iter_gif(self) -> Iterator[np.ndarray]:
        from PIL import Image, ImageSequence

        try:
            with Image.open(self.path) as im:
                for i, frame in enumerate(ImageSequence.Iterator(im)):
                    rgb = np.asarray(frame.convert("RGB"))
                    if rgb.shape[:2] != (self.size[1], self.size[0]):  # callers rely on .size
                        raise InputError(self.path, f"damaged GIF: frame {i} is {rgb.shape[1]}x"
                                         f"{rgb.shape[0]} pixels, the file says {self.size[0]}x{self.size[1]}")
                    yield rgb
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow's GIF decoder reports damaged files with
            # many exception types (OSError, ValueError, IndexError, struct.error, ...)
            raise InputError(self.path, f"GIF decoding failed ({str(exc)[:120]})") from None

    def _iter_ffmpeg(self) -> Iterator[np.ndarray]:
        import imageio_ffmpeg

        w, h = self.size
        gen = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24")
        count = 0
        try:
            next(gen)  # metadata, already read in open
            for buf in gen:
                if len(buf) != w * h * 3:  # a damaged stream can end in a partial frame
                    break
                count += 1
                yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
        except (RuntimeError, OSError) as exc:
            raise InputError(self.path, f"video decoding failed ({exc})") from None
        finally:
            gen.close()  # stops the ffmpeg process when the caller breaks out early
        # only reached when every frame was read (not when the caller stopped early)
        self.frames_decoded = count
        if count < self.n_frames - max(2, 0.05 * self.n_frames):
            warnings.warn(TruncatedVideoWarning(
                f"{self.path.name}: the video is truncated or damaged: {count} frames decoded of the "
                f"{self.n_frames} its container announces (using the {count} found)"), stacklevel=2)


def iter_video(path: str | Path, sequence_fps: float = DEFAULT_SEQUENCE_FPS) -> VideoReader:
    """Open a clip for streaming. Raises InputError when it cannot be read or holds no frames."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        return _open_folder(path, sequence_fps)
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    if path.suffix.lower() in GIF_SUFFIXES:
        return _open_gif(path)
    return _open_ffmpeg(path)


def _open_folder(path: Path, fps: float) -> VideoReader:
    files = sorted(
        (f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()),
        key=_natural_key,
    )
    if not files:
        raise InputError(path, "folder holds no image files (expected an image sequence)")
    first = load_image(files[0]).rgb
    return VideoReader(path, float(fps), len(files), (first.shape[1], first.shape[0]), "folder", files)


def _natural_key(p: Path) -> list:
    """frame_2.png sorts before frame_10.png."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def _open_gif(path: Path) -> VideoReader:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise InputError(path, f"GIF frames are too large: {im.width}x{im.height} pixels (the "
                                       f"limit is {MAX_PIXELS / 1e6:.0f} MP)")
            n = int(getattr(im, "n_frames", 1))
            durations = []
            for i in range(min(n, 50)):  # frame durations (ms) of the first frames give the rate
                im.seek(i)
                durations.append(im.info.get("duration", 0) or 0)
            size = im.size
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - as in _iter_gif: any decoder error is a bad file
        raise InputError(path, f"not a readable GIF ({str(exc)[:120]})") from None
    ms = float(np.median(durations)) if durations else 0.0
    fps = 1000.0 / ms if ms > 0 else 10.0  # browsers treat a missing delay as ~10 fps
    return VideoReader(path, fps, n, size, "gif")


def _open_ffmpeg(path: Path) -> VideoReader:
    import imageio_ffmpeg

    ensure_ffmpeg()  # restores the bundled binary's executable bit inside Blender's extension
    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(gen)
        gen.close()
    except (RuntimeError, OSError, StopIteration) as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"not a readable video ({first})") from None
    size = tuple(int(v) for v in meta.get("size") or (0, 0))
    if size[0] <= 0 or size[1] <= 0:
        raise InputError(path, "video has no picture stream")
    fps = float(meta.get("fps") or 0.0)
    if not math.isfinite(fps) or fps <= 0:
        fps = DEFAULT_SEQUENCE_FPS
    duration = float(meta.get("duration") or 0.0)
    n = max(1, int(round(duration * fps))) if duration > 0 else 0
    return VideoReader(path, fps, n, (size[0], size[1]), "ffmpeg")


def write_video(path: str | Path, frames, fps: float) -> None:
    """Write RGB uint8 frames (any iterable) to an H.264 mp4 (tests and demos)."""
    import imageio_ffmpeg

    ensure_ffmpeg()
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=8,
        macro_block_size=1, ffmpeg_log_level="error",
    )
    writer.send(None)
    writer.send(np.ascontiguousarray(first))
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()
