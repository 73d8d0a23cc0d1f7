"""Head-model data: the FLAME-layout ``HeadModel`` and its mediapipe ``LandmarkEmbedding``.

Frame: FLAME's (metres, +Y up, +Z out of the face, +X to the subject's left).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

JOINT_NAMES: tuple[str, ...] = ("global", "neck", "jaw", "eye_L", "eye_R")
PARENTS: tuple[int, ...] = (-1, 0, 1, 1, 1)
N_JOINTS = len(JOINT_NAMES)
N_POSE_FEATURES = 9 * (N_JOINTS - 1)  # (R - I) of the 4 non-root joints, row-major 3x3 each
N_MEDIAPIPE = 478  # mediapipe face mesh with iris refinement


class HeadModelError(InputError):
    """A head-model or landmark-embedding file is unusable (names the file and the problem)."""


@dataclass(eq=False)  # holds arrays: identity equality/hash (usable as a cache key)
class LandmarkEmbedding:
    """Mediapipe's 478 face-mesh landmarks as barycentric points on the model surface.

    face_idx: (478,) int64 index into ``HeadModel.faces``
    bary:     (478, 3) float32 barycentric weights (rows sum to 1)
    valid:    (478,) bool; False where the model cannot place a landmark (e.g. iris on FLAME files
              without eyeball embedding). Invalid rows still hold a usable (0, (1,0,0)) entry.
    """

    face_idx: np.ndarray
    bary: np.ndarray
    valid: np.ndarray

    @staticmethod
    def empty(n: int = N_MEDIAPIPE) -> "LandmarkEmbedding":
        """An embedding with every landmark invalid (model without a known embedding)."""
        bary = np.zeros((n, 3), np.float32)
        bary[:, 0] = 1.0
        return LandmarkEmbedding(np.zeros(n, np.int64), bary, np.zeros(n, bool))

    def points(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Landmark positions (478, 3) (or (..., 478, 3) for batched vertices (..., V, 3))."""
        tri = faces[self.face_idx]  # (478, 3)
        corners = vertices[..., tri, :]  # (..., 478, 3, 3)
        return np.einsum("...lkc,lk->...lc", corners, self.bary)


@dataclass(eq=False)  # holds arrays: identity equality/hash (usable as a cache key)
class HeadModel:
    """A FLAME-layout linear head model. Shapes (V vertices, F faces, S shape, E expression):

    v_template  (V, 3) float32 metres, neutral mean head in the rest pose
    faces       (F, 3) int64
    shapedirs   (V, 3, S) float32 identity basis (metres per unit coefficient)
    exprdirs    (V, 3, E) float32 expression basis
    posedirs    (V, 3, 36) float32 pose correctives, driven by (R - I) of joints 1..4 (row-major)
    J_regressor (5, V) float32 dense: rest joints = J_regressor @ shaped vertices
    weights     (V, 5) float32 skinning weights (rows sum to 1)
    parents     (5,) int64, -1 for the root
    expr_names  E names (stand-in: ARKit's 52, "eyeBlinkLeft", ...; FLAME: "exp_000", ...)
    landmarks   mediapipe 478 -> surface embedding
    landmark_exprdirs  optional {expression name: (V, 3) float32}: the direction an uncalibrated
                landmark fit (face.landmark_model) solves that expression with, in place of its
                exprdirs column, where the render's deformation carries a part that a real face's
                landmarks would borrow (stand-in: cheekPuff's widened outline, see its generator);
                a tracker calibrated to an avatar reads the rendered deformation instead
    """

    name: str
    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    exprdirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    expr_names: list[str]
    landmarks: LandmarkEmbedding
    shape_names: list[str] = field(default_factory=list)  # optional, len S ("" entries allowed)
    landmark_exprdirs: dict[str, np.ndarray] = field(default_factory=dict)  # optional, see above
    # Per-process caches (torch copies per device, LODs): never compared, never saved.
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_verts(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def n_shape(self) -> int:
        return int(self.shapedirs.shape[2])

    @property
    def n_expr(self) -> int:
        return int(self.exprdirs.shape[2])

    @property
    def expr_bounds(self) -> tuple[float, float] | None:
        """(0, 1) when the expression basis is ARKit's 52 blendshapes (weights are one-sided and
        bounded: the tracker solves inside them); None for unbounded PCA bases such as FLAME's."""
        from .arkit_names import is_arkit

        return (0.0, 1.0) if is_arkit(self.expr_names) else None

    def shaped(self, shape: np.ndarray) -> np.ndarray:
        """(V, 3) float32 metres: the template plus the identity blend shapes of ``shape`` (its
        first n_shape coefficients; fewer allowed), neutral expression, rest pose."""
        s = np.asarray(shape, np.float32).reshape(-1)[: self.n_shape]
        return (self.v_template + np.einsum("vcs,s->vc", self.shapedirs[..., : len(s)], s)).astype(np.float32)

    def rest_joints(self, vertices: np.ndarray | None = None) -> np.ndarray:
        """(5, 3) joint positions regressed from ``vertices`` (default: the template)."""
        v = self.v_template if vertices is None else vertices
        return (self.J_regressor @ v).astype(np.float32)


def _fail(path: str | Path | None, msg: str) -> None:
    raise HeadModelError(path, msg)


def validate_model(m: HeadModel, path: str | Path | None = None) -> None:
    """Raise HeadModelError with a precise message when ``m`` is not a consistent head model."""

    def check(name: str, arr: Any, shape: tuple[int | None, ...]) -> None:
        if not isinstance(arr, np.ndarray):
            _fail(path, f"'{name}' is {type(arr).__name__}, expected an array of shape {_fmt(shape)}")
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            _fail(path, f"'{name}' has shape {tuple(arr.shape)}, expected {_fmt(shape)}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            _fail(path, f"'{name}' contains NaN or infinite values")

    check("v_template", m.v_template, (None, 3))
    V = m.v_template.shape[0]
    if V < 4:
        _fail(path, f"'v_template' has only {V} vertices")
    check("faces", m.faces, (None, 3))
    if m.faces.size and (m.faces.min() < 0 or m.faces.max() >= V):
        _fail(path, f"'f' indexes vertex {int(m.faces.max())} but the model has {V} vertices")
    check("shapedirs", m.shapedirs, (V, 3, None))
    check("exprdirs", m.exprdirs, (V, 3, None))
    check("posedirs", m.posedirs, (V, 3, N_POSE_FEATURES))
    check("J_regressor", m.J_regressor, (N_JOINTS, V))
    check("weights", m.weights, (V, N_JOINTS))
    check("parents", m.parents, (N_JOINTS,))
    if tuple(int(p) for p in m.parents) != PARENTS:
        _fail(path, f"kinematic tree {tuple(int(p) for p in m.parents)} is not FLAME's {PARENTS} "
                    f"(joints {', '.join(JOINT_NAMES)})")
    row = m.weights.sum(1)
    if np.abs(row - 1.0).max() > 1e-3:
        bad = int(np.argmax(np.abs(row - 1.0)))
        _fail(path, f"skinning weights of vertex {bad} sum to {row[bad]:.4f}, expected 1")
    if len(m.expr_names) != m.n_expr:
        _fail(path, f"{len(m.expr_names)} expression names for {m.n_expr} expression components")
    if m.shape_names and len(m.shape_names) != m.n_shape:
        _fail(path, f"{len(m.shape_names)} shape names for {m.n_shape} shape components")
    for name, d in m.landmark_exprdirs.items():
        if name not in m.expr_names:
            _fail(path, f"landmark direction for '{name}', which is not one of the model's expressions")
        check(f"landmark direction of {name}", d, (V, 3))
    lm = m.landmarks
    check("landmark face_idx", lm.face_idx, (None,))
    L = lm.face_idx.shape[0]
    check("landmark bary", lm.bary, (L, 3))
    check("landmark valid", lm.valid, (L,))
    if L and (lm.face_idx.min() < 0 or lm.face_idx.max() >= m.n_faces):
        _fail(path, f"landmark embedding indexes face {int(lm.face_idx.max())} "
                    f"but the model has {m.n_faces} faces")


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"


def save_head_model(path: str | Path, model: HeadModel) -> None:
    """Write ``model`` as our .npz (layout: head/loader.py, which reads it); no pickled objects inside.
    Here, beside the model, so the stand-in cache can write it without importing the loader."""
    kt = np.stack([np.where(model.parents < 0, 2**32 - 1, model.parents), np.arange(N_JOINTS)])
    np.savez(path, name=np.array(model.name), v_template=model.v_template, f=model.faces,
             shapedirs=model.shapedirs, exprdirs=model.exprdirs, posedirs=model.posedirs,
             J_regressor=model.J_regressor, weights=model.weights, kintree_table=kt.astype(np.int64),
             expr_names=np.array(model.expr_names, dtype=str),
             shape_names=np.array(model.shape_names, dtype=str),
             lmk_face_idx=model.landmarks.face_idx, lmk_bary=model.landmarks.bary,
             lmk_valid=model.landmarks.valid,
             lmk_exprdir_names=np.array(list(model.landmark_exprdirs), dtype=str),
             lmk_exprdirs=np.stack(list(model.landmark_exprdirs.values()), -1).astype(np.float32)
             if model.landmark_exprdirs else np.zeros((model.n_verts, 3, 0), np.float32))
