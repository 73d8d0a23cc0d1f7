"""Per-frame head-model parameters (identity, expression, joint pose, translation)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .model import N_JOINTS, HeadModel, HeadModelError


@dataclass(eq=False)  # holds arrays: identity equality/hash (usable as a cache key)
class HeadParams:
    """Parameters of T frames (T = 1 for a photo).

    shape  (S,) float32 identity coefficients (shared by all frames)
    expr   (T, E) float32 expression coefficients
    pose   (T, 5, 3) float32 axis-angle (radians) per joint, JOINT_NAMES order
    transl (T, 3) float32 metres, added after posing
    torso  (T, 3) float32 metres (model frame), or None = zeros: the torso channel, a translation
           of the global (root) joint's own skinning transform only, not of its children: what is
           skinned to the root (the body, hair lying on it, the base of the neck) moves by its root
           weight times this, the head does not (avatar.posing, face.torso)
    """

    shape: np.ndarray
    expr: np.ndarray
    pose: np.ndarray
    transl: np.ndarray
    torso: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.shape = np.asarray(self.shape, np.float32).reshape(-1)
        self.expr = np.asarray(self.expr, np.float32)
        self.pose = np.asarray(self.pose, np.float32)
        self.transl = np.asarray(self.transl, np.float32)
        if self.expr.ndim == 1:
            self.expr = self.expr[None]
        if self.pose.ndim == 2:
            self.pose = self.pose[None]
        if self.transl.ndim == 1:
            self.transl = self.transl[None]
        T = self.expr.shape[0]
        if self.pose.shape != (T, N_JOINTS, 3) or self.transl.shape != (T, 3):
            raise ValueError(f"HeadParams: expr {self.expr.shape}, pose {self.pose.shape}, "
                             f"transl {self.transl.shape} disagree (expected T x E, T x 5 x 3, T x 3)")
        if self.torso is not None:
            self.torso = np.asarray(self.torso, np.float32)
            if self.torso.ndim == 1:
                self.torso = self.torso[None]
            if self.torso.shape != (T, 3):
                raise ValueError(f"HeadParams: torso {self.torso.shape}, expected {(T, 3)}")

    def sliced(self, sl) -> "HeadParams":
        """Frames ``sl`` (a slice or an index array) of every per-frame channel, the torso included."""
        return HeadParams(self.shape, self.expr[sl], self.pose[sl], self.transl[sl],
                          None if self.torso is None else self.torso[sl])

    @property
    def n_frames(self) -> int:
        return int(self.expr.shape[0])

    def frame(self, t: int) -> "HeadParams":
        """Frame ``t`` as a T = 1 HeadParams (arrays copied)."""
        return HeadParams(self.shape.copy(), self.expr[t:t + 1].copy(), self.pose[t:t + 1].copy(),
                          self.transl[t:t + 1].copy(), None if self.torso is None else self.torso[t:t + 1].copy())

    @staticmethod
    def zeros(model: HeadModel, T: int = 1) -> "HeadParams":
        """Neutral parameters (mean identity, no expression, rest pose) for ``T`` frames."""
        return HeadParams(np.zeros(model.n_shape, np.float32), np.zeros((T, model.n_expr), np.float32),
                          np.zeros((T, N_JOINTS, 3), np.float32), np.zeros((T, 3), np.float32))

    def save(self, path: str | Path) -> None:
        """Write an .npz (shape, expr, pose, transl, and torso where the parameters have one)."""
        from ..output_safety import atomic_path

        target = Path(path) if str(path).endswith(".npz") else Path(f"{path}.npz")  # numpy's rule
        with atomic_path(target) as tmp, open(tmp, "wb") as fh:
            extra = {} if self.torso is None else {"torso": self.torso}
            np.savez(fh, shape=self.shape, expr=self.expr, pose=self.pose, transl=self.transl, **extra,
                     meta=np.array(json.dumps({"format": "omg-head-params", "version": 1})))

    @staticmethod
    def load(path: str | Path) -> "HeadParams":
        """Read a file written by :meth:`save`; HeadModelError on a missing/bad file."""
        try:
            with np.load(path, allow_pickle=False) as z:
                return HeadParams(z["shape"], z["expr"], z["pose"], z["transl"],
                                  z["torso"] if "torso" in z.files else None)
        except Exception as exc:  # noqa: BLE001 - numpy's .npy parser raises many types on bad data
            raise HeadModelError(path, f"not a head-parameter file ({type(exc).__name__}: "
                                       f"{str(exc)[:120]})") from None
