"""Scoring a rendered frame against a real one with the metric models (eval/metrics)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...image_metrics import hull_mask, psnr, ssim, ssim_map
from ..metrics.geometry import akd, akd_breakdown, expression_distance, pose_distance_deg
from ..metrics.identity import (FaceEmbedder, FaceEmbedding, MetricModelMissing, box_from_landmarks,
                               cosine_similarity)
from ..metrics.landmarks import FaceMeshLandmarker
from ..metrics.masks import PortraitSegmenter, composite
from ..metrics.portrait import SSIM_REGIONS, alpha_iou, mouth_mask, portrait_union, ssim_loss_split
from ..results import ImageScores

NAN = float("nan")


@dataclass
class Target:
    """A real 512x512 frame prepared once for scoring any number of renders against it.

    image: (H, W, 3) float32 [0, 1]; full: the frame over the render background by its portrait
    mask; landmarks: (478, 3) px or None; face_mask: (H, W) bool (empty when no landmarks);
    embedding: dlib descriptor or None; valid: (H, W) bool, the pixels that are real picture
    (face.crop.source_coverage: False where the crop reached past the video's edge and was
    filled by repeating it), or None when all are.
    """

    image: np.ndarray
    full: np.ndarray
    portrait: np.ndarray
    landmarks: np.ndarray | None
    face_mask: np.ndarray
    embedding: FaceEmbedding | None
    valid: np.ndarray | None = None

    @property
    def face_box(self):
        if self.landmarks is None:
            return None
        h, w = self.image.shape[:2]
        return box_from_landmarks(self.landmarks, w, h)


class FrameScorer:
    """Holds the metric models (face mesh, selfie segmentation, dlib) for a whole evaluation."""

    def __init__(self, background=(0.0, 0.0, 0.0), identity: bool = True) -> None:
        self.background = np.asarray(background, np.float32)
        self.landmarker = FaceMeshLandmarker()
        self.segmenter = PortraitSegmenter()
        self.notes: list[str] = []  # metric models that could not be loaded
        self.embedder: FaceEmbedder | None = None
        if identity:
            try:
                self.embedder = FaceEmbedder()
            except MetricModelMissing as exc:  # identity becomes n/a; the other metrics still run
                self.notes.append(f"identity metric: {exc}")

    def close(self) -> None:
        self.landmarker.close()
        self.segmenter.close()

    def __enter__(self) -> "FrameScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def target(self, rgb: np.ndarray, valid: np.ndarray | None = None) -> Target:
        """Prepare a real frame: RGB uint8 (H, W, 3); ``valid`` (H, W) bool marks its real
        pixels (None: all of them)."""
        rgb = np.ascontiguousarray(rgb[..., :3])
        h, w = rgb.shape[:2]
        lm = self.landmarker(rgb)
        portrait = self.segmenter(rgb)
        face = hull_mask(lm, h, w) if lm is not None else np.zeros((h, w), bool)
        emb = None
        if self.embedder is not None:
            box = box_from_landmarks(lm, w, h) if lm is not None else None
            emb = self.embedder.embed(rgb, fallback_box=box)
        return Target(image=rgb.astype(np.float32) / 255.0, full=composite(rgb, portrait, self.background),
                      portrait=portrait, landmarks=lm, face_mask=face, embedding=emb,
                      valid=None if valid is None or np.all(valid) else np.asarray(valid, bool))

    def render_landmarks(self, render: np.ndarray) -> np.ndarray | None:
        return self.landmarker(_to_uint8(render))

    def identity(self, render: np.ndarray, reference: Target, box_hint: Target | None = None) -> float:
        """Cosine similarity of the render's face embedding to ``reference``'s. The detector's
        fallback box comes from ``box_hint`` (the frame the render should match), as renders share
        its camera."""
        if self.embedder is None or reference.embedding is None:
            return NAN
        hint = (box_hint or reference).face_box
        e = self.embedder.embed(_to_uint8(render), fallback_box=hint)
        return NAN if e is None else cosine_similarity(e.vector, reference.embedding.vector)

    def score(self, render: np.ndarray, target: Target, identity_ref: Target | None = None,
              alpha: np.ndarray | None = None) -> ImageScores:
        """All image metrics of a render (H, W, 3) float [0, 1] against ``target``; identity is
        measured against ``identity_ref`` (default: the target itself). With the render's
        ``alpha`` (H, W) also alpha IoU and PSNR/SSIM inside the portrait union; mouth PSNR when
        the target's mouth is open (metrics/portrait.py).

        Whole-frame metrics (``psnr_full``, ``ssim_full``, ``alpha_iou``, the portrait-union ones
        and the SSIM-loss split) count only the target's real pixels (``target.valid``): where the
        crop reached past the video's edge the target is the edge repeated, not something a
        viewer could compare. ``*_padded`` keep the whole crop, padding included (the definition
        before the valid mask), for side-by-side reporting; they equal the others when all
        pixels are real."""
        has_face = bool(target.face_mask.any())
        lm = self.render_landmarks(render) if target.landmarks is not None else None
        h, w = render.shape[:2]
        mouth = mouth_mask(target.landmarks, h, w)
        valid = target.valid  # None: every pixel is real
        union = portrait_union(alpha, target.portrait) if alpha is not None else None
        if union is not None and valid is not None:
            union = union & valid
        parts: dict[str, float] = {}  # the breakdowns of AKD and SSIM full (NaN when not measurable)
        if lm is not None:
            parts |= {f"akd_{k}": v for k, v in akd_breakdown(lm, target.landmarks).items()}
        smap = ssim_map(render, target.full)
        if alpha is not None:
            split = ssim_loss_split(smap, alpha, target.portrait, target.face_mask, valid=valid)
            parts |= {f"ssim_loss_{k}": split[k] for k in SSIM_REGIONS}
        ssim_padded = float(smap.mean())
        psnr_padded = psnr(render, target.full)
        iou_padded = alpha_iou(alpha, target.portrait) if alpha is not None else NAN
        return ImageScores(
            psnr_face=psnr(render, target.image, target.face_mask) if has_face else NAN,
            psnr_full=psnr_padded if valid is None else psnr(render, target.full, valid),
            ssim_face=ssim(render, target.image, target.face_mask) if has_face else NAN,
            ssim_full=ssim_padded if valid is None else ssim(render, target.full, valid),
            identity=self.identity(render, identity_ref or target, box_hint=target),
            akd=akd(lm, target.landmarks) if lm is not None else NAN,
            alpha_iou=(iou_padded if valid is None or alpha is None
                       else alpha_iou(np.where(valid, alpha, 0.0), np.where(valid, target.portrait, 0.0))),
            psnr_full_padded=psnr_padded,
            ssim_full_padded=ssim_padded,
            alpha_iou_padded=iou_padded,
            psnr_portrait=psnr(render, target.full, union) if union is not None and union.any() else NAN,
            ssim_portrait=ssim(render, target.full, union) if union is not None and union.any() else NAN,
            mouth_psnr=psnr(render, target.image, mouth) if mouth is not None else NAN,
            **parts,
        )

    def motion(self, render: np.ndarray, driving: Target) -> tuple[float, float]:
        """(expression distance px, pose distance deg) of a render against a driving frame."""
        lm = self.render_landmarks(render)
        if lm is None or driving.landmarks is None:
            return NAN, NAN
        return expression_distance(lm, driving.landmarks), pose_distance_deg(lm, driving.landmarks)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return np.ascontiguousarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
