"""Photo -> FaceObservation: face found, checked, framed into the 512x512 crop, landmarked, masked.

Steps (``FaceAnalyzer.analyze``):
1. detect faces on a size-bounded copy (huge photos are downscaled for detection only);
   none -> InputError, several -> the largest one and a warning;
2. 478 landmarks on a region around that face, mapped to full-resolution pixels; the face must be
   at least MIN_INTER_OCULAR_PX between the outer eye corners (InputError otherwise);
3. the FFHQ-style square crop (crop.py), grown/shifted to hold the whole head-and-hair region of the
   portrait mask (framing.py), cut from the full-resolution image and resized to 512;
4. landmarks again on the 512 crop (the canonical framing gives the most accurate mesh), the
   portrait mask from selfie segmentation (or from the photo's own alpha channel when it has one).
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import InputError, OMGWarning
from .crop import CROP_SIZE, CropInfo, apply_crop, crop_from_landmarks, source_camera
from .framing import fit_crop_to_region, head_region
from .image import LoadedImage, downscale, image_from_array, load_image
from .matte import refine_matte
from .mediapipe_face import MediapipeFace, face_size_px

# Smallest usable face: outer-eye-corner distance in source pixels. Below ~30 px the 512 crop is an
# upsampled blur (a 30 px eye distance gives a ~150 px source crop, 3.4x upsampling) and the
# landmarks lose the detail the fit and the avatar's colours need.
MIN_INTER_OCULAR_PX = 30.0
DETECT_MAX_SIDE = 1920
# Largest in-image rotation of the face (eye line vs. horizontal) the crop and fit accept: beyond
# it the photo is almost surely sideways (no EXIF orientation) and the avatar would be too.
MAX_ROLL_DEG = 45.0
# mediapipe face mesh ids: outer eye corners (subject's right, left) and the chin
_EYE_R, _EYE_L, _CHIN = 33, 263, 152


def face_roll_deg(lm: np.ndarray) -> float:
    """In-image rotation of the face in degrees from (478, 2) landmarks (x right, y down):
    0 upright, +90 when the face's up points to the image's right (turned clockwise), 180 upside
    down. Uses the eye-midpoint -> chin direction, which should point straight down."""
    mid = 0.5 * (lm[_EYE_R] + lm[_EYE_L])
    down = lm[_CHIN] - mid
    return float(np.degrees(np.arctan2(-down[0], down[1])))


def _not_upright_msg(roll: float) -> str:
    turn = ("180 deg (upside down)" if abs(roll) > 135 else
            f"{abs(roll):.0f} deg {'clockwise' if roll > 0 else 'counter-clockwise'}")
    return (f"no upright face: the face is rotated by about {turn} in the image; rotate the photo so "
            "the face is upright (the file carries no orientation tag that says so)")


class MultipleFacesWarning(OMGWarning):
    """Several faces in a photo: the largest one was used."""


@dataclass
class FaceObservation:
    """One analysed image, everything in the 512x512 crop.

    landmarks:   (478, 2) float32 pixels in the crop (x right, y down, pixel-corner origin).
    landmarks_z: (478,) float32 mediapipe relative depth, crop pixels (+ = away from the camera).
    mask:        (512, 512) float32 portrait matte in [0, 1] (face.matte.refine_matte); the
                 segmenter's coarse mask while ``mask_refined`` is False (analyze(refine_mask=False)).
    crop:        where the crop sits in the source image.
    image512:    (512, 512, 3) uint8 crop.
    camera:      the fixed 512x512 source camera (crop.py).
    n_faces_found: faces the detector saw in the source image.
    warnings:    human-readable notes (e.g. several faces).
    source:      the full-resolution image (colour sampling at full res), when kept.
    mask_refined: False while ``mask`` is still the coarse segmenter mask (refine_mask()).
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
    mask_refined: bool = True

    def refine_mask(self) -> np.ndarray:
        """The photo-aligned matte of a coarse ``mask`` (face.matte.refine_matte), computed once:
        returns ``mask`` at once when it is refined already. Pure numpy/OpenCV on this observation's
        own arrays, so a second thread can run it while another uses the landmarks."""
        if not self.mask_refined:
            self.mask = refine_matte(self.image512, self.mask)
            self.mask_refined = True
        return self.mask


_SHARED: "dict[str, FaceAnalyzer]" = {}
_SHARED_LOCK = threading.Lock()


@contextmanager
def shared_analyzer() -> "Iterator[FaceAnalyzer]":
    """The process's one FaceAnalyzer (mediapipe's models start once per process, ~1 s), held
    exclusively while the block runs (mediapipe graphs take one image at a time). Used by builds,
    so a second build in the same process (Blender, eval, tests) skips the model start-up."""
    with _SHARED_LOCK:
        if "photo" not in _SHARED:
            _SHARED["photo"] = FaceAnalyzer()
        yield _SHARED["photo"]


class FaceAnalyzer:
    """Finds and frames the face of photos. Keeps one set of mediapipe models for all calls."""

    def __init__(self, min_inter_ocular_px: float = MIN_INTER_OCULAR_PX) -> None:
        self.min_inter_ocular_px = float(min_inter_ocular_px)
        self._mp = MediapipeFace(static=True)

    def close(self) -> None:
        self._mp.close()

    @staticmethod
    def tracker_landmarks(image: np.ndarray, readings: int = 6) -> np.ndarray | None:
        """(478, 2) float32 px of ``image`` (H, W, 3) uint8 as the tracker reads a clip's frames:
        mediapipe's face mesh in video mode, the image read ``readings`` times in a row and the
        last reading kept, or None when no face is found. In that mode a reading starts from the
        region the one before left, so a new image needs several to come near its settled place
        (successive readings of the astronaut move 0.77, 0.41, 0.31, 0.26, 0.28 px, then 0.2-0.3 px
        on); static readings of the same image lie about 0.9 px away (docs/figures/eval.md). A
        fresh graph every call (5 ms once the models are loaded), so the reading depends on the
        image alone, not on what was read before."""
        with MediapipeFace(static=False) as video:
            lm = None
            for _ in range(max(1, int(readings))):
                lm = video.landmarks(image)
        return None if lm is None else np.ascontiguousarray(lm[:, :2], np.float32)

    def __enter__(self) -> "FaceAnalyzer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def analyze(self, image: LoadedImage | np.ndarray | str | Path, refine_mask: bool = True) -> FaceObservation:
        """Analyse a photo (a path, a LoadedImage or an (H, W, 3) uint8 array).

        ``refine_mask=False``: the observation's mask is left as the selfie segmenter's coarse
        mask (``mask_refined`` False) for the caller to refine with :meth:`FaceObservation.refine_mask`,
        e.g. on another thread while the head model is fitted (the fit uses the landmarks only)."""
        if isinstance(image, (str, Path)):
            image = load_image(image)
        elif isinstance(image, np.ndarray):
            image = image_from_array(image)
        from concurrent.futures import ThreadPoolExecutor

        # The selfie segmenter runs on a second thread beside the detector and face mesh: its two
        # calls below need only the detection-size copy and the crop, and mediapipe's inference
        # releases the GIL. Only that thread uses the segmenter; the pool waits for it before
        # returning or raising.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="omg-segment") as seg:
            return self._analyze(image, refine_mask, seg)

    def _analyze(self, image: LoadedImage, refine_mask: bool, seg) -> FaceObservation:
        """analyze's body; ``seg``: the executor the segmenter runs on."""
        path = image.path
        rgb = image.rgb
        h, w = rgb.shape[:2]

        det, s = downscale(rgb, DETECT_MAX_SIDE)
        # the framing's portrait mask (the photo's own alpha channel instead, when it has one)
        det_mask = seg.submit(self._mp.segment, det) if image.alpha is None else None
        boxes = self._mp.detect(det)
        lm_src = None
        if not boxes:
            # The full-range detector can miss faces that fill the frame: let face mesh (which
            # has its own short-range detector) try the whole picture before giving up.
            small = self._small_face_size(det)
            lm = None
            if small is not None and small / s < self.min_inter_ocular_px:
                # a face is there, too small for the detector to see in the whole frame; or a head
                # turned far (the detector misses it, and its box is narrow): face mesh's size decides
                lm = self._mp.landmarks(det)
                if lm is None or face_size_px(lm[:, :2] / s) < self.min_inter_ocular_px:
                    raise InputError(path, self._too_small_msg(small / s))
            turned = self._turned_face(det)
            if turned is not None:  # the detector sees a face only in a turned copy: sideways photo
                raise InputError(path, _not_upright_msg(turned))
            lm = self._mp.landmarks(det) if lm is None else lm
            if lm is None:
                raise InputError(path, "no face found in the image")
            lm_src = lm[:, :2] / s
            n_faces = 1
        else:
            n_faces = len(boxes)
            roll = boxes[0].roll_deg
            if roll is not None and abs(roll) > MAX_ROLL_DEG:
                # face mesh assumes an upright face: on a sideways/upside-down one it returns a
                # plausible-looking but wrong mesh, so this is checked on the detector's keypoints
                raise InputError(path, _not_upright_msg(roll))
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

        iod = face_size_px(lm_src)  # a turned head's eyes come closer; its size does not shrink
        if iod < self.min_inter_ocular_px:
            raise InputError(path, self._too_small_msg(iod))
        roll = face_roll_deg(lm_src)
        if abs(roll) > MAX_ROLL_DEG:
            raise InputError(path, _not_upright_msg(roll))

        crop = self._frame(image, det, s, lm_src, crop_from_landmarks(lm_src, (w, h)),
                           None if det_mask is None else det_mask.result())
        img512 = apply_crop(rgb, crop)
        crop_mask = seg.submit(self._mp.segment, img512) if image.alpha is None else None
        lm = self._mp.landmarks(img512)
        if lm is None:  # keep the mapped source landmarks rather than failing
            lm = np.concatenate([crop.to_crop(lm_src), np.zeros((len(lm_src), 1), np.float32)], 1)
        refined = True
        if image.alpha is not None:
            mask = apply_crop(image.alpha, crop, border="zero").astype(np.float32)
        elif refine_mask:
            mask = refine_matte(img512, crop_mask.result())
        else:
            mask, refined = crop_mask.result(), False
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
            mask_refined=refined,
        )

    def _small_face_size(self, det: np.ndarray) -> float | None:
        """Inter-ocular distance (``det`` pixels) of a face the full-frame detector could not see
        because it is small: the detector runs on overlapping tiles (its input is 192 px). None
        when no tile holds a face either."""
        h, w = det.shape[:2]
        for tile in (min(h, w) // 2, min(h, w) // 4):
            if tile < 48:
                break
            step = tile // 2
            for y in range(0, max(h - tile, 0) + 1, step):
                for x in range(0, max(w - tile, 0) + 1, step):
                    boxes = self._mp.detect(np.ascontiguousarray(det[y:y + tile, x:x + tile]))
                    if boxes:
                        return boxes[0].size / 2.5  # the detector box is ~2.5 eye distances wide
        return None

    def _turned_face(self, det: np.ndarray) -> float | None:
        """The face's roll in degrees (as face_roll_deg) when the detector finds an upright face
        only in a copy turned by 90/180/270 deg; None when it finds none there either."""
        for k in (1, 2, 3):  # np.rot90 turns counter-clockwise by k * 90 deg
            boxes = self._mp.detect(np.ascontiguousarray(np.rot90(det, k)))
            if boxes and boxes[0].roll_deg is not None and abs(boxes[0].roll_deg) <= MAX_ROLL_DEG:
                roll = ((90.0 * k + boxes[0].roll_deg + 180.0) % 360.0) - 180.0
                return roll if abs(roll) > 1e-6 else 180.0
        return None

    def _frame(self, image: LoadedImage, det: np.ndarray, s: float, lm_src: np.ndarray,
               crop: CropInfo, det_mask: np.ndarray | None = None) -> CropInfo:
        """The landmark crop grown/shifted to hold the whole head-and-hair region (framing.py),
        found on the detection-size copy (the photo's own alpha channel when it has one).
        ``det_mask``: the segmenter's mask of ``det`` when the caller made it already."""
        if det_mask is not None:
            mask = det_mask
        elif image.alpha is not None:
            import cv2

            mask = cv2.resize(np.asarray(image.alpha, np.float32), (det.shape[1], det.shape[0]),
                              interpolation=cv2.INTER_AREA)
        else:
            mask = self._mp.segment(det)
        return fit_crop_to_region(crop, head_region(mask, lm_src * s), region_scale=s)

    def _too_small_msg(self, size: float) -> str:
        """``size``: :func:`face_size_px`, the eye-corner distance of a frontal face, or the
        eyes-to-mouth distance where a turned head makes that the larger."""
        return (f"the face is too small: {size:.0f} px across (eye corners, or eyes to mouth on a "
                f"turned head), at least {self.min_inter_ocular_px:.0f} px needed (use a closer or "
                f"higher-resolution photo)")

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
