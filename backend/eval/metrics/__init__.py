"""Metrics. Image metrics (PSNR, SSIM) and landmark geometry (AKD, expression and pose distance)
are pure numpy/torch; identity (dlib) and the landmark detector (mediapipe) load their models
lazily."""

from .geometry import (
    akd,
    expression_distance,
    params_pose_distance_deg,
    pose_distance_deg,
    procrustes,
    rotation_angle_deg,
)
from ...image_metrics import SSIMOptions, as_hwc, hull_mask, mse, psnr, ssim, ssim_map
from .identity import FaceEmbedder, MetricModelMissing, cosine_similarity, identity_similarity

__all__ = [
    "akd", "expression_distance", "params_pose_distance_deg", "pose_distance_deg", "procrustes",
    "rotation_angle_deg", "SSIMOptions", "as_hwc", "hull_mask", "mse", "psnr", "ssim", "ssim_map", "FaceEmbedder",
    "MetricModelMissing", "cosine_similarity", "identity_similarity",
]
