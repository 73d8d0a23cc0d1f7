"""Photo input: formats, conversions and the error for each kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backend.errors import InputError
from backend.face import load_image
from backend.face.image import image_from_array


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


@pytest.mark.parametrize("suffix,tol", [(".png", 0.0), (".jpg", 3.0), (".webp", 4.0), (".tif", 0.0)])
def test_formats_decode_to_rgb(tmp_path, astronaut, suffix, tol):
    path = tmp_path / f"a{suffix}"
    Image.fromarray(astronaut).save(path, **({"quality": 95} if suffix in (".jpg", ".webp") else {}))
    img = load_image(path)
    assert img.rgb.shape == (512, 512, 3) and img.rgb.dtype == np.uint8
    assert img.alpha is None
    assert _mean_abs(img.rgb, astronaut) <= tol


def test_grayscale_16bit_and_cmyk(tmp_path, astronaut):
    gray = astronaut.mean(2)
    Image.fromarray(gray.astype(np.uint8)).save(tmp_path / "g.png")
    g8 = load_image(tmp_path / "g.png").rgb
    assert g8.shape == (512, 512, 3) and np.array_equal(g8[..., 0], g8[..., 2])
    Image.fromarray((gray * 257).astype(np.uint16)).save(tmp_path / "g16.png")  # mode I;16
    g16 = load_image(tmp_path / "g16.png").rgb
    assert np.abs(g16[..., 0].astype(float) - gray).max() <= 1.0

    import cv2

    cv2.imwrite(str(tmp_path / "c16.png"), astronaut[..., ::-1].astype(np.uint16) * 257)  # 16-bit RGB
    assert np.array_equal(load_image(tmp_path / "c16.png").rgb, astronaut)

    Image.fromarray(astronaut).convert("CMYK").save(tmp_path / "c.jpg")
    assert _mean_abs(load_image(tmp_path / "c.jpg").rgb, astronaut) < 4.0


def test_rgba_composited_and_kept_as_mask(tmp_path, astronaut):
    alpha = np.zeros((512, 512), np.uint8)
    alpha[:, 256:] = 255
    Image.fromarray(np.dstack([astronaut, alpha])).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png", background=(0.5, 0.5, 0.5))
    assert img.alpha is not None and img.alpha.shape == (512, 512)
    assert img.alpha[:, :256].max() == 0.0 and img.alpha[:, 256:].min() == 1.0
    assert np.all(img.rgb[:, :256] == 128)  # transparent half: the background colour
    assert np.array_equal(img.rgb[:, 256:], astronaut[:, 256:])
    opaque = image_from_array(np.dstack([astronaut, np.full((512, 512), 255, np.uint8)]))
    assert np.array_equal(opaque.rgb, astronaut)


def test_exif_orientation_applied(tmp_path, astronaut):
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 deg clockwise turn
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, 1))).save(path, exif=exif, quality=95)
    img = load_image(path)
    assert _mean_abs(img.rgb, astronaut) < 3.0


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("this is not a picture\n"), "not a readable image"),
])
def test_bad_files(tmp_path, make, message):
    path = tmp_path / "photo.png"
    make(path)
    with pytest.raises(InputError, match=message) as err:
        load_image(path)
    assert err.value.path == str(path)
    assert "photo.png" in str(err.value)


def test_truncated_jpeg(tmp_path, astronaut):
    full = tmp_path / "full.jpg"
    Image.fromarray(astronaut).save(full, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated or corrupt") as err:
        load_image(cut)
    assert "cut.jpg" in str(err.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)
