"""scripts/demo.py refuses to start when one of its outputs is the user's photo."""

from __future__ import annotations

import os

import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def demo():
    return load_script("demo")


def test_the_demo_lists_every_picture_it_writes(demo, tmp_path):
    names = {p.name for p in demo.demo_outputs(tmp_path, 2, "splats")}
    assert {"avatar.blend", "avatar.omgavatar", "figures.json", "render_lod2.png",
            "render_lod2_threequarter_animated.png", "turntable_lod2.png", "back_lod2.png"} <= names
    assert "render_lod2_raw.png" in {p.name for p in demo.demo_outputs(tmp_path, 2, "cycles")}


@pytest.mark.parametrize("name", ["back_lod2.png", "turntable_lod2.png", "render_lod2.png"])
def test_a_photo_named_like_an_output_is_refused_before_any_work(demo, tmp_path, name):
    from backend.output_safety import OutputError

    photo = tmp_path / name
    photo.write_bytes(b"the user's photo")
    with pytest.raises(OutputError, match="also an input"):
        demo.check_demo_outputs(tmp_path, photo, 2, "splats")
    assert demo.main(["--photo", str(photo), "--out", str(tmp_path)]) == 2
    assert photo.read_bytes() == b"the user's photo"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]      # nothing written
    assert "NUMBA_CACHE_DIR" not in os.environ or os.environ["NUMBA_CACHE_DIR"] != str(demo.ROOT / "build" / "numba-omg_avatar")


def test_a_photo_elsewhere_passes(demo, tmp_path):
    photo = tmp_path / "me.jpg"
    photo.write_bytes(b"x")
    demo.check_demo_outputs(tmp_path / "out", photo, 2, "splats")
    assert not (tmp_path / "out").exists()                           # the check creates nothing
