"""Identity similarity: cosine similarity of dlib's 128-D face-recognition embeddings.

The metric model is dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``)
with its 5-point aligner, shipped offline by the CC0 ``face-recognition-models`` package and run
by ``dlib-bin``. (The paper's ArcFace model needs a download and is left out.) Faces are found by
dlib's HOG detector; when it finds none (a blurry render, an unusual pose) the caller may pass a
fallback box, e.g. from the target frame's landmarks, since renders share the target's camera.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import OMGError

Box = tuple[int, int, int, int]  # left, top, right, bottom in px


class MetricModelMissing(OMGError):
    """A metric model (dlib, its weights, mediapipe) is not installed."""


def _models_dir() -> Path:
    # Locate the weights without importing face_recognition_models: its __init__ needs
    # pkg_resources (setuptools), which this environment does not have.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MetricModelMissing("identity metric needs the 'face-recognition-models' package")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@dataclass
class FaceEmbedding:
    vector: np.ndarray  # (128,) float64, dlib descriptor (not unit length)
    box: Box            # the face box used
    detected: bool      # False when the fallback box was used


class FaceEmbedder:
    """Wraps dlib's detector, 5-point shape predictor and face-recognition ResNet."""

    def __init__(self, upsample: int = 1) -> None:
        try:
            import dlib
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MetricModelMissing("identity metric needs 'dlib-bin' (pip install dlib-bin)") from exc
        models = _models_dir()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self.upsample = upsample

    def detect(self, rgb: np.ndarray) -> Box | None:
        """Largest detected face box of an RGB uint8 (H, W, 3) image, or None."""
        dets = self._detector(np.ascontiguousarray(rgb), self.upsample)
        if len(dets) == 0:
            return None
        # The largest box: photos may hold small extra faces (e.g. on a badge or a poster).
        r = max(dets, key=lambda d: d.width() * d.height())
        return (r.left(), r.top(), r.right(), r.bottom())

    def embed(self, rgb: np.ndarray, fallback_box: Box | None = None) -> FaceEmbedding | None:
        """128-D descriptor of the largest face; ``fallback_box`` when none is detected; None if
        neither."""
        rgb = np.ascontiguousarray(_to_uint8(rgb))
        box = self.detect(rgb)
        detected = box is not None
        if box is None:
            if fallback_box is None:
                return None
            box = tuple(int(round(v)) for v in fallback_box)
        rect = self._dlib.rectangle(*box)
        shape = self._shape(rgb, rect)
        vec = np.asarray(self._net.compute_face_descriptor(rgb, shape), dtype=np.float64)
        return FaceEmbedding(vector=vec, box=box, detected=detected)


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return arr


@lru_cache(maxsize=1)
def default_embedder() -> FaceEmbedder:
    """One shared embedder (loading the ResNet takes ~0.3 s)."""
    return FaceEmbedder()


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Cosine similarity of (..., D) vectors (broadcast), in [-1, 1]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    out = num / np.maximum(den, 1e-12)
    return float(out) if np.ndim(out) == 0 else out


def identity_similarity(
    image_a: np.ndarray,
    image_b: np.ndarray,
    embedder: FaceEmbedder | None = None,
    fallback_box_a: Box | None = None,
    fallback_box_b: Box | None = None,
) -> float:
    """Cosine similarity of the two images' face embeddings; NaN when either has no face."""
    emb = embedder or default_embedder()
    ea, eb = emb.embed(image_a, fallback_box_a), emb.embed(image_b, fallback_box_b)
    if ea is None or eb is None:
        return float("nan")
    return cosine_similarity(ea.vector, eb.vector)


def box_from_landmarks(landmarks: np.ndarray, width: int, height: int, margin: float = 0.05) -> Box:
    """A dlib-like face box around (N, 2) px landmarks (a fallback when the detector misses)."""
    lm = np.asarray(landmarks)[:, :2]
    lo, hi = lm.min(0), lm.max(0)
    pad = margin * (hi - lo)
    lo, hi = np.maximum(lo - pad, 0), np.minimum(hi + pad, [width - 1, height - 1])
    return (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
