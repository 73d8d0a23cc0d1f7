"""What kind of file is this? A look at the first bytes, for messages like "is an mp4 video, not a
track file" when a user gives the wrong file to an argument (no file is parsed here)."""

from __future__ import annotations

from pathlib import Path

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"PK\x03\x04", "a zip/.npz archive"),
    (0, b"PK\x05\x06", "an empty zip/.npz archive"),
    (4, b"ftyp", "a video (mp4/mov)"),
    (0, b"\x1aE\xdf\xa3", "a video (mkv/webm)"),
    (0, b"RIFF", "a RIFF media file (avi/wav/webp)"),
    (0, b"\x89PNG", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (0, b"BM", "a BMP image"),
    (0, b"ply\n", "a PLY point cloud"),
    (0, b"ply\r\n", "a PLY point cloud"),
    (0, b"\x80\x02", "a Python pickle"),
    (0, b"\x80\x04", "a Python pickle"),
    (0, b"\x80\x05", "a Python pickle"),
    (0, b"\x93NUMPY", "a .npy array"),
    (0, b"BLENDER", "a .blend file"),
    (0, b"%PDF", "a PDF document"),
)


def describe(path: str | Path) -> str | None:
    """A short phrase for what ``path`` holds ("a PNG image", "a video (mp4/mov)", ...), "an
    .omgavatar/safetensors file" for safetensors, "a text file" for text, None when unknown."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return None
    if not head:
        return "an empty file"
    for offset, magic, what in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return what
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors file"  # 8-byte little-endian header length, then JSON
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return None


def wrong_kind(path: str | Path, expected: str) -> str:
    """Message tail "is a PNG image, not <expected>" (or "is not <expected>" when unknown)."""
    what = describe(path)
    return f"is {what}, not {expected}" if what else f"is not {expected}"


# Inputs a multi-view build reads as a clip (backend.avatar.multiview): here, where the build
# command can ask without importing the multi-view build (about 20 ms of CPU on a one-photo build)
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v", ".gif")


def is_video(path: str | Path) -> bool:
    """A clip for the multi-view build: a folder of frames or a file with a video suffix."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES
