"""Visible "AI-generated" watermark and PNG text chunks for every rendered image.

The mark is Pillow's built-in bitmap font (no font files, identical on every machine), scaled up
by an integer factor with nearest-neighbour so it stays crisp: 2x (about 22 px tall) at 512x512,
proportional to the image height. White text on a semi-opaque dark box in a corner.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

WATERMARK_TEXT = "AI-generated"
PNG_TEXT = {
    "AI-generated": "true",
    "Comment": "AI-generated image rendered by OMG Avatar (synthetic, not a photograph)",
    "Software": "OMG Avatar",
}
Corner = Literal["bottom-right", "bottom-left", "top-right", "top-left"]

_GLYPHS: dict[str, np.ndarray] = {}


def _text_mask(text: str) -> np.ndarray:
    """(h, w) float32 coverage of ``text`` in the built-in bitmap font (cached)."""
    if text not in _GLYPHS:
        font = ImageFont.load_default_imagefont()
        left, top, right, bottom = font.getbbox(text)
        canvas = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(canvas).text((-left, -top), text, fill=255, font=font)
        _GLYPHS[text] = np.asarray(canvas, np.float32) / 255.0
    return _GLYPHS[text]


def watermark_scale(height: int) -> int:
    """Integer glyph scale: 2 at 512 px, at least 1."""
    return max(1, int(round(height / 256.0)))


def stamp_watermark(
    image: np.ndarray,
    text: str = WATERMARK_TEXT,
    corner: Corner = "bottom-right",
    box_opacity: float = 0.6,
) -> np.ndarray:
    """Return a copy of ``image`` (H, W, 3) uint8 with ``text`` stamped in ``corner``."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"stamp_watermark expects (H, W, 3) uint8, got {img.shape} {img.dtype}")
    H, W = img.shape[:2]
    s = watermark_scale(H)
    mask = _text_mask(text)
    mask = np.repeat(np.repeat(mask, s, axis=0), s, axis=1)  # [h*s, w*s] nearest-neighbour upscale
    pad = 3 * s
    bh, bw = mask.shape[0] + 2 * pad, mask.shape[1] + 2 * pad
    margin = 2 * s
    if bh + margin > H or bw + margin > W:  # tiny images: shrink to fit rather than clip the text
        s = 1
        mask = _text_mask(text)
        pad, margin = 1, 0
        bh, bw = mask.shape[0] + 2 * pad, mask.shape[1] + 2 * pad
        if bh > H or bw > W:
            raise ValueError(f"image {W}x{H} is too small for the watermark ({bw}x{bh})")
    y0 = margin if corner.startswith("top") else H - margin - bh
    x0 = margin if corner.endswith("left") else W - margin - bw
    out = img.copy()  # only the box changes: the rest stays as it was, bit for bit
    region = out[y0 : y0 + bh, x0 : x0 + bw].astype(np.float32)
    region *= 1.0 - box_opacity  # dark semi-opaque box
    text_alpha = np.zeros((bh, bw), np.float32)
    text_alpha[pad : pad + mask.shape[0], pad : pad + mask.shape[1]] = mask
    region += text_alpha[..., None] * (255.0 - region)  # white text over the box
    out[y0 : y0 + bh, x0 : x0 + bw] = np.clip(np.rint(region), 0, 255).astype(np.uint8)
    return out


def to_uint8(image) -> np.ndarray:
    """Accept (H, W, 3) uint8 or float in [0, 1], numpy or torch ((3, H, W) torch too) -> uint8."""
    if hasattr(image, "detach"):
        t = image.detach().cpu()
        if t.dim() == 3 and t.shape[0] == 3 and t.shape[-1] != 3:
            t = t.permute(1, 2, 0)
        image = t.numpy()
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got {img.shape}")
    if img.dtype == np.uint8:
        return img
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"expected uint8 or float image, got {img.dtype}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or inf")
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def save_png(path: str | Path, image, corner: Corner = "bottom-right", extra_text: dict[str, str] | None = None,
             compress_level: int = 6) -> Path:
    """Stamp the watermark and write a PNG with tEXt chunks saying it is AI-generated.

    image: (H, W, 3) uint8, or float in [0, 1] (numpy or torch, (3, H, W) accepted);
    compress_level: zlib level 0-9 (the pixels are the same at every level). Returns path.
    """
    return write_stamped_png(path, stamp_watermark(to_uint8(image), corner=corner), extra_text, compress_level)


def write_stamped_png(path: str | Path, stamped: np.ndarray, extra_text: dict[str, str] | None = None,
                      compress_level: int = 6) -> Path:
    """Write an already watermarked (H, W, 3) uint8 image as a PNG with the AI-generated tEXt chunks."""
    path = Path(path)
    from ..output_safety import atomic_path

    with atomic_path(path) as tmp:  # an earlier file at ``path`` survives a failed write
        write_png_file(tmp, stamped, extra_text, compress_level)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png_rgb(image: np.ndarray, text: dict[str, str], compress_level: int = 6) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 image with ``text`` as tEXt chunks (latin-1 keys/values).

    Every row uses the "Up" filter (its difference to the row above, one numpy subtraction) and
    zlib at ``compress_level``: for rendered frames that compresses as well as Pillow's encoder
    (169 KB at level 1 for a 512x512 avatar frame, both) in half its time (4.9 vs 10.1 ms), which
    the preview writer pays on every frame. Decoders see an ordinary 8-bit RGB PNG."""
    H, W, _ = image.shape
    rows = np.ascontiguousarray(image).reshape(H, W * 3)
    raw = np.empty((H, W * 3 + 1), np.uint8)
    raw[:, 0] = 2  # filter type Up (the first row's "above" is zero)
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])  # uint8 wraps modulo 256, as PNG requires
    chunks = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))]
    chunks += [_png_chunk(b"tEXt", k.encode("latin-1") + b"\0" + v.encode("latin-1")) for k, v in text.items()]
    chunks += [_png_chunk(b"IDAT", zlib.compress(raw.tobytes(), compress_level)), _png_chunk(b"IEND", b"")]
    return b"".join(chunks)


def _latin1(text: dict[str, str]) -> bool:
    try:
        for k, v in text.items():
            k.encode("latin-1"), v.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return all(0 < len(k) < 80 and "\0" not in k + v for k, v in text.items())


def write_png_file(path: str | Path, stamped: np.ndarray, extra_text: dict[str, str] | None = None,
                   compress_level: int = 6) -> None:
    """Write the PNG bytes of :func:`write_stamped_png` straight to ``path`` (callers that manage
    their own temporary file, e.g. the preview FrameWriter, use this). ``compress_level``: zlib
    level 0-9 (Pillow's default 6). RGB uint8 images with latin-1 text go through
    :func:`encode_png_rgb`; anything else through Pillow."""
    text = {**PNG_TEXT, **(extra_text or {})}
    if stamped.dtype == np.uint8 and stamped.ndim == 3 and stamped.shape[2] == 3 and _latin1(text):
        Path(path).write_bytes(encode_png_rgb(stamped, text, compress_level))
        return
    info = PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    Image.fromarray(stamped).save(path, format="PNG", pnginfo=info, compress_level=compress_level)
