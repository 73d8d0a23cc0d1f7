"""Wrong file kinds and non-finite values get one line naming the file and the problem."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backend.errors import InputError


def _gaussians(n: int = 5):
    from backend.avatar.gaussians import GaussianSet

    rng = np.random.default_rng(0)
    q = rng.normal(size=(n, 4))
    return GaussianSet(rng.normal(size=(n, 3)), q / np.linalg.norm(q, axis=1, keepdims=True),
                       np.full((n, 3), 0.01), np.full(n, 0.5), np.full((n, 3), 0.5))


@pytest.mark.parametrize("column, value, what", [("scale_1", np.nan, "scales"), ("scale_0", 1e6, "scales"),
                                                 ("opacity", np.nan, "opacities"), ("x", np.inf, "positions"),
                                                 ("rot_2", np.nan, "rotations"), ("f_dc_0", np.inf, "colours")])
def test_ply_non_finite_values_refused(tmp_path, column, value, what):
    from plyfile import PlyData

    from backend.avatar.ply import read_ply, write_ply

    good = write_ply(tmp_path / "good.ply", _gaussians())
    ply = PlyData.read(str(good), mmap=False)
    ply["vertex"].data[column][3] = value
    path = tmp_path / "g.ply"
    ply.write(str(path))
    with pytest.raises(InputError, match=f"g.ply: PLY has non-finite .*{what} in 1 of 5 Gaussians "
                                         r"\(first: vertex 3\)"):
        read_ply(path)


def test_wrong_file_kind_for_an_argument(tmp_path):
    from backend.avatar.fileformat import load_avatar
    from backend.avatar.ply import write_ply
    from backend.face.video import write_video
    from backend.motion import load_motion

    clip = tmp_path / "clip.mp4"
    write_video(clip, [np.zeros((32, 32, 3), np.uint8)] * 3, 25)
    with pytest.raises(InputError, match=r"clip.mp4: is a video \(mp4/mov\), not a motion file: "
                                         "expected a track .npz"):
        load_motion(clip)
    photo = tmp_path / "me.png"
    Image.new("RGB", (8, 8)).save(photo)
    with pytest.raises(InputError, match=r"me.png: is a PNG image, not an avatar file \(.omgavatar"):
        load_avatar(photo)
    ply = write_ply(tmp_path / "g.ply", _gaussians())
    with pytest.raises(InputError, match="g.ply: is a PLY point cloud, not an avatar file"):
        load_avatar(ply)
    with pytest.raises(InputError, match="g.ply: is a PLY point cloud, not a motion file"):
        load_motion(ply)
    # a damaged real avatar file still says so
    from safetensors.numpy import save_file

    st = tmp_path / "cut.omgavatar"
    save_file({"a": np.zeros(1000, np.float32)}, str(st))
    st.write_bytes(st.read_bytes()[:200])
    with pytest.raises(InputError, match="cut.omgavatar: a damaged .omgavatar file"):
        load_avatar(st)


def test_cli_prints_our_warnings_as_one_line(capsys, monkeypatch):
    import warnings

    from backend import cli
    from backend.commands import track
    from backend.errors import OMGWarning

    def run(args):  # the command's body replaced by one that warns: the CLI's printing is tested
        warnings.warn(OMGWarning("clip.mp4: something was worked around"))
        warnings.warn("a library's own warning", RuntimeWarning)
        return 0

    monkeypatch.setattr(track, "run", run)
    assert cli.main(["track", "x.mp4", "-o", "t.npz"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: clip.mp4: something was worked around\n")
    assert "a library's own warning" not in err.splitlines()[0]  # others go Python's own way
