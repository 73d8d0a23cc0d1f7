"""Visible "AI-generated" mark and PNG tEXt chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from backend.render import WATERMARK_TEXT, save_png, stamp_watermark


def _changed_box(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(np.any(a != b, axis=2))
    return ys.min(), ys.max(), xs.min(), xs.max()


@pytest.mark.parametrize("corner", ["bottom-right", "bottom-left", "top-right", "top-left"])
def test_stamp_changes_only_its_corner(corner: str) -> None:
    img = np.random.default_rng(0).integers(0, 256, size=(512, 512, 3), dtype=np.uint8)
    out = stamp_watermark(img, corner=corner)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, img)
    y0, y1, x0, x1 = _changed_box(img, out)
    # legible size at 512x512: about 2x the 11 px bitmap font, a box of ~35 x 150 px
    assert 25 <= y1 - y0 + 1 <= 50 and 120 <= x1 - x0 + 1 <= 220
    assert (y1 > 400) == corner.startswith("bottom") and (x1 > 400) == corner.endswith("right")
    region = out[y0 : y1 + 1, x0 : x1 + 1].astype(int)
    # white glyph pixels and a darkened box behind them
    assert (region.min(axis=2) == 255).sum() > 150
    assert np.median(region) < np.median(img[y0 : y1 + 1, x0 : x1 + 1])


def test_stamp_is_legible_on_white_and_black() -> None:
    for value in (0, 255):
        img = np.full((512, 512, 3), value, np.uint8)
        out = stamp_watermark(img)
        y0, y1, x0, x1 = _changed_box(img, out)
        region = out[y0 : y1 + 1, x0 : x1 + 1, 0].astype(int)
        # text vs box contrast stays high whatever the background
        assert region.max() - np.percentile(region, 20) > 120


def test_small_images_and_bad_inputs() -> None:
    small = stamp_watermark(np.zeros((40, 90, 3), np.uint8))
    assert (small != 0).any()
    with pytest.raises(ValueError, match="too small"):
        stamp_watermark(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        stamp_watermark(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        stamp_watermark(np.zeros((64, 64), np.uint8))


def test_save_png_stamps_and_writes_text_chunk(tmp_path) -> None:
    img = np.full((256, 256, 3), 128, np.uint8)
    path = save_png(tmp_path / "sub" / "frame.png", img)
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.text["AI-generated"] == "true"
        assert "AI-generated" in im.text["Comment"]
        pixels = np.asarray(im.convert("RGB"))
    assert (pixels != 128).any() and (pixels[:64, :64] == 128).all()  # stamped bottom-right only
    raw = path.read_bytes()
    assert b"tEXtAI-generated\x00true" in raw  # a real tEXt chunk, keyword + NUL + text
    # float torch (3, H, W) input in [0, 1]
    t = torch.full((3, 64, 96), 0.5)
    p2 = save_png(tmp_path / "t.png", t, extra_text={"Frame": "7"})
    with Image.open(p2) as im:
        assert im.size == (96, 64) and im.text["Frame"] == "7"
    with pytest.raises(ValueError, match="NaN"):
        save_png(tmp_path / "bad.png", np.full((32, 32, 3), np.nan, np.float32))
    assert WATERMARK_TEXT == "AI-generated"


def test_png_encoder_round_trips_and_falls_back_to_pillow(tmp_path) -> None:
    """encode_png_rgb (Up filter + zlib): Pillow and zlib's own decoding give back every pixel of
    a random odd-sized image and a rendered-like smooth one (wrap-around differences included),
    with the text chunks; non-latin-1 text goes through Pillow (iTXt) and still reads back."""
    from backend.render.watermark import encode_png_rgb, write_png_file

    rng = np.random.default_rng(0)
    smooth = np.clip(np.linspace(0, 255, 61)[None, :, None] + rng.normal(0, 3, (37, 61, 3)), 0, 255).astype(np.uint8)
    for img in (rng.integers(0, 256, (37, 61, 3), dtype=np.uint8), smooth):
        for level in (1, 6):
            path = tmp_path / f"x{level}.png"
            write_png_file(path, img, {"omg:view": "source"}, compress_level=level)
            with Image.open(path) as im:
                assert im.mode == "RGB" and im.text["AI-generated"] == "true" and im.text["omg:view"] == "source"
                np.testing.assert_array_equal(np.asarray(im), img)
    raw = encode_png_rgb(smooth, {"a": "b"}, 1)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n") and b"tEXta\x00b" in raw
    write_png_file(tmp_path / "u.png", smooth, {"omg:name": "Zoë 😀"})
    with Image.open(tmp_path / "u.png") as im:
        assert im.text["omg:name"] == "Zoë 😀"
        np.testing.assert_array_equal(np.asarray(im), smooth)
