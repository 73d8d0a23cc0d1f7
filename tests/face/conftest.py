"""Fixtures for the face tests: the stand-in head model, one analyzer, the astronaut photo."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def head_model():
    from backend.head.loader import load_head_model

    return load_head_model(None)


@pytest.fixture(scope="session")
def analyzer():
    from backend.face import FaceAnalyzer

    fa = FaceAnalyzer()
    yield fa
    fa.close()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """skimage's public-domain astronaut portrait, (512, 512, 3) uint8."""
    from skimage import data

    return data.astronaut()
