"""AKD, expression distance and pose distance: known shifts, rigid motions, known angles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from backend.eval.metrics.geometry import (
    AKD_GROUPS,
    akd,
    akd_breakdown,
    expression_distance,
    params_pose_distance_deg,
    pose_distance_deg,
    procrustes,
    rotation_angle_deg,
)
from backend.eval.metrics.landmarks import N_LANDMARKS, regions


def _shift(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate by (dx, dy) px, replicating the border (no wrap-around)."""
    h, w = img.shape[:2]
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return np.ascontiguousarray(img[ys][:, xs])


@pytest.fixture(scope="module")
def face_landmarks(face512, landmarker) -> np.ndarray:
    lm = landmarker(face512)
    assert lm is not None and lm.shape == (N_LANDMARKS, 3)
    return lm


def test_akd_exact_on_synthetic_points():
    a = np.random.default_rng(0).random((478, 2)) * 512
    assert akd(a, a) == 0.0
    assert akd(a + [3.0, 4.0], a) == pytest.approx(5.0)


@pytest.mark.parametrize("dx,dy", [(2, 0), (8, 0), (0, 5), (6, 8)])
def test_akd_known_image_shift(face512, landmarker, face_landmarks, dx, dy):
    """Shifting the frame by k px moves mediapipe's landmarks by ~k px (measured error < 0.3 px)."""
    moved = landmarker(_shift(face512, dx, dy))
    k = float(np.hypot(dx, dy))
    assert akd(moved, face_landmarks) == pytest.approx(k, abs=0.5 + 0.05 * k)


def test_akd_same_frame_is_zero(face512, landmarker, face_landmarks):
    assert akd(landmarker(face512.copy()), face_landmarks) == pytest.approx(0.0, abs=1e-6)


def test_regions_are_mediapipe_sets():
    r = regions()
    assert set(r.upper_face_oval) <= set(r.face_oval)
    assert len(r.lips) == 40 and len(r.left_eye) == 16 and len(r.left_brow) == 10
    assert not set(r.rigid) & set(r.lips)  # the mouth never anchors the pose fit
    assert r.expression.max() < N_LANDMARKS


def test_procrustes_recovers_similarity():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3))
    R = Rotation.from_euler("xyz", [10, -25, 40], degrees=True).as_matrix()
    y = 1.7 * x @ R.T + [1.0, -2.0, 3.0]
    fit = procrustes(x, y)
    assert fit.scale == pytest.approx(1.7)
    assert np.allclose(fit.R, R, atol=1e-9)
    assert np.allclose(fit.apply(x), y, atol=1e-9)


def test_expression_and_pose_distance_zero_for_identical(face_landmarks):
    assert expression_distance(face_landmarks, face_landmarks) == pytest.approx(0.0, abs=1e-9)
    assert pose_distance_deg(face_landmarks, face_landmarks) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("axis,angle", [("y", 20.0), ("x", 12.0), ("z", 35.0)])
def test_pose_distance_recovers_known_rotation(face_landmarks, axis, angle):
    """A rigidly rotated (and moved, rescaled) landmark set: pose distance = the angle, and the
    expression distance stays ~0 since pose is removed."""
    R = Rotation.from_euler(axis, angle, degrees=True).as_matrix()
    c = face_landmarks.mean(0)
    moved = 0.8 * (face_landmarks - c) @ R.T + c + [15.0, -7.0, 3.0]
    assert pose_distance_deg(face_landmarks, moved) == pytest.approx(angle, abs=1e-6)
    assert expression_distance(face_landmarks, moved) == pytest.approx(0.0, abs=1e-6)
    assert akd(face_landmarks, moved) > 5.0  # AKD, by contrast, sees the motion


def test_expression_distance_known_mouth_motion(face_landmarks):
    """Lips moved by 6 px (mouth opening) -> expression distance = 6 * n_lips / n_expression,
    pose distance 0 (the lips are not in the rigid set)."""
    r = regions()
    opened = face_landmarks.copy()
    opened[r.lips] += [0.0, 6.0, 0.0]
    expected = 6.0 * len(r.lips) / len(r.expression)
    assert expression_distance(face_landmarks, opened) == pytest.approx(expected, abs=1e-9)
    assert pose_distance_deg(face_landmarks, opened) == pytest.approx(0.0, abs=1e-6)


def test_params_pose_distance():
    pose_a = np.zeros((5, 3))
    pose_b = np.zeros((5, 3))
    pose_b[0] = [0.0, np.radians(15.0), 0.0]  # global yaw
    pose_b[1] = [np.radians(10.0), 0.0, 0.0]  # neck pitch
    pose_b[2] = [0.3, 0.0, 0.0]  # jaw: not head pose
    expected = rotation_angle_deg(
        Rotation.from_euler("y", 15, degrees=True).as_matrix() @ Rotation.from_euler("x", 10, degrees=True).as_matrix()
    )
    assert params_pose_distance_deg(pose_a, pose_b) == pytest.approx(expected, abs=1e-9)
    assert params_pose_distance_deg(pose_b, pose_b) == pytest.approx(0.0, abs=1e-5)
    # batched over frames
    assert params_pose_distance_deg(np.stack([pose_a, pose_b]), np.stack([pose_b, pose_b])).shape == (2,)


def test_akd_breakdown_names_the_group_and_the_shift():
    """Moving only the lips by 3 px puts the error in the lips group (the groups that share no
    landmark with the lips stay at 0); a whole-set shift by (3, 4) is all "shift" (5 px)."""
    a = np.random.default_rng(1).random((N_LANDMARKS, 2)) * 512
    r = regions()
    moved = a.copy()
    moved[r.lips] += [3.0, 0.0]
    parts = akd_breakdown(moved, a)
    assert set(parts) == set(AKD_GROUPS) | {"shift"}
    assert parts["lips"] == pytest.approx(3.0)
    assert parts["eyes"] == parts["brows"] == parts["iris"] == 0.0
    assert parts["shift"] == pytest.approx(3.0 * len(r.lips) / N_LANDMARKS)
    whole = akd_breakdown(a + [3.0, 4.0], a)
    assert all(whole[g] == pytest.approx(5.0) for g in AKD_GROUPS) and whole["shift"] == pytest.approx(5.0)
