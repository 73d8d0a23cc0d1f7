"""Photo input: any common still image -> RGB uint8 at full resolution (+ optional alpha mask).

Handles JPEG / PNG / WebP / TIFF (and anything else Pillow reads), applies the EXIF orientation,
converts grayscale, palette, CMYK, 16-bit and float images to 8-bit RGB, and composites an alpha
channel onto a flat background while keeping the alpha as a mask. Full resolution is kept for
colour sampling; ``detection_image`` gives a bounded-size copy for the face detector.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

# Faces are found on a copy whose longer side is at most this many pixels: mediapipe's detector
# works at 128/192 px internally, so larger inputs only cost conversion time.
DETECTION_MAX_SIDE = 1920
# Refuse images beyond this many pixels (a decompression bomb or a scan, not a portrait). Pillow
# itself refuses beyond 2 x Image.MAX_IMAGE_PIXELS (179 MP) before the size is known to us.
MAX_PIXELS = 100_000_000


@dataclass
class LoadedImage:
    """A decoded photo.

    rgb:   (H, W, 3) uint8, full resolution, EXIF orientation applied, alpha composited.
    alpha: (H, W) float32 in [0, 1] when the file had transparency, else None.
    path:  the source file (None for in-memory arrays).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    path: Path | None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def detection_image(self, max_side: int = DETECTION_MAX_SIDE) -> tuple[np.ndarray, float]:
        """A copy whose longer side is <= max_side and the factor s with det_px = s * full_px."""
        return downscale(self.rgb, max_side)


def downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Area-downscale (H, W, 3) uint8 so max(H, W) <= max_side; returns (image, scale <= 1)."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(1.0, max_side / float(max(h, w)))
    if s >= 1.0:
        return rgb, 1.0
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return small, nw / float(w)


def _to_unit_float(arr: np.ndarray) -> np.ndarray:
    """Integer/float pixel array -> float32 in [0, 1] using the dtype's range (floats: clipped)."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.integer):
        # PIL "I" mode (int32) holds 16-bit PNG/TIFF data; use 16-bit range unless it exceeds it.
        hi = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
        return np.clip(arr.astype(np.float32) / hi, 0.0, 1.0)
    a = arr.astype(np.float32)
    if a.max(initial=0.0) > 1.0:  # float images stored in 0..255 or 0..65535
        a = a / (255.0 if a.max() <= 255.0 else 65535.0)
    return np.clip(a, 0.0, 1.0)


def _pil_to_arrays(im) -> tuple[np.ndarray, np.ndarray | None]:
    """Pillow image of any mode -> (rgb float32 (H,W,3) in [0,1], alpha float32 (H,W) | None)."""
    mode = im.mode
    if mode in ("RGB",):
        return np.asarray(im, dtype=np.float32) / 255.0, None
    if mode == "RGBA":
        a = np.asarray(im, dtype=np.float32) / 255.0
        return a[..., :3], a[..., 3]
    if mode in ("LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info):
        a = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        return a[..., :3], a[..., 3]
    if mode.startswith("I;16") or mode in ("I", "F"):
        g = _to_unit_float(np.asarray(im))
        return np.repeat(g[..., None], 3, axis=2), None
    if mode == "CMYK":
        return _cmyk_to_rgb(im), None
    # L, 1, P, YCbCr, LAB, HSV...: Pillow's own conversion is exact for these.
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0, None


def _cmyk_to_rgb(im) -> np.ndarray:
    """CMYK -> RGB, through the embedded ICC profile when there is one (colour-managed)."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            import io

            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            return np.asarray(out, dtype=np.float32) / 255.0
        except Exception:  # broken profile: fall back to the plain formula below
            pass
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _read_16bit_with_cv2(path: Path) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Multi-channel 16-bit files (RGB(A) PNG/TIFF) that Pillow truncates or cannot open."""
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if arr is None or arr.dtype == np.uint8 or arr.ndim != 3:
        return None
    # cv2 applies no EXIF orientation for IMREAD_UNCHANGED; such files rarely carry one.
    a = _to_unit_float(arr)
    if a.shape[2] == 4:
        return a[..., 2::-1], a[..., 3]
    return a[..., 2::-1][..., :3], None


def _is_16bit_colour(path: Path, im) -> bool:
    """True for PNG/TIFF colour files with 16 bits per channel (Pillow would drop the low byte)."""
    if im.format == "PNG":
        with open(path, "rb") as f:
            head = f.read(25)
        return len(head) == 25 and head[24] == 16  # IHDR bit depth
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)
        return bits is not None and max(bits if isinstance(bits, tuple) else (bits,)) > 8
    return False


def composite(rgb: np.ndarray, alpha: np.ndarray, background: tuple[float, float, float]) -> np.ndarray:
    """Alpha-composite float RGB (H,W,3) over a flat background colour (floats in [0, 1])."""
    bg = np.asarray(background, dtype=np.float32)
    return rgb * alpha[..., None] + bg * (1.0 - alpha[..., None])


def load_image(
    path: str | Path, background: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> LoadedImage:
    """Read a photo file.

    path:       JPEG / PNG / WebP / TIFF / BMP / ... file.
    background: RGB in [0, 1] that transparent pixels are composited onto (default white).
    Raises InputError for missing, empty, non-image, truncated or absurdly large files.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, expected an image file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit is below
            im = Image.open(path)
            if im.width * im.height > MAX_PIXELS:
                raise InputError(path, f"image is too large: {im.width}x{im.height} pixels = "
                                       f"{im.width * im.height / 1e6:.0f} MP (the limit is "
                                       f"{MAX_PIXELS / 1e6:.0f} MP)")
            im.load()  # decode now so truncation is reported here, not later
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        import re

        m = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(m.group(1)) / 1e6:.0f} MP" if m else "more than 179 MP"
        raise InputError(path, f"image is too large: {size} (the limit is {MAX_PIXELS / 1e6:.0f} "
                               "MP)") from None
    except UnidentifiedImageError:
        raise InputError(path, "not a readable image (unknown format or not an image file)") from None
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg or "broken data stream" in msg or "premature end" in msg.lower():
            raise InputError(path, "image file is truncated or corrupt") from None
        raise InputError(path, f"cannot decode image ({msg})") from None
    except Exception as exc:  # noqa: BLE001 - any decoder crash is bad input for the user
        raise InputError(path, f"cannot decode image ({exc})") from None

    im = ImageOps.exif_transpose(im)
    rgb, alpha = None, None
    if im.mode in ("RGB", "RGBA") and _is_16bit_colour(path, im):
        # Pillow reads 16-bit-per-channel colour files as 8-bit (or not at all): prefer cv2 there.
        got = _read_16bit_with_cv2(path)
        if got is not None:
            rgb, alpha = got
    if rgb is None:
        rgb, alpha = _pil_to_arrays(im)
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise InputError(path, f"image is too small ({rgb.shape[1]}x{rgb.shape[0]} pixels)")
    if alpha is not None:
        if float(alpha.min()) >= 1.0:
            alpha = None  # fully opaque alpha channel: carries no mask
        else:
            rgb = composite(rgb, alpha, background)
    rgb8 = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return LoadedImage(rgb=np.ascontiguousarray(rgb8), alpha=alpha, path=path)


def image_from_array(rgb: np.ndarray) -> LoadedImage:
    """Wrap an in-memory (H,W,3) / (H,W) / (H,W,4) uint8 array as a LoadedImage (tests, add-on)."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    alpha = None
    if a.shape[2] == 4:
        f = _to_unit_float(a)
        alpha = f[..., 3]
        a = np.clip(composite(f[..., :3], alpha, (1.0, 1.0, 1.0)) * 255 + 0.5, 0, 255).astype(np.uint8)
    if a.dtype != np.uint8:
        a = np.clip(_to_unit_float(a) * 255 + 0.5, 0, 255).astype(np.uint8)
    return LoadedImage(rgb=np.ascontiguousarray(a[..., :3]), alpha=alpha, path=None)
