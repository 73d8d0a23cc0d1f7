"""The stand-in face's landmark template: mediapipe's 478 landmarks on a real public-domain face.

Made by code (``python -m backend.head.standin.mp_template``): mediapipe face mesh
(refine_landmarks=True) on ``skimage.data.astronaut()``; head rotation removed; made left/right
symmetric (pairs found as nearest neighbours of the mirrored point set); scaled to metres (pupil
distance 63 mm) and placed in the head frame. The result is stored next to this file
(``mp_template.npy``, (478, 3) float32) so the stand-in generator needs neither mediapipe nor the
image; a test regenerates it and compares.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEMPLATE_PATH = Path(__file__).with_name("mp_template.npy")
PUPIL_DISTANCE = 0.063  # metres, adult average
# Where the template goes in the head frame: pupils' midpoint (FLAME-like proportions).
EYE_MID = np.array([0.0, 0.035, 0.088], np.float32)
# mediapipe's z is a weak-perspective estimate that comes out ~15% deeper than adult faces
# (nose tip 40 mm in front of the pupils instead of ~33 mm): compress depth about the pupils.
DEPTH_SCALE = 0.85
IRIS_R, IRIS_L = 468, 473  # iris centres (subject's right / left eye)


def detect_astronaut() -> np.ndarray:
    """Raw mediapipe landmarks (478, 3) on skimage's astronaut: (x, y) in pixels, z in pixels."""
    import mediapipe as mp  # only needed to regenerate
    import skimage.data

    img = skimage.data.astronaut()
    h, w = img.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True,
                                         max_num_faces=1) as fm:
        res = fm.process(img)
    if not res.multi_face_landmarks:
        raise RuntimeError("mediapipe found no face in skimage.data.astronaut()")
    lm = res.multi_face_landmarks[0].landmark
    return np.array([[p.x * w, p.y * h, p.z * w] for p in lm], np.float64)


def _procrustes_rotation(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotation R (3,3) minimising |R @ src_i - dst_i| (both centred)."""
    u, _, vt = np.linalg.svd(dst.T @ src)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def mirror_pairs(p: np.ndarray) -> np.ndarray:
    """Index of each point's mirror partner (478,): one-to-one nearest neighbours of the x-mirrored
    point set (optimal assignment, so no two points claim the same partner)."""
    from scipy.optimize import linear_sum_assignment

    m = p * np.array([-1.0, 1.0, 1.0])
    d = np.linalg.norm(p[:, None, :] - m[None, :, :], axis=-1)
    _, pair = linear_sum_assignment(d)
    # The cost is symmetric (mirroring is an isometry), so the optimum pairs i<->j both ways;
    # make sure, since symmetrising with a non-mutual pairing would not give a symmetric result.
    bad = pair[pair] != np.arange(len(p))
    pair[bad] = np.arange(len(p))[bad]
    return pair


def canonicalize(raw: np.ndarray, iters: int = 10) -> np.ndarray:
    """Raw image-space landmarks -> symmetric head-frame template (478, 3) float32, metres."""
    p = raw * np.array([1.0, -1.0, -1.0])  # image (x right, y down, z away) -> +Y up, +Z to viewer
    p = p - p.mean(0)
    # initial frame: x along the pupils, y from the face's plane fit (PCA), z = x cross y
    x = p[IRIS_L] - p[IRIS_R]
    x /= np.linalg.norm(x)
    n = np.linalg.svd(p - p.mean(0))[2][2]
    n = n if n[2] > 0 else -n
    y = np.cross(n, x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    R = np.stack([x, y, z])
    p = p @ R.T
    for _ in range(iters):  # symmetry plane refinement: align p with its symmetrised self
        pair = mirror_pairs(p)
        sym = 0.5 * (p + p[pair] * np.array([-1.0, 1.0, 1.0]))
        c = p.mean(0)
        Rk = _procrustes_rotation(p - c, sym - sym.mean(0))
        p = (p - c) @ Rk.T + sym.mean(0)
    pair = mirror_pairs(p)
    sym = 0.5 * (p + p[pair] * np.array([-1.0, 1.0, 1.0]))
    self_pair = pair == np.arange(len(p))
    sym[self_pair, 0] = 0.0  # midline points sit exactly on x = 0
    scale = PUPIL_DISTANCE / np.linalg.norm(sym[IRIS_L] - sym[IRIS_R])
    sym = sym * scale
    sym[:, 2] = sym[IRIS_L, 2] + DEPTH_SCALE * (sym[:, 2] - sym[IRIS_L, 2])
    sym = sym - 0.5 * (sym[IRIS_L] + sym[IRIS_R]) + EYE_MID
    return close_mouth(sym).astype(np.float32)


# inner lip contours, subject's right corner -> left corner (mediapipe topology)
LIP_UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIP_LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
NOSE_BOTTOM, CHIN = 2, 152
SMILE_REMOVED = 0.6


def close_mouth(p: np.ndarray) -> np.ndarray:
    """The photo's lips are parted (a smile showing teeth); a neutral model has them closed.
    Move the upper lip down and the lower lip up by half the local gap, fading to nothing at the
    nose base and the chin, so both inner lip contours meet on one parting line."""
    p = p.copy()
    up, lo = p[list(LIP_UPPER_INNER)], p[list(LIP_LOWER_INNER)]
    gap = np.interp(p[:, 0], up[:, 0], up[:, 1] - lo[:, 1], left=0.0, right=0.0)
    line = np.interp(p[:, 0], up[:, 0], 0.5 * (up[:, 1] + lo[:, 1]))
    y = p[:, 1]
    above = np.clip(1 - (y - line) / (p[NOSE_BOTTOM, 1] - line), 0, 1) * (y >= line)
    below = np.clip(1 - (line - y) / (line - p[CHIN, 1]), 0, 1) * (y < line)
    p[:, 1] += 0.5 * gap * (below - above)
    # and the smile is mostly taken out: corners come down to 40% of their lift over the centre
    lift = line - np.interp(0.0, up[:, 0], 0.5 * (up[:, 1] + lo[:, 1]))
    corner_x = np.abs(up[[0, -1], 0]).max()
    window = np.clip(2.0 - np.abs(p[:, 0]) / corner_x, 0, 1) * np.exp(-0.5 * ((y - line) / 0.012) ** 2)
    p[:, 1] -= SMILE_REMOVED * lift * window
    # the inner contours coincide exactly once closed
    p[list(LIP_LOWER_INNER), 1] = p[list(LIP_UPPER_INNER), 1]
    return p


def load_template() -> np.ndarray:
    """The stored template (478, 3) float32 metres, head frame."""
    return np.load(TEMPLATE_PATH)


if __name__ == "__main__":  # regenerate the stored template
    t = canonicalize(detect_astronaut())
    np.save(TEMPLATE_PATH, t)
    print(f"wrote {TEMPLATE_PATH}: {t.shape}, bbox {t.min(0)} .. {t.max(0)}")
