"""Fixtures of the model tests (CPU, stand-in head model)."""

from __future__ import annotations

import pytest
import torch
from omg_helpers import SMALL_DINO

from backend.head.loader import load_head_model
from backend.model.dinov2 import DinoV2


@pytest.fixture(scope="session")
def head_model():
    return load_head_model(None)


@pytest.fixture(scope="session")
def small_dino() -> DinoV2:
    torch.manual_seed(123)
    return DinoV2(SMALL_DINO).eval().requires_grad_(False)
