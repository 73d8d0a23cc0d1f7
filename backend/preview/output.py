"""Preview output: watermarked PNG sequence + H.264 mp4 (imageio-ffmpeg ships its own ffmpeg).

Every frame is stamped with the visible "AI-generated" mark (backend.render.stamp_watermark); PNGs
also carry the tEXt chunks of backend.render.save_png and the mp4 a comment in its metadata.

Nothing at the final paths changes until :meth:`FrameWriter.close`: ffmpeg writes a temporary mp4
beside the target and every PNG goes to a temporary file beside its final name
(backend.output_safety); ``close`` renames them all into place, ``discard`` removes only them, so a
cancelled or failed preview leaves earlier files byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..output_safety import AtomicFile
from ..render.watermark import PNG_TEXT, stamp_watermark, write_png_file

FRAME_PATTERN = "frame_{:05d}.png"
# zlib level of preview PNGs: level 1 encodes a 512x512 frame about 4x faster than Pillow's default
# 6 for files about 15 % larger (measured: 10 vs 41 ms CPU, 160 vs 140 KB); previews are many frames
PNG_COMPRESS_LEVEL = 1
# x264's "veryfast" preset: 7.7 instead of 11.4 ms of ffmpeg CPU a 512x512 frame (the encoder shares
# the 2 cores with the render loop) for a file 1.6x larger (488 vs 307 KB for 100 avatar frames at
# the same quality setting); None = ffmpeg's default (medium)
X264_PRESET = "veryfast"


class _Closing:
    """Context-manager protocol shared by the writers: ``close`` on success, ``discard`` when the
    block raised (a cancelled or failed preview leaves earlier files as they were). Subclasses
    define both methods."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


@dataclass
class FrameWriter(_Closing):
    """Writes frames as they come. ``png_dir`` None = no PNGs; ``video`` None = no mp4.

    mp4s need even sizes (yuv420p): odd widths/heights are padded by one replicated edge pixel.
    ``first_number``: number of the first PNG (the Blender scene frame, so names match frames).
    ``png_compress_level``: zlib level 0-9; ``x264_preset``: libx264 preset (None: ffmpeg's default).
    """

    png_dir: Path | None
    video: Path | None
    fps: float
    first_number: int = 0
    png_compress_level: int = PNG_COMPRESS_LEVEL
    x264_preset: str | None = X264_PRESET
    pngs: list[Path] = field(default_factory=list)  # final paths (files exist after close())
    n_frames: int = 0
    _writer: object = field(default=None, repr=False)
    _pending: list[AtomicFile] = field(default_factory=list, repr=False)  # PNGs, then the mp4
    _video_file: AtomicFile | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.png_dir is None and self.video is None:
            raise ValueError("FrameWriter needs a PNG folder, a video path, or both")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        for p in (self.png_dir, self.video):
            if p is not None:
                target = Path(p) if p == self.png_dir else Path(p).parent
                try:
                    target.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise InputError(target, f"cannot create the output folder ({exc.strerror})") from None
        if self.video is not None and Path(self.video).suffix.lower() not in (".mp4", ".m4v", ".mov"):
            raise InputError(self.video, "the preview video must be an .mp4 (or .mov) file")

    def write(self, frame: np.ndarray) -> None:
        """Add one (H, W, 3) uint8 frame (not yet watermarked: this stamps it)."""
        stamped = stamp_watermark(frame)
        if self.png_dir is not None:
            f = AtomicFile(Path(self.png_dir) / FRAME_PATTERN.format(self.first_number + self.n_frames))
            self._pending.append(f)
            write_png_file(f.tmp, stamped, compress_level=self.png_compress_level)
            self.pngs.append(f.target)
        if self.video is not None:
            self._send(stamped)
        self.n_frames += 1

    def _send(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if self._writer is None:
            import imageio_ffmpeg

            from ..ffmpeg import ensure_ffmpeg

            ensure_ffmpeg()
            self._video_file = AtomicFile(self.video)
            self._pending.append(self._video_file)
            self._writer = imageio_ffmpeg.write_frames(
                str(self._video_file.tmp), (frame.shape[1], frame.shape[0]), fps=float(self.fps), codec="libx264",
                pix_fmt_out="yuv420p", quality=8, macro_block_size=1, ffmpeg_log_level="error",
                output_params=(["-preset", self.x264_preset] if self.x264_preset else [])
                + ["-metadata", f"comment={PNG_TEXT['Comment']}"],
            )
            self._writer.send(None)
        self._writer.send(np.ascontiguousarray(frame))

    def _stop_encoder(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()  # flushes ffmpeg and waits for it

    def close(self) -> None:
        """Finish the mp4 and move every file into place; safe to call twice."""
        try:
            self._stop_encoder()
        except BaseException:
            self.discard()
            raise
        for f in self._pending:
            f.commit()
        self._pending.clear()

    def discard(self) -> None:
        """Remove this writer's temporary files (after a cancel or an error); files that were at
        the final paths before stay as they were."""
        try:
            self._stop_encoder()
        except Exception:  # noqa: BLE001 - an encoder that failed already is being thrown away
            pass
        finally:
            for f in self._pending:
                f.discard()
            self._pending.clear()
            self.pngs.clear()
            self.n_frames = 0



class BackgroundWriter(_Closing):
    """A :class:`FrameWriter` fed from a worker thread, so the render loop never waits on the
    watermark, the PNG encoder or ffmpeg (only on a full queue, when writing is the slower side).

    Same files as the synchronous writer: the worker calls ``FrameWriter.write`` on every frame
    in order. ``put`` hands over one (H, W, 3) uint8 frame (the array must not be modified
    afterwards); ``close`` waits for the queue, finishes the mp4 and moves every file into place;
    ``discard`` stops the worker and removes only this writer's temporary files. An error in the
    worker is raised by the next ``put`` or by ``close``. ``wait_seconds``: how long ``put`` and
    ``close`` blocked the caller; ``work_seconds``: the worker's own time per frame summed.
    """

    _STOP = object()

    def __init__(self, writer: FrameWriter, max_queue: int = 8) -> None:
        import queue
        import threading

        self.writer = writer
        self.wait_seconds = 0.0
        self.work_seconds = 0.0
        self._queue: "queue.Queue" = queue.Queue(maxsize=max(1, int(max_queue)))
        self._error: BaseException | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="omg-preview-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import time

        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._cancel.is_set() or self._error is not None:
                continue  # drain without writing
            t = time.perf_counter()
            try:
                self.writer.write(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the render thread
                self._error = exc
            self.work_seconds += time.perf_counter() - t

    def _raise_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def put(self, frame: np.ndarray) -> None:
        """Queue one frame (blocks only while the queue is full)."""
        import time

        self._raise_error()
        if not self._thread.is_alive():
            raise RuntimeError("the preview writer was already closed")
        t = time.perf_counter()
        self._queue.put(frame)
        self.wait_seconds += time.perf_counter() - t

    @property
    def n_frames(self) -> int:
        return self.writer.n_frames

    @property
    def pngs(self) -> list[Path]:
        return self.writer.pngs

    def _join(self) -> None:
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join()

    def close(self) -> None:
        """Write every queued frame, finish the mp4, move the files into place."""
        import time

        t = time.perf_counter()
        try:
            self._join()
            self._raise_error()
        except BaseException:
            self.writer.discard()
            raise
        self.writer.close()
        self.wait_seconds += time.perf_counter() - t

    def discard(self) -> None:
        """Stop without writing the rest; remove only this writer's temporary files."""
        self._cancel.set()
        self._join()
        self._error = None
        self.writer.discard()
