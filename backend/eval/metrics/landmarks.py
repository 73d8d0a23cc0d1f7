"""The landmark metric model: mediapipe's 478-point face mesh run on the evaluation frame itself.

Unlike ``backend.face`` (which re-crops around the face), this runs on the given frame as is, so a
shift of the image shifts the landmarks: what AKD must see. Landmarks come back as (478, 3):
x, y in pixels of the frame and z (depth, mediapipe's scale: pixels of the frame width, smaller =
nearer the camera). Region index sets (lips, eyes, brows, nose, upper face oval) come from
mediapipe's own connection tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .identity import MetricModelMissing

N_LANDMARKS = 478

# Upper half of mediapipe's face-oval loop (forehead and temples down to the cheekbones, landmarks
# 454 and 234): it does not move with the jaw, so it anchors the pose alignment. Checked against
# FACEMESH_FACE_OVAL in the tests.
UPPER_FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 234, 127, 162, 21, 54, 103, 67, 109)


def _indices(connections) -> np.ndarray:
    return np.array(sorted({i for edge in connections for i in edge}), dtype=np.int64)


@dataclass(frozen=True)
class Regions:
    lips: np.ndarray
    left_eye: np.ndarray
    right_eye: np.ndarray
    left_brow: np.ndarray
    right_brow: np.ndarray
    nose: np.ndarray
    face_oval: np.ndarray
    upper_face_oval: np.ndarray

    @property
    def expression(self) -> np.ndarray:
        """Mouth, eyes and brows: the landmarks an expression moves."""
        parts = (self.lips, self.left_eye, self.right_eye, self.left_brow, self.right_brow)
        return np.unique(np.concatenate(parts))

    @property
    def rigid(self) -> np.ndarray:
        """Nose and upper face oval: landmarks that move with the skull, used to remove head pose."""
        return np.unique(np.concatenate((self.nose, self.upper_face_oval)))


@lru_cache(maxsize=1)
def regions() -> Regions:
    """Landmark index sets from mediapipe's face-mesh connection tables."""
    try:
        from mediapipe.python.solutions import face_mesh_connections as c
    except ImportError as exc:  # pragma: no cover
        raise MetricModelMissing("landmark metrics need mediapipe") from exc
    return Regions(
        lips=_indices(c.FACEMESH_LIPS),
        left_eye=_indices(c.FACEMESH_LEFT_EYE),
        right_eye=_indices(c.FACEMESH_RIGHT_EYE),
        left_brow=_indices(c.FACEMESH_LEFT_EYEBROW),
        right_brow=_indices(c.FACEMESH_RIGHT_EYEBROW),
        nose=_indices(c.FACEMESH_NOSE),
        face_oval=_indices(c.FACEMESH_FACE_OVAL),
        upper_face_oval=np.array(UPPER_FACE_OVAL, dtype=np.int64),
    )


class FaceMeshLandmarker:
    """mediapipe FaceMesh (static images, refined eyes/lips + iris: 478 points) on whole frames."""

    def __init__(self, min_detection_confidence: float = 0.5) -> None:
        try:
            import mediapipe as mp
        except ImportError as exc:  # pragma: no cover
            raise MetricModelMissing("landmark metrics need mediapipe") from exc
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
        )

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """RGB uint8 (H, W, 3) -> (478, 3) float64 [x px, y px, z px-of-width], or None (no face)."""
        img = np.asarray(rgb)
        if img.dtype != np.uint8:
            img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        img = np.ascontiguousarray(img[..., :3])
        res = self._mesh.process(img)
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        pts = np.array([(p.x, p.y, p.z) for p in lm], dtype=np.float64)
        h, w = img.shape[:2]
        return pts * np.array([w, h, w], dtype=np.float64)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "FaceMeshLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
