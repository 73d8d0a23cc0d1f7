"""Square head crop (the paper's 512x512 framing) and the fixed source camera that goes with it.

Framing follows the FFHQ alignment recipe (the preprocessing the OMG-Avatar / GAGAvatar family
inherits) without its in-plane rotation: from the eye centres and mouth centre,
``side = CROP_SCALE * max(4.0 * |eye_to_eye|, 3.6 * |eye_to_mouth|)`` and the centre sits at
``eye_mid + CROP_CENTRE_DOWN * eye_to_mouth``. CROP_SCALE > 1 and the lower centre widen FFHQ's
tight crop into the paper's head-and-shoulders setting: the neck and shoulders the avatar needs
are in the picture. For photos, analyze.py then grows/shifts this crop so that the whole
head-and-hair region of the portrait mask lies inside (framing.py: tall hair, off-centre heads). Head roll stays in the image (the fit explains it
with the head rotation), so one crop and one camera can serve a whole video.

Camera choice (documented contract): the camera is FIXED and the head moves. Every 512x512 crop is
seen by the same pinhole camera with the paper's focal length of 12 in normalized units
(``fx = fy = 12 * 512 / 2 = 3072 px``, principal point at the centre, a ~9.5 deg field of view,
i.e. a long portrait lens), placed on the head-model +Z axis at CAMERA_DISTANCE metres and looking
at the origin along -Z (OpenCV axes: x right, y down, z forward). The fit then solves the head's
global rotation and translation in this camera. A long lens makes the crop nearly orthographic, so
the head's distance is recovered from its apparent size rather than from perspective cues.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mediapipe_face import LEFT_EYE_CORNERS, MOUTH_CORNERS, RIGHT_EYE_CORNERS

CROP_SIZE = 512
CROP_SCALE = 1.5
CROP_CENTRE_DOWN = 0.3
FOCAL_NORMALIZED = 12.0
# With CROP_SCALE 1.5 a typical head (eye distance ~6.3 cm, so side ~0.38 m at the head) fills the
# crop at about 12 * 0.38 / 2 = 2.3 m; the fit solves the distance, this is only where it starts.
CAMERA_DISTANCE = 2.0


@dataclass
class CropInfo:
    """Square crop of a source image: crop_px = (source_px - (x0, y0)) * size / side.

    x0, y0: top-left corner in source pixels (integers; may be negative = padded).
    side:   square side in source pixels (integer).
    size:   output side in pixels (512).
    source_size: (width, height) of the source image.
    """

    x0: int
    y0: int
    side: int
    size: int
    source_size: tuple[int, int]

    @property
    def scale(self) -> float:
        """Crop pixels per source pixel."""
        return self.size / float(self.side)

    def to_crop(self, pts: np.ndarray) -> np.ndarray:
        """(..., 2) source pixels -> crop pixels."""
        return ((pts - np.array([self.x0, self.y0], np.float32)) * self.scale).astype(np.float32)

    def to_source(self, pts: np.ndarray) -> np.ndarray:
        """(..., 2) crop pixels -> source pixels."""
        return (pts / self.scale + np.array([self.x0, self.y0], np.float32)).astype(np.float32)

    def as_array(self) -> np.ndarray:
        """(7,) int64 for storing in npz files: x0, y0, side, size, source w, source h, 0."""
        return np.array([self.x0, self.y0, self.side, self.size, *self.source_size, 0], np.int64)

    @staticmethod
    def from_array(a: np.ndarray) -> "CropInfo":
        a = [int(v) for v in np.asarray(a).ravel()]
        return CropInfo(a[0], a[1], a[2], a[3], (a[4], a[5]))


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(eye_mid, eye_to_eye, eye_to_mouth) in pixels from (478, 2+) landmarks."""
    lm = landmarks[:, :2].astype(np.float64)
    eye_r = lm[list(RIGHT_EYE_CORNERS)].mean(0)
    eye_l = lm[list(LEFT_EYE_CORNERS)].mean(0)
    mouth = lm[list(MOUTH_CORNERS)].mean(0)
    eye_mid = 0.5 * (eye_l + eye_r)
    return eye_mid, eye_l - eye_r, mouth - eye_mid


def crop_from_landmarks(
    landmarks: np.ndarray, source_size: tuple[int, int], size: int = CROP_SIZE, scale: float = CROP_SCALE
) -> CropInfo:
    """The FFHQ-style square crop around a face given its (478, 2+) source-pixel landmarks."""
    eye_mid, e2e, e2m = face_frame(landmarks)
    side = scale * max(4.0 * np.linalg.norm(e2e), 3.6 * np.linalg.norm(e2m))
    side = max(int(round(side)), 8)
    c = eye_mid + CROP_CENTRE_DOWN * e2m
    x0 = int(round(c[0] - side / 2.0))
    y0 = int(round(c[1] - side / 2.0))
    return CropInfo(x0, y0, side, size, (int(source_size[0]), int(source_size[1])))


def apply_crop(image: np.ndarray, crop: CropInfo, border: str = "replicate") -> np.ndarray:
    """Cut and resize the crop out of (H, W, C) or (H, W) ``image`` -> (size, size[, C]).

    Outside the source the crop is filled by edge replication ("replicate") or zeros ("zero"):
    replication keeps the colour statistics sane for the segmenter; masks use zeros.
    """
    import cv2

    h, w = image.shape[:2]
    x0, y0, s = crop.x0, crop.y0, crop.side
    x1, y1 = x0 + s, y0 + s
    pad = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))  # top, bottom, left, right
    sub = image[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    if any(pad):
        if sub.size == 0:  # crop entirely outside the image
            sub = np.zeros((s, s) + image.shape[2:], image.dtype)
        else:
            mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
            sub = cv2.copyMakeBorder(sub, *pad, mode, value=0)
    interp = cv2.INTER_AREA if s > crop.size else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(sub), (crop.size, crop.size), interpolation=interp)
    return out


def source_coverage(crop: CropInfo) -> np.ndarray:
    """(size, size) bool: the crop pixels cut wholly from the source image; False where
    ``apply_crop`` fills the crop beyond the source's edges (padding, not picture)."""
    w, h = crop.source_size
    cover = apply_crop(np.ones((int(h), int(w)), np.float32), crop, border="zero")
    return cover > 0.99  # a resized pixel partly over the padding is not wholly the source


def crop_intrinsics(size: int = CROP_SIZE, focal: float = FOCAL_NORMALIZED) -> np.ndarray:
    """(3, 3) float32 K of the fixed source camera: fx = fy = focal * size / 2, centred.

    The principal point is size / 2 in the pixel-corner convention (pixel i covers [i, i+1)), the
    one mediapipe's normalized landmarks use (x_px = x_norm * width).
    """
    f = focal * size / 2.0
    return np.array([[f, 0.0, size / 2.0], [0.0, f, size / 2.0], [0.0, 0.0, 1.0]], np.float32)


def crop_viewmat(distance: float = CAMERA_DISTANCE) -> np.ndarray:
    """(4, 4) float32 world -> camera: camera at (0, 0, distance) looking along world -Z.

    World +X (subject's left) maps to image right, world +Y (up) to image up (camera -y).
    """
    v = np.diag([1.0, -1.0, -1.0, 1.0]).astype(np.float32)
    v[2, 3] = distance
    return v


def source_camera(size: int = CROP_SIZE):
    """The fixed 512x512 source camera as a ``backend.render.Camera``."""
    from ..render.camera import Camera

    return Camera(K=crop_intrinsics(size), viewmat=crop_viewmat(), width=size, height=size)
