"""Deterministic code-generated stand-in head model in FLAME's layout (no data from anywhere).

Pipeline: signed-distance head (shape.py) bent through mediapipe's landmark template
(mp_template.py) -> latitude/longitude grid re-spaced by arc length (denser on the face) ->
eye openings and mouth pocket -> separate eyeball spheres -> skinning weights, joint regressor,
identity / ARKit-52 expression bases, pose correctives -> landmark embedding.
"""

from __future__ import annotations

import numpy as np

from ..arkit_names import ARKIT_NAMES, JOINT_CHANNELS
from ..model import N_JOINTS, N_MEDIAPIPE, PARENTS, HeadModel, LandmarkEmbedding
from . import landmarks_idx as LI
from .geometry import embed_points, grid_faces, inside_polygon, signed_volume, vertex_normals
from .mp_template import load_template
from .shape import CENTER, RadialFace

GENERATOR_VERSION = 3               # 3: ARKit-52 expression basis (2: 24 named expressions)
N_COLS, N_ROWS = 68, 72          # head grid: 68 x 72 + 2 poles = 4,898 vertices
EYE_ROWS, LIP_ROWS = 2, 2        # grid rows inside each eye opening / inside the mouth pocket
EYE_MIN_GAP = 0.004              # lid rows stay >= 4 mm apart (eye corners, outside the eyes)
LIP_GAP = 0.001                  # lip rows 1 mm apart at rest (the mouth is closed)
ROW_SPACING = 0.004              # typical face row spacing the anchor gaps relax to
MOUTH_DEPTH = 0.007              # depth of the mouth pocket behind the lips
# mouthFunnel = 1: upper / lower inner lip part this far (metres). The upper lip stays: with 2 mm up
# the tracker's "O" (funnel ~1, nothing in the basis lowers the upper lip again) put the upper inner
# lip 3-9 px above the clip's on d12's open frames (docs/figures/eval.md, "the funnel's upper lip").
FUNNEL_OPEN = (0.0, 0.006)
# mouthClose = jawOpen = MOUTH_SEALED_AT: the lower lip lands exactly back on the upper one. A shape key
# is linear in its weight and the jaw's rotation is not, so the lips can meet exactly at one weight;
# about it they part (wider jaw) or press (narrower) by about (w^2 - w * MOUTH_SEALED_AT) / 2 * theta^2 * r
# (r: the lip's distance from the jaw's pivot). Measured on the inner lips: within 0.15 mm of their rest
# gap at 0.3 and 0.6, 0.5 mm wider at 0.9, 0.8 mm at 1
MOUTH_SEALED_AT = 0.6
PUFF_SIDE = (0.056, -0.020, 0.062)  # cheekPuff's side centre (|x|, y, z metres): the jaw's outline at the mouth
EYE_LON, EYE_LAT = 16, 12        # eyeball grid per eye: 16 x 12 + 2 = 194 vertices
EYE_RADIUS = 0.012               # metres
BLINK_CLOSURE = 0.0              # closed, the upper lid margin comes down onto the lower one
LID_CLEARANCE = 0.0006           # lid margins rest this far outside the eyeball
IRIS_ANGLE = np.arcsin(0.0059 / EYE_RADIUS)  # iris radius 5.9 mm
GLOBAL, NECK, JAW, EYE_L, EYE_R = range(N_JOINTS)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _gauss(p: np.ndarray, c: np.ndarray, sigma) -> np.ndarray:
    q = (p - c) / np.asarray(sigma)
    return np.exp(-0.5 * (q * q).sum(-1))


# ---------------------------------------------------------------------------------------------- head
def _profile_crossing(y: np.ndarray, s: np.ndarray, y_target: np.ndarray) -> np.ndarray:
    """Weighted arc position where each profile (C, n) first descends below ``y_target`` (C,)."""
    below = y < y_target[:, None]
    i = np.argmax(below, axis=1)  # first sample below the target
    i = np.maximum(i, 1)
    rows = np.arange(len(y))
    y0, y1 = y[rows, i - 1], y[rows, i]
    f = np.clip((y0 - y_target) / np.where(y0 == y1, 1e-12, y0 - y1), 0, 1)
    return s[rows, i - 1] + f * (s[rows, i] - s[rows, i - 1])


def _anchor_heights(L: np.ndarray, x: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
    """Heights of the rows that must follow the lids and the lips, at meridian points (x, z) (C,).

    Upper/lower lid lines inside each eye's corners (kept >= EYE_MIN_GAP apart); the lips'
    parting line +-LIP_GAP/2 inside the mouth (the pocket sits between those rows). Away from the
    eyes and the mouth the gaps open up to the normal row spacing, so no seam runs round the head."""
    ax = np.abs(x)
    up, lo = L[list(LI.EYE_UPPER["L"])], L[list(LI.EYE_LOWER["L"])]  # symmetric template
    ou, ol = np.argsort(up[:, 0]), np.argsort(lo[:, 0])
    yu = np.interp(ax, up[ou, 0], up[ou, 1])
    yl = np.interp(ax, lo[ol, 0], lo[ol, 1])
    mid = 0.5 * (yu + yl)
    x_in, x_out = up[:, 0].min(), up[:, 0].max()
    face = _smoothstep(0.02, 0.06, z)
    near_eye = face * _smoothstep(x_in - 0.012, x_in, ax) * (1 - _smoothstep(x_out, x_out + 0.015, ax))
    gap_min = EYE_MIN_GAP + (1 - near_eye) * ((EYE_ROWS + 1) * ROW_SPACING - EYE_MIN_GAP)
    eye_up = np.maximum(yu, mid + 0.5 * gap_min)
    eye_lo = np.minimum(yl, mid - 0.5 * gap_min)
    corner_x = abs(L[LI.MOUTH_CORNER_L, 0])
    near_mouth = face * (1 - _smoothstep(corner_x, corner_x + 0.02, ax))
    lip_gap = LIP_GAP + (1 - near_mouth) * ((LIP_ROWS + 1) * ROW_SPACING - LIP_GAP)
    lip = _lip_line_y(L, x)
    return {"eye_up": eye_up, "eye_lo": eye_lo, "lip_up": lip + 0.5 * lip_gap,
            "lip_lo": lip - 0.5 * lip_gap}


def _head_grid(face: RadialFace, L: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """(2 + N_ROWS * N_COLS, 3) vertices (top pole, rings top -> bottom, bottom pole) and the row
    index of each anchor line. Rows are spaced by density-weighted arc length along each meridian
    and pinned to the lid and lip lines, so eye openings and the mouth follow grid rows."""
    u = np.arange(N_COLS) / N_COLS
    phi = 2 * np.pi * u - 0.55 * np.sin(2 * np.pi * u)  # denser columns at the front (phi = 0)
    n_fine = 300
    theta = np.linspace(0.0, np.pi, n_fine)
    st, ct = np.sin(theta), np.cos(theta)
    dirs = np.stack([st[None] * np.sin(phi)[:, None], np.broadcast_to(ct, (N_COLS, n_fine)),
                     st[None] * np.cos(phi)[:, None]], -1)  # (C, n_fine, 3)
    r = face(dirs.reshape(-1, 3)).reshape(N_COLS, n_fine)
    pts = CENTER + dirs * r[..., None]
    # arc length weighted by a face-density factor, so the face gets finer rows
    mid = 0.5 * (pts[:, 1:] + pts[:, :-1])
    facew = (_smoothstep(0.0, 0.04, mid[..., 2]) * _smoothstep(-0.11, -0.08, mid[..., 1])
             * (1 - _smoothstep(0.08, 0.11, mid[..., 1])))
    neckw = 1 - 0.6 * _smoothstep(-0.15, -0.2, mid[..., 1])  # bottom of the neck: coarser
    seg = np.linalg.norm(np.diff(pts, axis=1), axis=-1) * (1 + 2.2 * facew) * neckw
    s = np.concatenate([np.zeros((N_COLS, 1)), np.cumsum(seg, 1)], 1)
    s /= s[:, -1:]
    # anchors: meridian x at each anchor height (two fixed-point passes; x varies slowly)
    names = ("eye_up", "eye_lo", "lip_up", "lip_lo")
    x_at = {k: np.zeros(N_COLS) for k in names}
    z_at = {k: np.cos(phi) for k in names}
    for _ in range(3):
        h = {k: _anchor_heights(L, x_at[k], z_at[k])[k] for k in names}
        for k in names:
            sk = _profile_crossing(pts[..., 1], s, h[k])
            x_at[k] = np.array([np.interp(sk[c], s[c], pts[c, :, 0]) for c in range(N_COLS)])
            z_at[k] = np.array([np.interp(sk[c], s[c], pts[c, :, 2]) for c in range(N_COLS)])
    s_anchor = np.stack([_profile_crossing(pts[..., 1], s, h[k]) for k in names], 1)  # (C,4)
    # rows per segment: the lid/lip gaps get fixed counts, the rest shares by front arc length
    front = s_anchor[0]
    spans = np.array([front[0], front[2] - front[1], 1 - front[3]])
    free = N_ROWS - (EYE_ROWS + 1) - (LIP_ROWS + 1) - 2
    n_seg = np.floor(free * spans / spans.sum()).astype(int)
    n_seg[0] += free - n_seg.sum()
    idx = {"eye_up": int(n_seg[0])}
    idx["eye_lo"] = idx["eye_up"] + EYE_ROWS + 1
    idx["lip_up"] = idx["eye_lo"] + int(n_seg[1]) + 1
    idx["lip_lo"] = idx["lip_up"] + LIP_ROWS + 1
    # knots: (row position in 0..N_ROWS+1 counting the poles, arc position)
    knot_rows = np.array([0, idx["eye_up"] + 1, idx["eye_lo"] + 1, idx["lip_up"] + 1,
                          idx["lip_lo"] + 1, N_ROWS + 1], float)
    ring = np.zeros((N_ROWS, N_COLS, 3))
    rows = np.arange(1, N_ROWS + 1, dtype=float)
    for c in range(N_COLS):
        knots_s = np.concatenate([[0.0], s_anchor[c], [1.0]])
        target = np.interp(rows, knot_rows, knots_s)
        ring[:, c] = np.stack([np.interp(target, s[c], pts[c, :, k]) for k in range(3)], -1)
    return np.concatenate([pts[0, :1], ring.reshape(-1, 3), pts[0, -1:]], 0), idx


def _eyeball(center: np.ndarray) -> np.ndarray:
    """UV sphere with its front pole along +Z: (2 + EYE_LAT * EYE_LON, 3); ring 3 is the iris edge."""
    # three rings over the iris (the last is its edge), the rest evenly to the back pole
    lat = np.concatenate([IRIS_ANGLE * np.array([1 / 3, 2 / 3, 1.0]),
                          np.linspace(IRIS_ANGLE, np.pi, EYE_LAT - 1)[1:-1]])
    lon = 2 * np.pi * np.arange(EYE_LON) / EYE_LON
    sl, cl = np.sin(lat)[:, None], np.cos(lat)[:, None]
    ring = np.stack([sl * np.cos(lon)[None], sl * np.sin(lon)[None], cl * np.ones_like(lon)[None]], -1)
    pts = np.concatenate([[[0, 0, 1.0]], ring.reshape(-1, 3), [[0, 0, -1.0]]], 0)
    return center + EYE_RADIUS * pts


def _contour(L: np.ndarray, idx: tuple[int, ...]) -> np.ndarray:
    return L[list(idx)]


def build_standin() -> HeadModel:
    """Generate the stand-in model (deterministic; ~1-2 s)."""
    L = load_template().astype(np.float64)  # (478,3)
    face = RadialFace(L[:468])
    head, anchor = _head_grid(face, L)
    nh = len(head)
    row = np.concatenate([[-1], np.repeat(np.arange(N_ROWS), N_COLS), [N_ROWS]])
    fh = grid_faces(N_ROWS, N_COLS, 0, nh - 1)
    if signed_volume(head, fh) < 0:
        fh = fh[:, ::-1].copy()

    eye_c = {s: eye_center(L, s) for s in ("L", "R")}

    # eye openings: face vertices inside the lid contour go just inside the eyeball; all others
    # stay outside it, so the eyeball shows through the opening and is hidden elsewhere.
    opening = {}
    for side, cont in (("L", LI.EYE_L), ("R", LI.EYE_R)):
        c = eye_c[side]
        poly = _contour(L, cont)[:, :2]
        # only rows strictly between the lid rows open: the lid rows themselves are the margins
        between = (row > anchor["eye_up"]) & (row < anchor["eye_lo"])
        ins = inside_polygon(head[:, :2], poly) & (head[:, 2] > c[2]) & between
        opening[side] = ins
        off = head - c
        dist = np.linalg.norm(off, axis=1)
        dirn = off / dist[:, None]
        head[ins] = c + dirn[ins] * (EYE_RADIUS - 0.0015)
        near = ~ins & (dist < EYE_RADIUS + LID_CLEARANCE)
        head[near] = c + dirn[near] * (EYE_RADIUS + LID_CLEARANCE)
    # mouth: the pocket rows between the lips go straight back, deepest in the middle and
    # fading out at the corners, so opening the jaw reveals a cavity instead of a membrane
    corner_x = abs(L[LI.MOUTH_CORNER_L, 0])
    pocket = (row > anchor["lip_up"]) & (row < anchor["lip_lo"]) & (head[:, 2] > 0.03)
    depth = MOUTH_DEPTH * (1 - _smoothstep(0.5 * corner_x, corner_x, np.abs(head[:, 0])))
    head[pocket, 2] -= depth[pocket]
    eyes = [_eyeball(eye_c["L"]), _eyeball(eye_c["R"])]
    pad = np.zeros(2 * len(eyes[0]), bool)
    opening = {s: np.concatenate([o, pad]) for s, o in opening.items()}
    ne = len(eyes[0])
    fe = [grid_faces(EYE_LAT, EYE_LON, 0, ne - 1, offset=nh + k * ne) for k in range(2)]
    fe = [f if signed_volume(np.concatenate([head, *eyes]), f) > 0 else f[:, ::-1].copy() for f in fe]
    v = np.concatenate([head, *eyes]).astype(np.float64)
    faces = np.concatenate([fh, *fe]).astype(np.int64)
    V = len(v)
    is_eye = np.zeros(V, bool)
    is_eye[nh:] = True
    eye_ids = {"L": np.arange(nh, nh + ne), "R": np.arange(nh + ne, nh + 2 * ne)}

    J_target = _joint_targets(L, eye_c)
    lower_lip = np.concatenate([row >= anchor["lip_up"] + 1 + LIP_ROWS // 2, np.zeros(2 * ne, bool)])
    weights = _skinning(v, nh, eye_ids, L, J_target, lower_lip)
    J_reg = _joint_regressor(v, nh, eye_ids, J_target)
    normals = vertex_normals(v, faces)
    shapedirs, shape_names = _identity_basis(v, normals, nh, eye_ids, L, weights)
    exprdirs, expr_names, landmark_dirs = _expression_basis(v, normals, nh, L, eye_c, opening, weights,
                                                            J_reg @ v)
    posedirs = _pose_correctives(v, normals, weights, J_reg @ v)

    # landmark embedding: face landmarks on the head surface (inner lower lip on the jaw's side of
    # the mouth, inner upper lip on the other), iris landmarks on the eyeballs
    fi = np.zeros(N_MEDIAPIPE, np.int64)
    bary = np.zeros((N_MEDIAPIPE, 3), np.float32)
    jaw_face = weights[fh, JAW].mean(1) > 0.5
    lower = np.array(LI.LIP_LOWER_INNER[1:-1])
    upper = np.array(LI.LIP_UPPER_INNER[1:-1])
    rest = np.setdiff1d(np.arange(468), np.concatenate([lower, upper]))
    for ids, faces_ok in ((rest, np.arange(len(fh))), (lower, np.flatnonzero(jaw_face)),
                          (upper, np.flatnonzero(~jaw_face))):
        fi[ids], bary[ids], _ = embed_points(L[ids], v, faces, faces_ok)
    for side, iris in (("L", LI.IRIS_L), ("R", LI.IRIS_R)):
        k = 0 if side == "L" else 1
        fids = len(fh) + k * len(fe[0]) + np.arange(len(fe[0]))
        # iris points sit on the eyeball surface: project them radially onto it first
        c = eye_c[side]
        pts = L[list(iris)]
        pts = c + (pts - c) / np.linalg.norm(pts - c, axis=1, keepdims=True) * EYE_RADIUS
        a, b, _ = embed_points(pts, v, faces, fids)
        fi[list(iris)], bary[list(iris)] = a, b

    return HeadModel(
        name="standin", v_template=_stored(v), faces=faces,
        shapedirs=_stored(shapedirs), exprdirs=_stored(exprdirs),
        posedirs=_stored(posedirs), J_regressor=_stored(J_reg),
        weights=_stored(weights), parents=np.array(PARENTS, np.int64),
        expr_names=expr_names, shape_names=shape_names,
        landmarks=LandmarkEmbedding(fi, bary, np.ones(N_MEDIAPIPE, bool)),
        landmark_exprdirs={k: _stored(d) for k, d in landmark_dirs.items()})


def _stored(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 with magnitudes below 1e-12 (metres or weights) set to 0.

    Such values are cancellations whose rounding, and so the file's bytes, changed with the BLAS
    thread count (down to float32 denormals); zero keeps the generated model the same everywhere."""
    return np.where(np.abs(x) < 1e-12, 0.0, x).astype(np.float32)


# ------------------------------------------------------------------------------------------ rigging
def _joint_targets(L: np.ndarray, eye_c: dict[str, np.ndarray]) -> np.ndarray:
    """Rest joint positions (5,3): root at mid neck, neck at the skull base, jaw at the hinges."""
    J = np.zeros((N_JOINTS, 3))
    J[GLOBAL] = (0.0, -0.070, -0.020)
    J[NECK] = (0.0, -0.012, -0.018)
    J[JAW] = (0.0, -0.008, 0.012)
    J[EYE_L], J[EYE_R] = eye_c["L"], eye_c["R"]
    return J


def _lip_line_y(L: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Height of the parting line between the lips at x (midway between inner lip contours)."""
    up, lo = L[list(LI.LIP_UPPER_INNER)], L[list(LI.LIP_LOWER_INNER)]
    ou, ol = np.argsort(up[:, 0]), np.argsort(lo[:, 0])
    return 0.5 * (np.interp(x, up[ou, 0], up[ou, 1]) + np.interp(x, lo[ol, 0], lo[ol, 1]))


def _jaw_weight(v: np.ndarray, L: np.ndarray, J: np.ndarray, lower_lip: np.ndarray) -> np.ndarray:
    """Jaw influence: exactly the lower lip's rows inside the mouth (so the lips part cleanly),
    a soft band along a line from the mouth corners back to below the hinge elsewhere."""
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    corner_x = abs(L[LI.MOUTH_CORNER_L, 0])
    lip_y = _lip_line_y(L, x)
    front = _smoothstep(0.015, 0.06, z)  # 1 at the face, 0 near the ears
    line_y = front * lip_y + (1 - front) * (J[JAW, 1] - 0.02)
    soft = 1 - _smoothstep(-0.010, 0.010, y - line_y)
    in_mouth = (1 - _smoothstep(corner_x - 0.004, corner_x + 0.006, np.abs(x))) * (z > 0.05)
    below = in_mouth * lower_lip + (1 - in_mouth) * soft
    # under the chin the jaw hands over to the neck
    not_neck = _smoothstep(-0.02, 0.015, z) * _smoothstep(-0.125, -0.09, y)
    return below * not_neck


def _skinning(v: np.ndarray, nh: int, eye_ids, L: np.ndarray, J: np.ndarray,
              lower_lip: np.ndarray) -> np.ndarray:
    W = np.zeros((len(v), N_JOINTS))
    h = v[:nh]
    w_global = 1 - _smoothstep(-0.15, -0.07, h[:, 1])
    w_jaw = _jaw_weight(h, L, J, lower_lip[:nh]) * (1 - w_global)
    W[:nh, GLOBAL] = w_global
    W[:nh, JAW] = w_jaw
    W[:nh, NECK] = 1 - w_global - w_jaw
    W[eye_ids["L"], EYE_L] = 1.0
    W[eye_ids["R"], EYE_R] = 1.0
    return W


def _joint_regressor(v: np.ndarray, nh: int, eye_ids, J: np.ndarray) -> np.ndarray:
    """(5,V): each joint a minimum-norm vertex combination (summing to 1) that hits its target."""
    R = np.zeros((N_JOINTS, len(v)))
    h = v[:nh]
    for j in (GLOBAL, NECK, JAW):
        # support: the 24 head vertices nearest the joint's horizontal ring, both sides
        d = np.abs(h[:, 1] - J[j, 1]) + 0.3 * np.abs(h[:, 2] - J[j, 2])
        idx = np.argsort(d, kind="stable")[:24]
        A = np.concatenate([h[idx].T, np.ones((1, len(idx)))])  # (4,k)
        b = np.concatenate([J[j], [1.0]])
        R[j, idx] = np.linalg.lstsq(A, b, rcond=None)[0]
    for j, side in ((EYE_L, "L"), (EYE_R, "R")):
        R[j, eye_ids[side]] = 1.0 / len(eye_ids[side])  # sphere vertex mean = centre
    return R


# ------------------------------------------------------------------------------------------- bases
def _identity_basis(v, n, nh, eye_ids, L, W):
    """(V,3,S) identity basis, metres per unit (about one standard deviation of adult heads)."""
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    head = np.zeros(len(v), bool)
    head[:nh] = True
    face = _smoothstep(0.02, 0.06, z) * _smoothstep(-0.1, -0.07, y) * (1 - _smoothstep(0.06, 0.09, y))
    eyes = ~head
    comps: list[tuple[str, np.ndarray]] = []

    def add(name, d):
        comps.append((name, d))

    d = np.zeros_like(v); d[:, 0] = 0.005 * x / 0.075 * (1 - 0.7 * face); add("head_width", d)
    d = np.zeros_like(v); d[:, 1] = 0.006 * np.clip((y - 0.03) / 0.11, 0, 1); add("head_height", d)
    d = np.zeros_like(v); d[:, 2] = -0.006 * np.clip(-(z + 0.0) / 0.11, 0, 1); add("head_depth", d)
    # smooth masks (not the jaw's skinning weight, whose lip seam is sharp): lower face, above
    # the neck, in front of the ears
    lower_face = ((1 - _smoothstep(-0.065, -0.005, y)) * _smoothstep(-0.125, -0.09, y)
                  * _smoothstep(-0.03, 0.02, z) * head)
    jaw = lower_face * _smoothstep(0.01, 0.05, np.abs(x))
    d = np.zeros_like(v); d[:, 0] = 0.0035 * np.sign(x) * jaw; add("jaw_width", d)
    d = np.zeros_like(v); d[:, 1] = -0.005 * lower_face * _smoothstep(0.0, 0.05, z)
    add("face_length", d)
    tip = L[LI.NOSE_TIP]
    g = _gauss(v, tip, (0.012, 0.018, 0.02)) * head
    d = np.zeros_like(v); d[:, 2] = 0.004 * g; d[:, 1] = -0.0015 * g; add("nose_length", d)
    g = _gauss(v, L[LI.NOSE_BOTTOM], (0.012, 0.01, 0.012)) * head
    d = np.zeros_like(v); d[:, 0] = 0.003 * np.clip(x / 0.015, -1, 1) * g; add("nose_width", d)
    g = _gauss(v, L[LI.NOSE_BRIDGE], (0.008, 0.014, 0.01)) * head
    d = np.zeros_like(v); d[:, 2] = 0.003 * g; add("nose_bridge", d)
    chin = L[LI.CHIN]
    g = _gauss(v, chin, (0.02, 0.015, 0.02)) * head
    d = np.zeros_like(v); d[:, 2] = 0.004 * g; add("chin_forward", d)
    g = sum(_gauss(v, L[i] + np.array([0, -0.008, 0]), (0.02, 0.016, 0.025)) for i in LI.CHEEKBONES) * head
    d = 0.004 * g[:, None] * n; add("cheek_fullness", d)
    g = sum(_gauss(v, L[i], (0.02, 0.01, 0.02)) for i in LI.BROW_CENTERS) * head
    d = np.zeros_like(v); d[:, 2] = 0.003 * g; add("brow_ridge", d)
    g = _gauss(v, 0.5 * (L[LI.LIP_TOP] + L[LI.LIP_BOTTOM]), (0.025, 0.012, 0.02)) * head
    d = 0.002 * g[:, None] * n; add("lip_fullness", d)
    # eye spacing moves the eyeballs and the sockets together
    sgn = np.sign(x)
    g = np.maximum(_gauss(v, eye_center(L, "L"), 0.014), _gauss(v, eye_center(L, "R"), 0.014)) * head
    g = np.where(eyes, 1.0, g)
    d = np.zeros_like(v); d[:, 0] = 0.002 * sgn * g; add("eye_spacing", d)
    ear = _smoothstep(0.06, 0.075, np.abs(x)) * _gauss(v * [0, 1, 1], np.array([0, 0.012, -0.012]),
                                                       (1, 0.03, 0.025)) * head
    d = np.zeros_like(v); d[:, 0] = 0.003 * sgn * ear; d[:, 1] = 0.002 * ear; add("ear_size", d)
    neck = _smoothstep(-0.07, -0.12, y) * head
    d = np.zeros_like(v); d[:, 0] = 0.005 * x / 0.056 * neck; d[:, 2] = 0.005 * (z + 0.022) / 0.056 * neck
    add("neck_width", d)
    g = _gauss(v, np.array([0, 0.085, 0.08]), (0.05, 0.03, 0.04)) * head
    d = np.zeros_like(v); d[:, 2] = -0.004 * g; add("forehead_slope", d)
    names = [c[0] for c in comps]
    return np.stack([c[1] for c in comps], -1), names


def eye_center(L: np.ndarray, side: str) -> np.ndarray:
    """Eyeball centre (3,): behind the iris centre, at the depth where the middle of both lid
    margins rests on the eyeball (mediapipe's iris depth is unreliable; lid depth is not)."""
    c = L[(LI.IRIS_L if side == "L" else LI.IRIS_R)[0]].astype(np.float64)
    lids = L[list(LI.EYE_MID_LIDS[side])]
    dxy2 = ((lids[:, :2] - c[:2]) ** 2).sum(1)
    rest = EYE_RADIUS + LID_CLEARANCE
    z = np.mean(lids[:, 2] - np.sqrt(np.maximum(rest**2 - dxy2, 0.0)))
    return np.array([c[0], c[1], z])


def _rot_delta(v: np.ndarray, pivot: np.ndarray, axis: int, angle: float) -> np.ndarray:
    """(V, 3) linearised rotation (R - I)(v - pivot) about the x or y axis through ``pivot``:
    exact at weight 1, a straight-line blend in between (as every shape key is)."""
    c, s = np.cos(angle), np.sin(angle)
    if axis == 0:
        R = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    else:
        R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return (v - pivot) @ (R - np.eye(3)).T


def _jaw_undo(v: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    """(V, 3) the offset per unit of jawOpen that the jaw's rotation carries back to rest: skinning
    rotates a shape key's offset with the jaw, so (at weight w) R(w t)(r + w D) = r wants
    D = -t A r - (w / 2) t^2 r_perp to second order in the angle t (A: the rotation's generator,
    r_perp: r in its plane), taken at w = MOUTH_SEALED_AT. The linearised rotation (R(t) - I) r, the
    jawOpen key, left the lower lip 3.7 mm short of the upper at jawOpen = mouthClose = 0.7."""
    (angle,) = [a for name, _, _, a in JOINT_CHANNELS if name == "jawOpen"]
    r = v - pivot
    tangent = np.stack([np.zeros(len(v)), -r[:, 2], r[:, 1]], 1)   # d/dt of the rotation about +X
    r_perp = np.stack([np.zeros(len(v)), r[:, 1], r[:, 2]], 1)
    return -(angle * tangent + 0.5 * MOUTH_SEALED_AT * angle**2 * r_perp)


def _expression_basis(v, n, nh, L, eye_c, opening, W, J):
    """(V,3,52) expression basis under ARKit's names and order (ARKIT_NAMES); weight 1 = the
    shape's full strength, as an ARKit blendshape (an extreme expression: a smile lifts the mouth
    corner 10 mm, a brow raise 9 mm). Lids, lips and cheeks move the head mesh;
    jawOpen/jawLeft/jawRight and eyeLook* are linearised rotations about the jaw / eye joints
    (JOINT_CHANNELS gives the same rotations that imports and the tracker put on the joints).
    Also returns {name: (V, 3)}: the directions uncalibrated landmark fits use instead
    (HeadModel.landmark_exprdirs)."""
    head = np.zeros(len(v), bool)
    head[:nh] = True
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    front = _smoothstep(0.03, 0.07, z) * head
    lip_y = _lip_line_y(L, x)
    upper = (y > lip_y).astype(float)
    comps: dict[str, np.ndarray] = {}

    def add(name, d):
        comps[name] = d * head[:, None]

    sides = (("Left", "L", 1.0), ("Right", "R", -1.0))   # sx: +X is the subject's left
    corner = {"L": L[LI.MOUTH_CORNER_L], "R": L[LI.MOUTH_CORNER_R]}
    mc = 0.5 * (L[LI.LIP_TOP] + L[LI.LIP_BOTTOM])
    corner_half_w = abs(L[LI.MOUTH_CORNER_L, 0] - mc[0])
    # one side of the mouth: 1 at that corner, 0.5 at the middle, 0 at the other corner
    half = {s: _smoothstep(-0.02, 0.02, sx * (x - mc[0])) for _, s, sx in sides}
    jaw_w = W[:, JAW:JAW + 1]
    for arkit, joint, axis, angle in JOINT_CHANNELS:
        j = {"jaw": JAW, "eye_L": EYE_L, "eye_R": EYE_R}[joint]
        d = W[:, j:j + 1] * _rot_delta(v, J[j], axis, angle)
        comps[arkit] = d   # eyeballs included: the eye rows of W select them
    for S, s, sx in sides:
        c = eye_c[s]
        comps[f"eyeBlink{S}"] = _blink(v, L, c, opening[s], s) * head[:, None]
        g = _gauss(v, c + np.array([0, -0.008, 0.01]), (0.012, 0.005, 0.01)) * front
        add(f"eyeSquint{S}", g[:, None] * np.array([0, 0.0035, 0.0007]))
        g = _gauss(v, c + np.array([0, 0.008, 0.01]), (0.012, 0.005, 0.01)) * front
        add(f"eyeWide{S}", g[:, None] * np.array([0, 0.0035, 0.0]))
        g = _gauss(v, corner[s], (0.014, 0.012, 0.02)) * front
        add(f"mouthSmile{S}", g[:, None] * np.array([sx * 0.006, 0.010, -0.003]))
        g = _gauss(v, corner[s], (0.012, 0.012, 0.02)) * front
        add(f"mouthFrown{S}", g[:, None] * np.array([sx * 0.0015, -0.009, -0.0015]))
        g = _gauss(v, corner[s], (0.008, 0.008, 0.02)) * front
        add(f"mouthDimple{S}", g[:, None] * np.array([sx * 0.002, 0.0, -0.003]))
        g = _gauss(v, corner[s], (0.016, 0.014, 0.02)) * front
        add(f"mouthStretch{S}", g[:, None] * np.array([sx * 0.008, -0.004, -0.002]))
        # press: that side's lips thin towards the parting line (30 %) and roll back 2 mm
        g = _gauss(v, mc, (0.022, 0.012, 0.02)) * front * half[s]
        d = np.zeros_like(v); d[:, 1] = -0.3 * (y - lip_y) * g; d[:, 2] = -0.002 * g
        add(f"mouthPress{S}", d)
        g = _gauss(v, L[LI.LIP_BOTTOM], (0.02, 0.008, 0.02)) * front * (1 - upper) * half[s]
        add(f"mouthLowerDown{S}", g[:, None] * np.array([0, -0.007, 0.0015]))
        g = _gauss(v, L[LI.LIP_TOP], (0.02, 0.006, 0.02)) * front * upper * half[s]
        add(f"mouthUpperUp{S}", g[:, None] * np.array([0, 0.006, 0.0015]))
        g = np.clip(sum(_gauss(v, L[i], (0.01, 0.01, 0.015)) for i in LI.BROW[s][2:]), 0, 1) * front
        add(f"browDown{S}", g[:, None] * np.array([-sx * 0.003, -0.007, 0.0015]))
        g = np.clip(sum(_gauss(v, L[i], (0.01, 0.01, 0.015)) for i in LI.BROW[s][:2]), 0, 1) * front
        add(f"browOuterUp{S}", g[:, None] * np.array([0, 0.009, 0.0008]))
        cb = L[LI.CHEEKBONES[0 if s == "R" else 1]]
        g = _gauss(v, cb + np.array([0, -0.004, 0]), (0.016, 0.012, 0.02)) * front
        add(f"cheekSquint{S}", g[:, None] * np.array([0, 0.004, 0.0015]))
        wing = L[LI.NOSE_BOTTOM] + np.array([sx * 0.012, 0.006, -0.006])
        g = _gauss(v, wing, (0.008, 0.01, 0.012)) * front
        add(f"noseSneer{S}", g[:, None] * np.array([0, 0.004, 0.0015]))
    g = np.clip(sum(_gauss(v, L[i], (0.01, 0.01, 0.015)) for i in (*LI.BROW["L"][3:], *LI.BROW["R"][3:])),
                0, 1) * front
    add("browInnerUp", g[:, None] * np.array([0, 0.009, 0.0008]))
    # the jaw juts forward: the jaw's skin slides 4 mm along +Z
    comps["jawForward"] = jaw_w * np.array([0, 0, 0.004]) * head[:, None]
    # mouthClose: the lips meet while the jaw is open (the lower lip undoes jawOpen's opening)
    # the whole lower lip to its corners comes back, fading beyond them over the cheek and below
    # the lip (a Gaussian round the mouth's middle in x and depth left the corners, 2-3 cm behind
    # it, less than half closed)
    past_corner = np.maximum(np.abs(x - mc[0]) - corner_half_w, 0.0)
    g = np.exp(-0.5 * (past_corner / 0.012) ** 2 - 0.5 * ((y - mc[1]) / 0.014) ** 2) * front * (1 - upper)
    comps["mouthClose"] = g[:, None] * jaw_w * _jaw_undo(v, J[JAW]) * head[:, None]
    g = _gauss(v, mc, (0.028, 0.014, 0.02)) * front
    d = np.zeros_like(v); d[:, 0] = -0.7 * (x - mc[0]) * g; d[:, 2] = 0.010 * g
    add("mouthPucker", d)
    # funnel: the lips flare forward and open into a ring (corners in, lips away from the parting):
    # the inner lips part by FUNNEL_OPEN at the middle (the thicker lower lip down; the upper lip
    # only flares), tapering to closed corners, so an "O" opens the mouth without the rigid jaw
    g = _gauss(v, mc, (0.026, 0.014, 0.02)) * front
    d = np.zeros_like(v); d[:, 0] = -0.35 * (x - mc[0]) * g; d[:, 1] = 0.4 * (y - lip_y) * g
    d[:, 2] = 0.006 * g
    ring = np.clip(1.0 - ((x - mc[0]) / corner_half_w) ** 2, 0.0, 1.0) * front
    up_band = np.exp(-0.5 * ((y - lip_y) / 0.008) ** 2) * upper
    lo_band = np.exp(-0.5 * ((y - lip_y) / 0.014) ** 2) * (1 - upper)
    d[:, 1] += ring * (FUNNEL_OPEN[0] * up_band - FUNNEL_OPEN[1] * lo_band)
    add("mouthFunnel", d)
    for S, sign in (("Left", 1.0), ("Right", -1.0)):
        g = _gauss(v, mc, (0.025, 0.015, 0.02)) * front
        add(f"mouth{S}", g[:, None] * np.array([sign * 0.007, 0, 0]))
    g = _gauss(v, L[LI.LIP_BOTTOM], (0.02, 0.007, 0.02)) * front * (1 - upper)
    add("mouthRollLower", g[:, None] * np.array([0, 0.0015, -0.003]))
    g = _gauss(v, L[LI.LIP_TOP], (0.02, 0.006, 0.02)) * front * upper
    add("mouthRollUpper", g[:, None] * np.array([0, -0.0015, -0.003]))
    g = _gauss(v, 0.5 * (L[LI.LIP_BOTTOM] + L[LI.CHIN]), (0.022, 0.016, 0.02)) * front * (1 - upper)
    add("mouthShrugLower", g[:, None] * np.array([0, 0.003, 0.0015]))
    g = _gauss(v, L[LI.LIP_TOP], (0.022, 0.008, 0.02)) * front * upper
    add("mouthShrugUpper", g[:, None] * np.array([0, 0.002, 0.0015]))
    # cheekPuff: the cheeks inflate between the mouth corners and the jaw's outline, most at the
    # side of the face below the cheekbone, so the outline bulges out (what a camera in front sees
    # of a puff: the face widens at the lower cheeks), and a little at the front cheek. Uncalibrated
    # landmark fits (the photo fit, tracking real clips) solve it with the front cheek's part only
    # (HeadModel.landmark_exprdirs): with the side part they explained a real face's outline (head
    # shape, pose, mediapipe's jitter) as a puff (the eighth session's wider puff: clip d3's
    # self-reenactment AKD 2.66 -> 3.62 px, docs/figures/arkit.md). A tracker calibrated to the
    # avatar reads the whole rendered puff (the ARKit round trip).
    g = np.clip(sum(_gauss(v, L[i], (0.018, 0.016, 0.03)) for i in LI.CHEEKS), 0, 1) * head
    landmark_dirs = {"cheekPuff": (0.010 * g[:, None] * n) * head[:, None]}
    g = np.clip(sum(_gauss(v, L[i], (0.018, 0.016, 0.03)) for i in LI.CHEEKS)
                + sum(_gauss(v, np.array([sx * PUFF_SIDE[0], PUFF_SIDE[1], PUFF_SIDE[2]]), (0.014, 0.018, 0.024))
                      for sx in (1.0, -1.0)), 0, 1) * head
    add("cheekPuff", 0.010 * g[:, None] * n)
    # tongueOut: the lower lip is pushed down and forward in the middle (the tongue part has its
    # own tongueOut key, avatar/mouth._tongue_out, that slides it out over this lip)
    g = _gauss(v, L[LI.LIP_INNER_BOTTOM], (0.012, 0.006, 0.02)) * front * (1 - upper)
    add("tongueOut", g[:, None] * np.array([0, -0.003, 0.003]))
    missing = set(ARKIT_NAMES) - set(comps)
    assert not missing, f"stand-in basis lacks {sorted(missing)}"
    return np.stack([comps[k] for k in ARKIT_NAMES], -1), list(ARKIT_NAMES), landmark_dirs


def _blink(v, L, c, opening, s):
    """Closed-lid displacement: the opening and the upper lid slide onto a sphere over the eyeball."""
    lid_r = EYE_RADIUS + 0.0015
    d = np.zeros_like(v)
    # upper lid band: vertices above the opening, near the eye, move down toward the closure line
    up = LI.EYE_UPPER[s]
    ux = L[list(up), 0]
    uy = L[list(up), 1]
    o = np.argsort(ux)
    y_up = np.interp(v[:, 0], ux[o], uy[o])
    lo = LI.EYE_LOWER[s]
    lx, ly = L[list(lo), 0], L[list(lo), 1]
    o2 = np.argsort(lx)
    y_lo = np.interp(v[:, 0], lx[o2], ly[o2])
    in_x = (v[:, 0] > min(ux.min(), lx.min())) & (v[:, 0] < max(ux.max(), lx.max()))
    gap = np.maximum(y_up - y_lo, 1e-6)
    y_close = y_lo + BLINK_CLOSURE * gap  # the upper lid comes down to just above the lower one
    above = v[:, 1] - y_up
    region = in_x & (v[:, 2] > c[2]) & (v[:, 1] > y_lo + 1e-5) & (above < 0.010)
    # inside the opening: squash [y_lo, y_up] onto [y_lo, y_close]; above it: the same drop as
    # the lid margin up to 3 mm above it, fading out by 10 mm
    inside_drop = (v[:, 1] - y_lo) * (1 - BLINK_CLOSURE)
    above_drop = (y_up - y_close) * (1 - _smoothstep(0.003, 0.010, above))
    drop = np.where(above <= 0, inside_drop, above_drop)
    band = region
    d[:, 1] -= np.where(region, drop, 0.0)
    # everything in the opening or moved lid must end up on the lid sphere, in front of the eye
    moved = band | opening
    target = v + d
    toff = target - c
    tdist = np.linalg.norm(toff, axis=1)
    push = moved & (tdist < lid_r)
    target[push] = c + toff[push] / tdist[push, None] * lid_r
    return target - v


def _pose_correctives(v, n, W, J):
    """(V,3,36): one corrective so far: jaw opening pulls the under-chin skin forward a little."""
    P = np.zeros((len(v), 3, 36))
    # feature index: joint jaw (2) -> block 1; (R - I)[2, 1] = sin(theta) for a rotation about +X
    k = 9 * (JAW - 1) + 3 * 2 + 1
    under = W[:, JAW] * _smoothstep(-0.05, -0.09, v[:, 1])
    P[:, 2, k] = 0.01 * under
    return P
