"""scripts/pitch_sweep.py: a frame pitched by an offset keeps its face and body where they were."""

from __future__ import annotations

import numpy as np
import pytest

from backend.face.crop import CROP_SIZE, crop_intrinsics, crop_viewmat
from backend.head.loader import load_head_model
from backend.head.params import HeadParams
from backend.render.camera import Camera
from backend.rotations import axis_angle_to_matrix
from tests.conftest import load_script


@pytest.fixture(scope="module")
def sweep():
    return load_script("pitch_sweep")


def test_a_pitched_frame_keeps_its_face_and_body_in_place(sweep):
    model = load_head_model()
    cam = Camera(crop_intrinsics(), crop_viewmat(), CROP_SIZE, CROP_SIZE)
    p = HeadParams.zeros(model)
    p.pose[0, 0] = (0.05, 0.3, 0.02)  # turned and tilted a little: the offset is about the head's own x axis
    p.transl[0] = (0.01, -0.02, 0.03)
    p.torso = np.array([[0.002, 0.004, 0.0]], np.float32)
    rest_z = np.asarray(model.v_template)[:, 2]
    front = rest_z > np.quantile(rest_z, 1.0 - sweep.FRONT_SHARE)
    goal, _ = sweep._front_centre(model, p, cam, front)
    top = np.argmax(np.asarray(model.v_template)[:, 1])
    top_uv = {}
    for delta in (-8.0, 8.0):
        q = sweep.pitched(model, p, cam, delta, front)
        uv, _ = sweep._front_centre(model, q, cam, front)
        assert np.abs(uv - goal).max() < 0.1                        # the face stays (px)
        np.testing.assert_allclose(q.transl + q.torso, p.transl + p.torso, atol=1e-6)  # so does the body
        rel = axis_angle_to_matrix(p.pose[0, 1]).T @ axis_angle_to_matrix(q.pose[0, 1])
        np.testing.assert_allclose(rel, [[1, 0, 0], [0, np.cos(np.radians(delta)), -np.sin(np.radians(delta))],
                                         [0, np.sin(np.radians(delta)), np.cos(np.radians(delta))]], atol=1e-5)
        top_uv[delta] = cam.project(sweep.lbs_numpy(model, q)[0][0][top][None])[0][0, 1]
    # the top of the head moves against the kept face: tilted back it lies lower in the image
    # than nodded forward (44 px between -8 and +8 deg here), which the flat face barely shows
    assert top_uv[-8.0] - top_uv[8.0] > 20.0, top_uv
