"""The bundled sample portrait: scikit-image's public-domain ``astronaut`` (Eileen Collins, NASA)."""

from __future__ import annotations

import numpy as np

SAMPLE_NAME = "astronaut"


def sample_photo() -> np.ndarray:
    """(512, 512, 3) uint8 RGB portrait shipped inside scikit-image (no network).

    The PNG is decoded with Pillow directly: ``skimage.data.astronaut()`` gives the same pixels
    (tests/avatar/test_build_stages.py) but first imports ``skimage.io``, which scans its plugins
    (about 0.4 s of CPU, a tenth of a build without refinement)."""
    from pathlib import Path

    import skimage.data

    path = Path(skimage.data.__file__).parent / "astronaut.png"
    if not path.is_file():  # a scikit-image that fetches its data elsewhere
        return np.ascontiguousarray(skimage.data.astronaut())
    from PIL import Image

    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), np.uint8))
