"""Fixtures shared by the avatar tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut_fit():
    """(head model, photo fit, photo (512, 512, 3) float32 [0, 1], portrait mask (512, 512) float32)
    of skimage's astronaut with the bundled stand-in head model, made once per test session."""
    from skimage.data import astronaut

    from backend.avatar.imageops import to_float
    from backend.face.analyze import FaceAnalyzer
    from backend.face.fit import fit_image
    from backend.head.loader import load_head_model

    model = load_head_model(None)
    with FaceAnalyzer() as an:
        obs = an.analyze(astronaut())
    return model, fit_image(model, obs), to_float(obs.image512), np.asarray(obs.mask, np.float32)
