"""Shared fixtures for the preview tests: the astronaut avatar and the synthetic clip (built once)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def preview_assets(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("preview-assets")


@pytest.fixture(scope="session")
def astronaut(preview_assets):
    """(avatar, model, path) of the LOD-0 astronaut avatar."""
    from synthetic import astronaut_avatar

    return astronaut_avatar(preview_assets)
