"""Find the evaluation photos and videos in a media folder.

Layout: ``DIR/photos/*`` and ``DIR/videos/*`` (the shared media layout), or files directly in DIR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PHOTO_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif", ".m4v"}


@dataclass
class MediaSet:
    root: Path | None
    photos: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.photos and not self.videos


def default_media_dir() -> Path:
    """``../shared/media`` relative to the repository (the folder above ``backend/``)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "media"


def _files(folder: Path, exts: set[str]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)


def find_media(root: str | Path | None) -> MediaSet:
    """Photos and videos under ``root`` (sorted by name); an empty set when the folder is absent."""
    if root is None:
        return MediaSet(None)
    root = Path(root)
    if not root.is_dir():
        return MediaSet(root)
    photos = _files(root / "photos", PHOTO_EXTS) + _files(root, PHOTO_EXTS)
    videos = _files(root / "videos", VIDEO_EXTS) + _files(root, VIDEO_EXTS)
    return MediaSet(root, photos, videos)
