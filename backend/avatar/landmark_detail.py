"""Identity detail from the photo fit's landmark residual: the head mesh moved onto the photo's
landmarks, so that the avatar's geometry sits where its paint does.

Why: the photo fit leaves each landmark 1.5-2 px (inner face) to 3.5-4 px (outline) from where
mediapipe saw it, while the head's colours are sampled from the photo along the camera's rays. So
the painted eye corner, nostril and lip line sit on the surface beside the model's landmark
vertices, not on them. Tracking a clip then puts the model's landmarks on the clip's features and
the paint 1-2 px beside them (self-reenactment AKD), and the mouth's geometry (the opening, teeth,
cavity) beside the painted lips. Fitting the tracker to the paint instead (avatar.calibrate's
offsets) moves the geometry off the clip's mouth (docs/figures/eval.md). Here the geometry moves
onto the paint once, at build time: the residual becomes the avatar's ``vertex_offsets`` (identity
detail in the rest frame, added by every posing path and the Blender import), and the tracker,
holding the avatar's identity, fits with the same offsets (face.track's ``rest_offsets``).

Where mediapipe sees the photo's features depends on how it reads: the tracker reads a clip in
video mode, whose settled reading of an image lies about 0.9 px from the static reading a photo
gets, so the mesh moves onto the photo crop's video-mode reading (``LandmarkDetailOptions.readings``).
One view gives no depth: each landmark moves in the source camera's image plane only. The moves
are spread over the mesh as the smoothest field (bi-Laplacian over the mesh's edges) that meets
them, decaying to zero away from the face, with each eyeball moved rigidly with its eyelids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..face.mediapipe_face import FACE_OVAL
from ..head.standin.landmarks_idx import EYE_L, EYE_R  # mediapipe's lid loops (model-independent indices)

if TYPE_CHECKING:  # pragma: no cover
    from ..head.model import HeadModel
    from ..head.params import HeadParams
    from ..render.camera import Camera

N_FACE_MESH = 468  # landmarks 468-477 are the irises: they follow the gaze, not the identity
EYE_JOINTS = (3, 4)  # the subject's left eye (mediapipe's EYE_L loop), then the right


@dataclass
class LandmarkDetailOptions:
    """enabled: move the head mesh onto the photo's landmarks (off: ``vertex_offsets`` stay zero,
    the builds before the twenty-first session). readings: the landmarks the mesh moves onto are
    the photo crop read as the tracker reads a clip (mediapipe's video mode, this many readings in
    a row, the last kept: face.analyze.FaceAnalyzer.tracker_landmarks), so the tracker finds the
    avatar's landmarks where it finds a clip's; 0 = the photo's own (static) landmarks, about
    0.9 px away (self-reenactment PSNR full, with the outline moved too: 23.20 with them, 23.38
    with six readings; docs/figures/eval.md). outline_weight: the face outline's share against the
    inner landmarks' 1. 0 by default: mediapipe places the outline by the silhouette, and moving
    the outline's vertices moved the visibility boundary the texture synthesis fills behind the
    ear from (the astronaut at -45 deg: local texture 0.0040 with 0.5, 0.0086 with 0,
    tests/avatar/test_synthesis.py's floor 0.006). smoothness: the bi-Laplacian's weight against a landmark's (per squared
    edge-length unit: larger spreads each move over more of the mesh and meets the landmarks less
    closely). decay: the pull of every vertex towards no offset (sets how far from the face the
    field reaches: about (smoothness / decay) ** 0.25 edges). max_offset: metres; longer moves are
    shortened to it (a misread landmark must not dent the face). iterations: fixed-point passes
    (each re-projects the moved landmarks: the camera's perspective makes one pass a little short)."""

    enabled: bool = True
    readings: int = 6
    outline_weight: float = 0.0
    smoothness: float = 0.05
    decay: float = 0.1
    max_offset: float = 0.004
    iterations: int = 3


@dataclass
class LandmarkDetail:
    """offsets: (V, 3) float32 metres, rest frame (``GaussianAvatar.vertex_offsets``);
    residual_before_px / residual_after_px: mean Euclidean distance (px at the camera's resolution)
    from the photo's landmarks to the model's, over the used landmarks, without and with the
    offsets; used: (478,) bool, the landmarks that were moved."""

    offsets: np.ndarray
    residual_before_px: float
    residual_after_px: float
    used: np.ndarray


def _embedding_matrix(model: "HeadModel", rows: np.ndarray) -> sp.csr_matrix:
    """(len(rows), V) sparse: landmark ``rows`` as barycentric mixes of the mesh's vertices."""
    emb = model.landmarks
    corners = np.asarray(model.faces, np.int64)[emb.face_idx[rows]]  # (n, 3)
    n = len(rows)
    return sp.csr_matrix((np.asarray(emb.bary, np.float64)[rows].ravel(),
                          (np.repeat(np.arange(n), 3), corners.ravel())), shape=(n, model.n_verts))


def _mesh_laplacian(model: "HeadModel") -> sp.csr_matrix:
    from .attributes import unique_edges
    from .sampling import graph_laplacian

    return graph_laplacian(unique_edges(np.asarray(model.faces, np.int64)), model.n_verts)


def landmark_weights_for_detail(model: "HeadModel", opts: LandmarkDetailOptions) -> np.ndarray:
    """(478,) float64: each landmark's weight in the spread (0 = not moved): the valid face-mesh
    landmarks, the outline at ``opts.outline_weight``, the irises never."""
    w = np.asarray(model.landmarks.valid, bool).astype(np.float64)
    w[N_FACE_MESH:] = 0.0
    w[list(FACE_OVAL)] *= opts.outline_weight
    return w


def spread_solver(model: "HeadModel", rows: np.ndarray, weights: np.ndarray,
                  opts: LandmarkDetailOptions) -> Callable[[np.ndarray], np.ndarray]:
    """``targets (n, 3) -> (V, 3)`` float64 vertex offsets whose landmark mixes meet the targets at
    landmark ``rows`` (n,) with ``weights`` (n,): argmin_D sum_l w_l |B_l D - t_l|^2 + smoothness
    |L D|^2 + decay |D|^2 (L the uniform mesh Laplacian). The normal equations are factored once
    (sparse LU); each call is one solve for the three columns."""
    B = _embedding_matrix(model, rows)
    L = _mesh_laplacian(model)
    W = sp.diags(np.asarray(weights, np.float64))
    lu = spla.splu((B.T @ W @ B + opts.smoothness * (L.T @ L) + opts.decay * sp.identity(model.n_verts)).tocsc())
    BtW = (B.T @ W).tocsr()
    return lambda targets: np.asarray(lu.solve(BtW @ np.asarray(targets, np.float64)), np.float64)


def spread_offsets(model: "HeadModel", rows: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                   opts: LandmarkDetailOptions) -> np.ndarray:
    """:func:`spread_solver` for one set of ``targets`` (n, 3) -> (V, 3) float64."""
    return spread_solver(model, rows, weights, opts)(targets)


def prepared_spread(model: "HeadModel", opts: LandmarkDetailOptions) -> Callable[[np.ndarray], np.ndarray]:
    """The spread solver for every landmark :func:`landmark_weights_for_detail` moves, made once
    per head model and options (cached on the model): photo-independent, so a build makes it on
    its preparation thread while the face is detected and fitted."""
    weights = landmark_weights_for_detail(model, opts)
    key = ("avatar.landmark_detail", opts.outline_weight, opts.smoothness, opts.decay)
    cached = model.cache.get(key)
    if cached is None:
        rows = np.flatnonzero(weights > 0)
        cached = model.cache[key] = spread_solver(model, rows, weights[rows], opts)
    return cached


def _eyes_rigid(model: "HeadModel", offsets: np.ndarray) -> None:
    """Each eyeball's vertices (skinned to its eye joint) take the mean offset of their own eye's
    lid landmarks, in place: the iris stays centred under the moved lids."""
    w = np.asarray(model.weights)
    emb = model.landmarks
    corners = np.asarray(model.faces, np.int64)[emb.face_idx]
    bary = np.asarray(emb.bary, np.float64)
    for joint, loop in zip(EYE_JOINTS, (EYE_L, EYE_R)):
        ball = w[:, joint] > 0.5
        if not ball.any():
            continue
        ring = np.asarray(loop, np.int64)
        lid = np.einsum("lk,lkc->lc", bary[ring], offsets[corners[ring]])  # (n, 3)
        offsets[ball] = lid.mean(0)


def landmark_detail(model: "HeadModel", params: "HeadParams", camera: "Camera", landmarks_px: np.ndarray,
                    opts: LandmarkDetailOptions | None = None) -> LandmarkDetail:
    """The rest-frame vertex offsets that put the model's landmarks, posed at the photo's fitted
    ``params`` (frame 0) and seen by ``camera``, on the photo's ``landmarks_px`` (478, 2+), moving
    each in the image plane at its own depth (see the module docstring)."""
    from .posing import lbs_numpy, rotate_blended

    opts = opts or LandmarkDetailOptions()
    weights = landmark_weights_for_detail(model, opts)
    obs = np.asarray(landmarks_px, np.float64)[:, :2]
    weights[~np.isfinite(obs).all(1)] = 0.0
    rows = np.flatnonzero(weights > 0)
    offsets = np.zeros((model.n_verts, 3), np.float64)
    if len(rows) == 0:
        return LandmarkDetail(offsets.astype(np.float32), float("nan"), float("nan"), np.zeros(len(obs), bool))
    verts, _, A = lbs_numpy(model, params.frame(0))
    verts = verts[0].astype(np.float64)
    faces = np.asarray(model.faces)
    R = camera.R.astype(np.float64)
    fx, fy = float(camera.fx), float(camera.fy)
    B = _embedding_matrix(model, rows)
    lmk_w = np.asarray(B @ np.asarray(model.weights, np.float64))  # (n, 5) blended skinning weights
    Rb = np.einsum("nj,jab->nab", lmk_w, A[0, :, :3, :3].astype(np.float64))  # (n, 3, 3)

    def residual(off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        posed = verts + rotate_blended(off.astype(np.float32), model.weights, A)[0].astype(np.float64)
        pts = model.landmarks.points(posed, faces)[rows]
        uv, z = camera.project(pts.astype(np.float32))
        return obs[rows] - uv.astype(np.float64), z.astype(np.float64)

    res, z = residual(offsets)
    before = float(np.linalg.norm(res, axis=1).mean())
    target = np.zeros((len(rows), 3))
    if np.array_equal(rows, np.flatnonzero(landmark_weights_for_detail(model, opts) > 0)):
        spread = prepared_spread(model, opts)
    else:  # some landmark unreadable (NaN): a solver of its own
        spread = spread_solver(model, rows, weights[rows], opts)
    for _ in range(max(1, opts.iterations)):
        # a pixel at depth z is z / f metres in the camera's image plane; to world, then to rest
        d_cam = np.stack([res[:, 0] * z / fx, res[:, 1] * z / fy, np.zeros(len(rows))], 1)
        target = target + np.linalg.solve(Rb, (d_cam @ R)[..., None])[..., 0]
        offsets = spread(target)
        _eyes_rigid(model, offsets)
        norm = np.linalg.norm(offsets, axis=1, keepdims=True)
        offsets *= np.minimum(1.0, opts.max_offset / np.maximum(norm, 1e-12))
        res, z = residual(offsets)
    after = float(np.linalg.norm(res, axis=1).mean())
    used = np.zeros(len(obs), bool)
    used[rows] = True
    return LandmarkDetail(offsets.astype(np.float32), before, after, used)
