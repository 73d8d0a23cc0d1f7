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


@dataclass
class FrameWriter:
    """Writes frames as they come. ``png_dir`` None = no PNGs; ``video`` None = no mp4.

    mp4s need even sizes (yuv420p): odd widths/heights are padded by one replicated edge pixel.
    ``first_number``: number of the first PNG (the Blender scene frame, so names match frames).
    """

    png_dir: Path | None
    video: Path | None
    fps: float
    first_number: int = 0
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
            write_png_file(f.tmp, stamped)
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
                output_params=["-metadata", f"comment={PNG_TEXT['Comment']}"],
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

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
