"""Shared fixtures: the built extension zip and the bundled sample photo."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_MEDIA = ROOT.parent / "shared" / "media"


def load_script(name: str):
    """scripts/<name>.py imported as a module (the scripts folder is no package), for tests of a
    script's functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"omg_script_{name}", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def addon_zip() -> Path:
    """The extension zip for this platform, built once per test session by build_addon.py."""
    sys.path.insert(0, str(ROOT))
    import build_addon

    return build_addon.build("linux-x64", ROOT / "dist", ROOT / "build" / "wheels").zip_path


@pytest.fixture(scope="session")
def astronaut_path(tmp_path_factory) -> Path:
    """skimage's public-domain astronaut portrait written as a PNG."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("sample") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path
