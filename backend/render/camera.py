"""Pinhole camera in the OpenCV / gsplat convention, plus look-at and orbit helpers.

Axes: camera x right, y down, z forward (the camera looks along +z). ``viewmat`` maps world points
to camera points (``x_cam = R @ x_world + t``). Pixel ``(j, i)`` (column, row) has its centre at
``(j + 0.5, i + 0.5)``; ``project`` returns continuous pixel coordinates ``K @ x_cam / z`` in that
convention, so ``floor(u), floor(v)`` is the pixel a point lands in.

World frame (docs/CONTRACTS.md): metres, +Y up, +Z out of the face towards the viewer. A camera in
front of the face is ``Camera.look_at(eye=(0, 0, 0.6), target=(0, 0, 0), width=512, height=512,
fov_y_deg=20)``; ``cam.orbit_yaw(30)`` turns it 30 degrees about the world +Y axis through the pivot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..rotations import axis_angle_to_matrix

ArrayLike3 = Sequence[float] | np.ndarray


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if not math.isfinite(n) or n < 1e-12:
        raise ValueError(f"{what} must be a finite non-zero vector, got {v.tolist()}")
    return v / n


def _rotation_about_axis(axis: np.ndarray, degrees: float) -> np.ndarray:
    """(3, 3) float64 rotation, right-handed about ``axis`` (any length), by ``degrees``."""
    return axis_angle_to_matrix(_unit(np.asarray(axis, np.float64), "axis") * math.radians(degrees))


@dataclass
class Camera:
    """A pinhole camera: intrinsics in pixels, world->camera extrinsics, image size.

    K:       (3, 3) float32, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels.
    viewmat: (4, 4) float32 world -> camera (OpenCV axes), last row (0, 0, 0, 1).
    width, height: image size in pixels.
    """

    K: np.ndarray
    viewmat: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        self.K = np.array(self.K, dtype=np.float32)
        self.viewmat = np.array(self.viewmat, dtype=np.float32)
        if self.K.shape != (3, 3):
            raise ValueError(f"Camera.K must be (3, 3), got {self.K.shape}")
        if self.viewmat.shape != (4, 4):
            raise ValueError(f"Camera.viewmat must be (4, 4), got {self.viewmat.shape}")
        if not (np.all(np.isfinite(self.K)) and np.all(np.isfinite(self.viewmat))):
            raise ValueError("Camera.K and Camera.viewmat must be finite")
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"Camera size must be positive, got {self.width}x{self.height}")
        if self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            raise ValueError(f"Camera focal lengths must be positive, got fx={self.K[0, 0]} fy={self.K[1, 1]}")
        if not np.allclose(self.viewmat[3], (0, 0, 0, 1), atol=1e-6):
            raise ValueError(f"Camera.viewmat last row must be (0, 0, 0, 1), got {self.viewmat[3].tolist()}")
        R = self.viewmat[:3, :3].astype(np.float64)
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
            raise ValueError("Camera.viewmat rotation must be a proper rotation (orthonormal, det +1)")

    # ---- intrinsics / extrinsics ---------------------------------------------------------------
    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def R(self) -> np.ndarray:
        """(3, 3) world -> camera rotation."""
        return self.viewmat[:3, :3]

    @property
    def t(self) -> np.ndarray:
        """(3,) world -> camera translation."""
        return self.viewmat[:3, 3]

    @property
    def center(self) -> np.ndarray:
        """(3,) camera position in world coordinates (metres)."""
        return (-self.R.T.astype(np.float64) @ self.t.astype(np.float64)).astype(np.float32)

    @property
    def fov_y_deg(self) -> float:
        return math.degrees(2.0 * math.atan(0.5 * self.height / self.fy))

    @staticmethod
    def intrinsics(focal_px: float, width: int, height: int, focal_y_px: float | None = None) -> np.ndarray:
        """(3, 3) K with the principal point at the image centre."""
        fy = focal_px if focal_y_px is None else focal_y_px
        return np.array([[focal_px, 0, width / 2.0], [0, fy, height / 2.0], [0, 0, 1]], np.float32)

    @staticmethod
    def focal_from_fov(fov_y_deg: float, height: int) -> float:
        """Focal length in pixels for a vertical field of view in degrees."""
        if not 0.0 < fov_y_deg < 180.0:
            raise ValueError(f"fov_y_deg must be in (0, 180), got {fov_y_deg}")
        return 0.5 * height / math.tan(math.radians(fov_y_deg) / 2.0)

    # ---- constructors ---------------------------------------------------------------------------
    @classmethod
    def look_at(
        cls,
        eye: ArrayLike3,
        target: ArrayLike3 = (0.0, 0.0, 0.0),
        up: ArrayLike3 = (0.0, 1.0, 0.0),
        *,
        width: int = 512,
        height: int = 512,
        fov_y_deg: float | None = 20.0,
        focal_px: float | None = None,
    ) -> "Camera":
        """Camera at ``eye`` (world, metres) looking at ``target``; ``up`` is world up (+Y).

        The image's "up" (-y camera) is ``up`` projected orthogonal to the view direction, so a
        camera at (0, 0, d) looking at the origin sees world +X on the image's right and +Y up.
        Give either ``focal_px`` or ``fov_y_deg`` (vertical field of view).
        """
        eye_v = np.asarray(eye, np.float64).reshape(3)
        fwd = _unit(np.asarray(target, np.float64).reshape(3) - eye_v, "target - eye")
        right = np.cross(fwd, np.asarray(up, np.float64).reshape(3))
        right = _unit(right, "up x view direction (up must not be parallel to the view direction)")
        down = np.cross(fwd, right)
        R = np.stack([right, down, fwd])  # rows: camera axes in world coordinates
        view = np.eye(4)
        view[:3, :3] = R
        view[:3, 3] = -R @ eye_v
        if focal_px is None:
            if fov_y_deg is None:
                raise ValueError("look_at needs focal_px or fov_y_deg")
            focal_px = cls.focal_from_fov(fov_y_deg, height)
        return cls(cls.intrinsics(focal_px, width, height), view.astype(np.float32), width, height)

    def orbit_yaw(
        self, degrees: float, pivot: ArrayLike3 = (0.0, 0.0, 0.0), axis: ArrayLike3 = (0.0, 1.0, 0.0)
    ) -> "Camera":
        """This camera moved ``degrees`` about ``axis`` (world, default +Y) through ``pivot``.

        Positive angles turn right-handedly about the axis: with +Y up, a camera on +Z moves
        towards +X. The camera keeps looking at the same point relative to the pivot.
        """
        rot = _rotation_about_axis(np.asarray(axis, np.float64), degrees)  # moves the camera
        p = np.asarray(pivot, np.float64).reshape(3)
        # world->cam' = world->cam o (rotation by -degrees about the pivot)
        inv = np.eye(4)
        inv[:3, :3] = rot.T
        inv[:3, 3] = p - rot.T @ p
        view = self.viewmat.astype(np.float64) @ inv
        return Camera(self.K.copy(), view.astype(np.float32), self.width, self.height)

    def resized(self, width: int, height: int) -> "Camera":
        """Same view at another resolution (intrinsics scaled per axis)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.astype(np.float64).copy()
        K[0] *= sx
        K[1] *= sy
        K[2] = (0, 0, 1)
        return Camera(K.astype(np.float32), self.viewmat.copy(), width, height)

    # ---- projection -----------------------------------------------------------------------------
    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 3) camera-frame points (float32)."""
        pts = np.asarray(points, np.float32)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points must be (N, 3), got {pts.shape}")
        return pts @ self.R.T + self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> pixel coordinates (N, 2) float32 and camera depth z (N,) metres.

        Points at or behind the camera (z <= 0) get NaN pixel coordinates.
        """
        pc = self.to_camera(points)  # [N, 3]
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (pc[:, :2] / z[:, None]) * np.array([self.fx, self.fy], np.float32) + np.array(
                [self.cx, self.cy], np.float32
            )
        uv[z <= 0] = np.nan
        return uv.astype(np.float32), z.astype(np.float32)
