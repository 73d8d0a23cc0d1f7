"""imageio-ffmpeg's bundled ffmpeg, made usable where an installer dropped its executable bit.

Blender's extension installer unpacks wheels with Python's zipfile, which does not keep Unix file
modes, so ``imageio_ffmpeg/binaries/ffmpeg-*`` lands without +x and imageio-ffmpeg reports "No
ffmpeg exe could be found". Restoring the bit on that one file (inside the imageio_ffmpeg package,
nothing else) makes video reading and writing work inside Blender.
"""

from __future__ import annotations

import stat
from pathlib import Path

from .errors import OMGError


def ensure_ffmpeg() -> str:
    """The ffmpeg executable imageio-ffmpeg will use (its bundled one made executable if needed)."""
    import imageio_ffmpeg

    binaries = Path(imageio_ffmpeg.__file__).resolve().parent / "binaries"
    for exe in binaries.glob("ffmpeg-*"):
        if exe.suffix in (".md", ".py", ".txt") or not exe.is_file():
            continue
        mode = exe.stat().st_mode
        if not mode & stat.S_IXUSR:
            try:
                exe.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            except OSError:
                pass  # read-only install: imageio-ffmpeg falls back to a system ffmpeg
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise OMGError(f"no usable ffmpeg ({exc})") from None
