"""The bundled sample portrait: scikit-image's public-domain ``astronaut`` (Eileen Collins, NASA)."""

from __future__ import annotations

import numpy as np

SAMPLE_NAME = "astronaut"


def sample_photo() -> np.ndarray:
    """(512, 512, 3) uint8 RGB portrait shipped inside scikit-image (no network)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())
