"""Photo -> FaceObservation: face found, checked, framed into the 512x512 crop, landmarked, masked.

Steps (``FaceAnalyzer.analyze``):
1. detect faces on a size-bounded copy (huge photos are downscaled for detection only);
   none -> InputError, several -> the largest one and a warning;
2. 478 landmarks on a region around that face, mapped to full-resolution pixels; the face must be
   at least MIN_INTER_OCULAR_PX between the outer eye corners (InputError otherwise);
3. the FFHQ-style square crop (crop.py) cut from the full-resolution image and resized to 512;
4. landmarks again on the 512 crop (the canonical framing gives the most accurate mesh), the
   portrait mask from selfie segmentation (or from the photo's own alpha channel when it has one).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .crop import CROP_SIZE, CropInfo, apply_crop, crop_from_landmarks, source_camera
from .image import LoadedImage, downscale, image_from_array, load_image
from .mediapipe_face import MediapipeFace, inter_ocular

# Smallest usable face: outer-eye-corner distance in source pixels. Below ~30 px the 512 crop is an
# upsampled blur (a 30 px eye distance gives a ~150 px source crop, 3.4x upsampling) and the
# landmarks lose the detail the fit and the avatar's colours need.
MIN_INTER_OCULAR_PX = 30.0
DETECT_MAX_SIDE = 1920


class MultipleFacesWarning(UserWarning):
    """Several faces in a photo: the largest one was used."""


@dataclass
class FaceObservation:
    """One analysed image, everything in the 512x512 crop.

    landmarks:   (478, 2) float32 pixels in the crop (x right, y down, pixel-corner origin).
    landmarks_z: (478,) float32 mediapipe relative depth, crop pixels (+ = away from the camera).
    mask:        (512, 512) float32 portrait mask in [0, 1].
    crop:        where the crop sits in the source image.
    image512:    (512, 512, 3) uint8 crop.
    camera:      the fixed 512x512 source camera (crop.py).
    n_faces_found: faces the detector saw in the source image.
    warnings:    human-readable notes (e.g. several faces).
    source:      the full-resolution image (colour sampling at full res), when kept.
    """

    landmarks: np.ndarray
    landmarks_z: np.ndarray
    mask: np.ndarray
    crop: CropInfo
    image512: np.ndarray
    camera: Any
    n_faces_found: int
    warnings: list[str] = field(default_factory=list)
    source: LoadedImage | None = None


class FaceAnalyzer:
    """Finds and frames the face of photos. Keeps one set of mediapipe models for all calls."""

    def __init__(self, min_inter_ocular_px: float = MIN_INTER_OCULAR_PX) -> None:
        self.min_inter_ocular_px = float(min_inter_ocular_px)
        self._mp = MediapipeFace(static=True)

    def close(self) -> None:
        self._mp.close()

    def __enter__(self) -> "FaceAnalyzer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def analyze(self, image: LoadedImage | np.ndarray | str | Path) -> FaceObservation:
        """Analyse a photo (a path, a LoadedImage or an (H, W, 3) uint8 array)."""
        if isinstance(image, (str, Path)):
            image = load_image(image)
        elif isinstance(image, np.ndarray):
            image = image_from_array(image)
        path = image.path
        rgb = image.rgb
        h, w = rgb.shape[:2]

        det, s = downscale(rgb, DETECT_MAX_SIDE)
        boxes = self._mp.detect(det)
        lm_src = None
        if not boxes:
            # The full-range detector can miss faces that fill the frame: let face mesh (which
            # has its own short-range detector) try the whole picture before giving up.
            lm = self._mp.landmarks(det)
            if lm is None:
                raise InputError(path, "no face found in the image")
            lm_src = lm[:, :2] / s
            n_faces = 1
        else:
            n_faces = len(boxes)
            lm_src = self._landmarks_in_box(det, boxes[0].box)
            if lm_src is None:
                if boxes[0].size / s < 2.5 * self.min_inter_ocular_px:
                    raise InputError(path, self._too_small_msg(boxes[0].size / s / 2.5))
                raise InputError(path, "a face was detected but its landmarks could not be found "
                                       "(face turned away, covered or cut off?)")
            lm_src = lm_src / s

        notes: list[str] = []
        if n_faces > 1:
            msg = f"{n_faces} faces found; using the largest one"
            notes.append(msg)
            warnings.warn(f"{Path(path).name if path else 'image'}: {msg}", MultipleFacesWarning, stacklevel=2)

        iod = inter_ocular(lm_src)
        if iod < self.min_inter_ocular_px:
            raise InputError(path, self._too_small_msg(iod))

        crop = crop_from_landmarks(lm_src, (w, h))
        img512 = apply_crop(rgb, crop)
        lm = self._mp.landmarks(img512)
        if lm is None:  # keep the mapped source landmarks rather than failing
            lm = np.concatenate([crop.to_crop(lm_src), np.zeros((len(lm_src), 1), np.float32)], 1)
        if image.alpha is not None:
            mask = apply_crop(image.alpha, crop, border="zero").astype(np.float32)
        else:
            mask = self._mp.segment(img512)
        return FaceObservation(
            landmarks=np.ascontiguousarray(lm[:, :2], np.float32),
            landmarks_z=np.ascontiguousarray(lm[:, 2], np.float32),
            mask=mask,
            crop=crop,
            image512=img512,
            camera=source_camera(CROP_SIZE),
            n_faces_found=n_faces,
            warnings=notes,
            source=image,
        )

    def _too_small_msg(self, iod: float) -> str:
        return (f"the face is too small: {iod:.0f} px between the eyes, at least "
                f"{self.min_inter_ocular_px:.0f} px needed (use a closer or higher-resolution photo)")

    def _landmarks_in_box(self, det: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """Face mesh on a square region 2.2x the detector box, mapped back to ``det`` pixels."""
        h, w = det.shape[:2]
        c = 0.5 * (box[:2] + box[2:])
        side = int(round(2.2 * max(box[2] - box[0], box[3] - box[1])))
        side = max(side, 16)
        region = CropInfo(int(round(c[0] - side / 2)), int(round(c[1] - side / 2)), side,
                          min(512, max(192, side)), (w, h))
        patch = apply_crop(det, region)
        lm = self._mp.landmarks(patch)
        if lm is None:
            return None
        return region.to_source(lm[:, :2])
