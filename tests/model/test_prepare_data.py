"""prepare-data: an image-sequence clip of a real portrait -> dataset in the training format (our tracker)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from backend.errors import InputError
from backend.model.data import FrameDataset


def _astronaut_clip(folder, n=4):
    from skimage.data import astronaut

    img = astronaut()  # public-domain portrait shipped with scikit-image
    folder.mkdir(parents=True)
    for t in range(n):  # a small pan: the face moves a few pixels per frame
        shifted = np.roll(img, shift=(2 * t, 3 * t), axis=(0, 1))
        Image.fromarray(shifted).save(folder / f"{t:04d}.png")


def test_prepare_data_cli_writes_a_loadable_dataset(tmp_path):
    from backend.cli import main

    _astronaut_clip(tmp_path / "videos" / "astro")
    out = tmp_path / "data"
    js = tmp_path / "prep.json"
    assert main(["prepare-data", str(tmp_path / "videos"), "-o", str(out), "--json", str(js)]) == 0
    summary = json.loads(js.read_text())
    assert summary["clips"] == 1 and summary["frames"] == 4
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["image_size"] == 512 and meta["head_model"] == "standin"
    ds = FrameDataset(out)
    assert len(ds) == 4
    f = ds.frame(0, 3)
    assert f.image.shape == (3, 512, 512) and f.mask.shape == (512, 512)
    assert 0.1 < float(f.mask.mean()) < 0.9                      # the astronaut, segmented
    assert f.camera.width == 512 and abs(f.camera.K[0, 0] - 12 * 256) < 1e-3  # the face module's source camera
    # the tracked head moves with the pan (right and down in the image)
    from backend.head.lbs import HeadModelTensors, lbs_params
    from backend.head.loader import load_head_model

    verts = lbs_params(HeadModelTensors.from_model(load_head_model(None)), ds.clips[0].params).vertices.numpy()
    uv0, _ = f.camera.project(verts[0])
    uv3, _ = f.camera.project(verts[3])
    shift = (uv3 - uv0).mean(0)
    assert shift[0] > 2 and shift[1] > 1, shift


def test_prepare_data_rejects_empty_folder(tmp_path):
    from backend.model.prepare import find_clips

    with pytest.raises(InputError, match="no videos"):
        find_clips(tmp_path)
