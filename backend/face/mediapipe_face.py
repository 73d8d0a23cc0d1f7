"""Thin wrapper over mediapipe 0.10.21's bundled models (no downloads, CPU, offline).

- face detection (full-range model): counts faces and picks the largest;
- face mesh with iris refinement: 478 landmarks (x, y in pixels, z relative depth in pixels);
- selfie segmentation: the portrait (person) mask.

Each model is created once per ``MediapipeFace`` and reused for every frame: building a graph
costs ~10 ms and the tracking mode of face mesh relies on state carried between frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ info logs are noise for users
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

N_LANDMARKS = 478
# Indices into the 478-point mesh used for framing and size checks.
LEFT_EYE_CORNERS = (362, 263)   # subject's left eye (image right), inner and outer corner
RIGHT_EYE_CORNERS = (133, 33)   # subject's right eye (image left)
MOUTH_CORNERS = (61, 291)
IRIS_CENTERS = (468, 473)       # subject's right iris centre, left iris centre
# The inner-lip loop (upper lip from corner 78 to corner 308, then the lower lip back): the mouth's
# opening, its inner corners and the mid points of the upper and lower inner lip.
INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
INNER_CORNER_R, INNER_CORNER_L = 78, 308
UPPER_INNER_MID, LOWER_INNER_MID = 13, 14
# The outer lip ring (the lips' outline from corner 61 over the upper lip to corner 291 and back).
OUTER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)


@dataclass
class FaceBox:
    """A detected face: box (x0, y0, x1, y1) in pixels and detector score in [0, 1]; keypoints
    (6, 2) pixels: the subject's right eye, left eye, nose tip, mouth centre, right and left ear
    tragion (None when the detector gave none)."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray | None = None

    @property
    def roll_deg(self) -> float | None:
        """In-image rotation of the face (0 upright, +90 turned clockwise, 180 upside down),
        from the eyes -> mouth direction, which points straight down on an upright face."""
        if self.keypoints is None or len(self.keypoints) < 4:
            return None
        down = self.keypoints[3] - 0.5 * (self.keypoints[0] + self.keypoints[1])
        return float(np.degrees(np.arctan2(-down[0], down[1])))

    @property
    def size(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


# The solutions MediapipeFace runs. mediapipe's package __init__ (and that of its solutions package)
# imports every solution and every task API besides: hands, pose, holistic, objectron, the drawing
# helpers (matplotlib.pyplot), the audio/text/vision task APIs (sounddevice, ...).
FACE_SOLUTIONS = ("face_detection", "face_mesh", "selfie_segmentation")


def import_mediapipe():
    """``mediapipe`` with only what this wrapper runs imported: the framework bindings and the
    three solutions of ``FACE_SOLUTIONS``.

    A plain ``import mediapipe`` imports all of mediapipe's solutions and task APIs (above): about
    1.6 s of the import's 2.5 s of CPU at a load of 10 here, and it pulls in matplotlib.pyplot and
    sounddevice. Here the package modules ``mediapipe`` and ``mediapipe.python.solutions`` are made
    from their specs without running their ``__init__``, then ``mediapipe.python`` and the three
    solution modules import as usual. Whatever else the package offers imports when first asked
    for (a module ``__getattr__``): ``mp.tasks``, ``mp.solutions.hands``, ``mp.Image``,
    ``mp.__version__``, so a later ``import mediapipe`` elsewhere (eval metrics, the stand-in
    template script) still finds the whole API. Where mediapipe is imported already, that module
    is returned as it is."""
    import importlib
    import importlib.util
    import sys

    if "mediapipe" in sys.modules:
        import mediapipe

        return mediapipe

    def package_shell(name: str):
        spec = importlib.util.find_spec(name)
        module = importlib.util.module_from_spec(spec)  # __path__, __file__, no __init__ run
        sys.modules[name] = module
        return module

    mp = package_shell("mediapipe")
    try:
        python = importlib.import_module("mediapipe.python")    # the framework bindings
        solutions = package_shell("mediapipe.python.solutions")
        mp.solutions = python.solutions = solutions
        for name in FACE_SOLUTIONS:
            importlib.import_module(f"mediapipe.python.solutions.{name}")
    except BaseException:
        for name in [m for m in sys.modules if m == "mediapipe" or m.startswith("mediapipe.")]:
            del sys.modules[name]
        raise

    def solutions_getattr(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return importlib.import_module(f"mediapipe.python.solutions.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module 'mediapipe.solutions' has no attribute {name!r}") from None

    def mediapipe_getattr(name: str):
        # what mediapipe's __init__ would have bound: ``from mediapipe.python import *``,
        # ``solutions``, ``tasks`` (= mediapipe.tasks.python) and ``__version__``
        if name == "tasks":
            # bound by hand, as the __init__'s ``import mediapipe.tasks.python as tasks`` does: the
            # import itself binds mediapipe.tasks (the package above it) to the name
            mp.tasks = importlib.import_module("mediapipe.tasks.python")
            return mp.tasks
        if name == "__version__":
            from importlib.metadata import version

            return version("mediapipe")
        if not name.startswith("_") and hasattr(python, name):
            return getattr(python, name)
        raise AttributeError(f"module 'mediapipe' has no attribute {name!r}")

    solutions.__getattr__ = solutions_getattr
    mp.__getattr__ = mediapipe_getattr
    return mp


class MediapipeFace:
    """One instance of each mediapipe model, reused across calls.

    static: True for unrelated photos (every call runs detection), False for video frames
            (face mesh tracks the previous frame's face and re-detects only when it is lost).
    """

    def __init__(self, static: bool = True, min_detection_confidence: float = 0.5) -> None:
        mp = import_mediapipe()
        self.static = static
        self._mp = mp
        self._min_conf = min_detection_confidence
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=0.5,
        )
        self._detector = None
        self._segmenter = None

    def close(self) -> None:
        for m in (self._mesh, self._detector, self._segmenter):
            if m is not None:
                m.close()

    def __enter__(self) -> "MediapipeFace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """All faces in (H, W, 3) uint8, largest first. Boxes in pixels of ``rgb``."""
        if self._detector is None:
            # model 1 = full range (faces up to ~5 m); model 0 (short range) misses small faces.
            self._detector = self._mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=self._min_conf
            )
        h, w = rgb.shape[:2]
        res = self._detector.process(np.ascontiguousarray(rgb))
        boxes: list[FaceBox] = []
        for d in res.detections or []:
            bb = d.location_data.relative_bounding_box
            box = np.array([bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w,
                            (bb.ymin + bb.height) * h], np.float32)
            kps = d.location_data.relative_keypoints
            kp = (np.array([[k.x * w, k.y * h] for k in kps], np.float32) if len(kps) >= 4 else None)
            boxes.append(FaceBox(box, float(d.score[0]), kp))
        boxes = _suppress_overlaps(boxes)
        boxes.sort(key=lambda b: -b.size)
        return boxes

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """(478, 3) float32: x, y in pixels of ``rgb`` and z (same scale, relative, + away from
        camera), or None when no face is found."""
        h, w = rgb.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(rgb))
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        # One bulk conversion: protobuf attribute access is the slow part here (~0.3 ms).
        arr = np.array([(p.x, p.y, p.z) for p in lm], dtype=np.float32)
        arr *= np.array([w, h, w], np.float32)
        return arr

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """Portrait mask (H, W) float32 in [0, 1] for (H, W, 3) uint8."""
        if self._segmenter is None:
            # model 0 ("general", 256x256) suits head-and-shoulder crops better than landscape.
            self._segmenter = self._mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        res = self._segmenter.process(np.ascontiguousarray(rgb))
        return np.clip(res.segmentation_mask.astype(np.float32), 0.0, 1.0)


def _suppress_overlaps(boxes: list[FaceBox], iou_max: float = 0.3) -> list[FaceBox]:
    """Drop duplicate detections of one face (the full-range model sometimes reports two)."""
    keep: list[FaceBox] = []
    for b in sorted(boxes, key=lambda b: -b.score):
        if all(_iou(b.box, k.box) < iou_max for k in keep):
            keep.append(b)
    return keep


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def inter_ocular(landmarks: np.ndarray) -> float:
    """Distance in pixels between the two outer eye corners of (478, 2+) landmarks."""
    return float(np.linalg.norm(landmarks[RIGHT_EYE_CORNERS[1], :2] - landmarks[LEFT_EYE_CORNERS[1], :2]))


def face_size_px(landmarks: np.ndarray) -> float:
    """The face's size in pixels on the scale of :func:`inter_ocular`, kept by a turned head: the
    larger of the outer eye corners' distance and the distance from their midpoint to the mouth
    corners' midpoint. On a frontal face the eyes are the farther apart (about 95 against 70 mm),
    so this is the eye distance; a head turned by 60 deg halves the eye distance but not the
    eyes-to-mouth one, which then keeps a near profile from reading as a face too small."""
    lm = np.asarray(landmarks)[:, :2]
    eyes = 0.5 * (lm[RIGHT_EYE_CORNERS[1]] + lm[LEFT_EYE_CORNERS[1]])
    mouth = 0.5 * (lm[MOUTH_CORNERS[0]] + lm[MOUTH_CORNERS[1]])
    return max(inter_ocular(lm), float(np.linalg.norm(mouth - eyes)))

# mediapipe's FACEMESH_FACE_OVAL vertices (the outline). They lie on the face-mesh surface but near
# the silhouette, where the 2D detector is least precise, so the fit weights them down.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
IRIS = tuple(range(468, 478))
