"""Shared inputs for the evaluation tests: a 512x512 face crop of scikit-image's public-domain
astronaut portrait (Eileen Collins), and the metric models (loaded once per session)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def face512() -> np.ndarray:
    """RGB uint8 (512, 512, 3): the astronaut's head and shoulders, face ~170 px wide."""
    from PIL import Image
    from skimage import data

    crop = data.astronaut()[0:300, 70:370]
    return np.asarray(Image.fromarray(crop).resize((512, 512), Image.BICUBIC))


@pytest.fixture(scope="session")
def landmarker():
    from backend.eval.metrics.landmarks import FaceMeshLandmarker

    with FaceMeshLandmarker() as lm:
        yield lm


@pytest.fixture(scope="session")
def embedder():
    import dlib  # noqa: F401 - dev requirement (requirements/dev.txt): missing fails, never skips
    from backend.eval.metrics.identity import FaceEmbedder

    return FaceEmbedder()
