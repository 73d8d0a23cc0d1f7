"""The bundled stand-in: deterministic, closed, rigged, named expressions, accurate landmarks,
and it looks enough like a human head that mediapipe finds a face in a plain render of it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.head import HeadModelTensors, build_lods, lbs
from backend.head.standin import build_standin, generator_key, standin_path
from backend.head.standin import landmarks_idx as LI
from backend.head.standin.mp_template import load_template

from backend.head.arkit_names import ARKIT_NAMES


def render_gray(v: np.ndarray, f: np.ndarray, size: int = 256, fov_m: float = 0.26,
                center=(0.0, 0.0)) -> np.ndarray:
    """Orthographic front view, z-buffered, Lambert-shaded grey (size, size, 3) uint8.
    Plain per-triangle loop: a test utility, not a hot path."""
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, f[:, k], n)
    vn /= np.linalg.norm(vn, axis=1, keepdims=True) + 1e-12
    light = np.array([0.25, 0.35, 0.9]) / np.linalg.norm([0.25, 0.35, 0.9])
    shade = np.clip(vn @ light, 0, 1) * 0.75 + 0.2
    px = (v[:, 0] - center[0]) / fov_m * size + size / 2
    py = size / 2 - (v[:, 1] - center[1]) / fov_m * size
    zbuf = np.full((size, size), -np.inf)
    img = np.zeros((size, size))
    for tri in f:
        xs, ys = px[tri], py[tri]
        x0, x1 = max(int(np.floor(xs.min())), 0), min(int(np.ceil(xs.max())), size - 1)
        y0, y1 = max(int(np.floor(ys.min())), 0), min(int(np.ceil(ys.max())), size - 1)
        if x1 < x0 or y1 < y0:
            continue
        gx, gy = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
        d = (ys[1] - ys[2]) * (xs[0] - xs[2]) + (xs[2] - xs[1]) * (ys[0] - ys[2])
        if abs(d) < 1e-12:
            continue
        a = ((ys[1] - ys[2]) * (gx - xs[2]) + (xs[2] - xs[1]) * (gy - ys[2])) / d
        b = ((ys[2] - ys[0]) * (gx - xs[2]) + (xs[0] - xs[2]) * (gy - ys[2])) / d
        c = 1 - a - b
        ins = (a >= 0) & (b >= 0) & (c >= 0)
        z = a * v[tri[0], 2] + b * v[tri[1], 2] + c * v[tri[2], 2]
        s = a * shade[tri[0]] + b * shade[tri[1]] + c * shade[tri[2]]
        sub_z = zbuf[y0:y1 + 1, x0:x1 + 1]
        upd = ins & (z > sub_z)
        sub_z[upd] = z[upd]
        img[y0:y1 + 1, x0:x1 + 1][upd] = s[upd]
    rgb = np.stack([img * 0.95, img * 0.8, img * 0.7], -1)
    rgb[~np.isfinite(zbuf)] = 0.15
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def test_deterministic_and_cached(standin_cache, standin):
    a = build_standin()
    for k in ("v_template", "faces", "shapedirs", "exprdirs", "posedirs", "J_regressor", "weights"):
        np.testing.assert_array_equal(getattr(a, k), getattr(standin, k), err_msg=k)
    np.testing.assert_array_equal(a.landmarks.face_idx, standin.landmarks.face_idx)
    assert a.expr_names == standin.expr_names and a.shape_names == standin.shape_names
    p = standin_path()
    assert p.parent.parent == standin_cache and p.name == f"standin_{generator_key()}.npz"


def test_generation_does_not_depend_on_the_blas_thread_count(tmp_path):
    """The cache file generated with one BLAS/OpenMP thread and with two holds the same bytes.

    Before, cancellations came out as different float32 denormals and one landmark on an edge
    shared by two faces was stored on either face, depending on the summation order."""
    import subprocess
    import sys

    files = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMG_AVATAR_CACHE=str(tmp_path / threads), OMP_NUM_THREADS=threads,
                   OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", "from backend.head.standin import standin_path; "
                              "print(standin_path())"], env=env, capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[2])
        files.append(Path(out.stdout.strip().splitlines()[-1]))
    assert files[0].parent != files[1].parent and files[0].name == files[1].name
    assert files[0].read_bytes() == files[1].read_bytes()
    m = np.load(files[0])
    for key in ("shapedirs", "exprdirs", "posedirs"):
        tiny = np.abs(m[key])
        assert not ((tiny > 0) & (tiny < 1e-12)).any(), key  # no denormal-scale leftovers


def test_layout_rig_and_names(standin):
    m = standin
    assert 4000 <= m.n_verts <= 6000 and m.name == "standin"
    assert 10 <= m.n_shape <= 20 and tuple(m.expr_names) == ARKIT_NAMES and m.expr_bounds == (0.0, 1.0)
    assert len(set(m.expr_names)) == m.n_expr
    assert m.weights.min() >= 0 and np.allclose(m.weights.sum(1), 1, atol=1e-5)
    J = m.rest_joints()
    # FLAME-like placement: neck near the origin, jaw hinge in front of it, eyes ~63 mm apart
    assert np.linalg.norm(J[1]) < 0.03 and J[0, 1] < J[1, 1] and J[2, 2] > J[1, 2]
    np.testing.assert_allclose(J[3] - J[4], [0.063, 0, 0], atol=1e-4)
    assert np.abs(J[:, 0][:3]).max() < 1e-6  # midline joints on the symmetry plane
    # every identity / expression component does something, in millimetres
    assert (np.abs(m.shapedirs).max(axis=(0, 1)) > 1e-3).all()
    assert (np.abs(m.exprdirs).max(axis=(0, 1)) > 1e-3).all()


def test_closed_surfaces_and_separate_eyeballs(standin):
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    f = standin.faces
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    assert (counts == 2).all()
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(standin.n_verts,) * 2)
    n, labels = connected_components(adj, directed=False)
    assert n == 3  # head, two eyeballs
    eye_verts = standin.weights[:, 3:].sum(1) > 0.999
    assert len(np.unique(labels[eye_verts])) == 2 and not np.isin(labels[~eye_verts],
                                                                 np.unique(labels[eye_verts])).any()
    # outward orientation: positive enclosed volume, about a head's (3-6 litres incl. neck)
    v = standin.v_template.astype(np.float64)
    vol = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6
    assert 0.003 < vol < 0.007


def test_symmetric_head(standin):
    from scipy.spatial import cKDTree

    v = standin.v_template
    d, _ = cKDTree(v).query(v * np.array([-1, 1, 1]))
    assert np.percentile(d, 99) < 1.5e-3  # mirrored mesh lands on itself (grid is symmetric in x)


def test_landmark_embedding_matches_template(standin):
    pts = standin.landmarks.points(standin.v_template, standin.faces)
    tmpl = load_template()
    err = np.linalg.norm(pts - tmpl, axis=1)
    assert standin.landmarks.valid.all()
    face = np.setdiff1d(np.arange(468), np.array(LI.EYE_L + LI.EYE_R))
    # the surface is bent through every landmark; the grid's facets and the eye openings
    # (lid margins moved onto the eyeball) leave small residuals
    assert np.median(err[face]) < 0.5e-3 and err[face].max() < 2.5e-3, err[face].max()
    assert err[list(LI.EYE_L + LI.EYE_R)].max() < 4e-3
    # iris landmarks lie on the eyeballs, centres ~63 mm apart
    iris = pts[[LI.IRIS_L[0], LI.IRIS_R[0]]]
    assert abs(np.linalg.norm(iris[0] - iris[1]) - 0.063) < 1e-3
    eye_face = standin.faces[standin.landmarks.face_idx[468:]]
    assert (standin.weights[eye_face.ravel(), 3:].sum(1) > 0.999).all()


def _lm(m, expr=None, pose=None):
    T = HeadModelTensors.from_model(m)
    e = torch.zeros(1, m.n_expr)
    if expr:
        for k, val in expr.items():
            e[0, m.expr_names.index(k)] = val
    p = torch.zeros(1, 5, 3) if pose is None else pose
    v = lbs(T, torch.zeros(1, m.n_shape), e, p).vertices[0].numpy()
    return m.landmarks.points(v, m.faces)


def test_expressions_do_what_their_names_say(standin):
    m = standin
    rest = _lm(m)
    cl, cr = LI.MOUTH_CORNER_L, LI.MOUTH_CORNER_R
    d = _lm(m, {"mouthSmileLeft": 1}) - rest
    assert d[cl, 1] > 3e-3 and abs(d[cr, 1]) < 0.5e-3
    d = _lm(m, {"mouthFrownRight": 1}) - rest
    assert d[cr, 1] < -3e-3 and abs(d[cl, 1]) < 0.5e-3
    # blink closes the lids: the vertical lid opening drops from ~10 mm to under 1.5 mm
    for side, (up, lo) in (("Left", (386, 374)), ("Right", (159, 145))):
        closed = _lm(m, {f"eyeBlink{side}": 1})
        assert rest[up, 1] - rest[lo, 1] > 6e-3 and abs(closed[up, 1] - closed[lo, 1]) < 1.5e-3
    d = _lm(m, {"browOuterUpLeft": 1}) - rest
    assert d[list(LI.BROW["L"][:2]), 1].mean() > 3e-3 and abs(d[list(LI.BROW["R"]), 1]).max() < 1e-3
    d = _lm(m, {"browInnerUp": 1}) - rest
    inner = [*LI.BROW["L"][3:], *LI.BROW["R"][3:]]
    assert d[inner, 1].mean() > 3e-3 and d[inner, 1].mean() > 2 * d[[LI.BROW["L"][0], LI.BROW["R"][0]], 1].mean()
    d = _lm(m, {"browDownRight": 1}) - rest
    assert d[list(LI.BROW["R"]), 1].mean() < -2e-3
    # pucker narrows the mouth and pushes the lips forward
    pk = _lm(m, {"mouthPucker": 1})
    assert np.linalg.norm(pk[cl] - pk[cr]) < np.linalg.norm(rest[cl] - rest[cr]) - 6e-3
    assert pk[LI.LIP_TOP, 2] - rest[LI.LIP_TOP, 2] > 3e-3
    pr = _lm(m, {"mouthPressLeft": 1, "mouthPressRight": 1})
    lip_h = lambda p: p[LI.LIP_TOP, 1] - p[LI.LIP_BOTTOM, 1]  # noqa: E731
    assert lip_h(pr) < lip_h(rest) - 2e-3  # lips thinned
    assert pr[LI.LIP_TOP, 2] < rest[LI.LIP_TOP, 2] - 1e-3  # and pressed back
    pf = _lm(m, {"cheekPuff": 1})
    assert np.linalg.norm(pf[205] - pf[425]) > np.linalg.norm(rest[205] - rest[425]) + 5e-3
    jo = _lm(m, {"jawOpen": 1}) - rest
    assert jo[LI.LIP_BOTTOM, 1] < -4e-3 and abs(jo[LI.LIP_TOP, 1]) < 0.5e-3


def test_jaw_joint_opens_the_mouth(standin):
    pose = torch.zeros(1, 5, 3)
    pose[0, 2, 0] = 0.25  # jaw about +X opens it (FLAME convention)
    lm = _lm(standin, pose=pose)
    rest = _lm(standin)
    assert lm[14, 1] - rest[14, 1] < -6e-3 and abs(lm[13, 1] - rest[13, 1]) < 0.3e-3
    assert lm[13, 1] - lm[14, 1] > 6e-3  # inner lips apart


def test_lods_of_the_standin(standin):
    lods = build_lods(standin.faces, standin.n_verts)
    assert lods[1].n_verts == standin.n_verts + 3 * standin.n_faces // 2


def test_mediapipe_finds_the_face_in_a_render(standin):
    """End-to-end check of "looks like a human head" and of the embedding: mediapipe's face mesh
    run on a shaded render of the stand-in finds a face, and its landmarks land where the
    embedding says (median error in pixels of a 256 px wide, 0.26 m field)."""
    import mediapipe as mp
    m = standin
    size, fov, center = 256, 0.2, (0.0, 0.0)
    img = render_gray(m.v_template, m.faces, size, fov, center)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as fm:
        res = fm.process(img)
    assert res.multi_face_landmarks, "mediapipe found no face in the stand-in render"
    got = np.array([[p.x * size, p.y * size] for p in res.multi_face_landmarks[0].landmark])
    pts = m.landmarks.points(m.v_template, m.faces)
    want = np.stack([(pts[:, 0] - center[0]) / fov * size + size / 2,
                     size / 2 - (pts[:, 1] - center[1]) / fov * size], 1)
    err = np.linalg.norm(got - want, axis=1)
    # 1 px = 0.8 mm here; mediapipe on an untextured grey head is itself a few px off
    assert np.median(err) < 4.0, np.median(err)


def test_landmark_template_regenerates_from_the_photo():
    """The stored template is what mp_template's code makes from skimage's astronaut photo."""
    from backend.head.standin.mp_template import PUPIL_DISTANCE, canonicalize, detect_astronaut, mirror_pairs

    t = canonicalize(detect_astronaut())
    np.testing.assert_allclose(t, load_template(), atol=2e-4)  # 0.2 mm (mediapipe build differences)
    pair = mirror_pairs(t)
    assert (pair[pair] == np.arange(478)).all()
    np.testing.assert_allclose(t[pair] * [-1, 1, 1], t, atol=1e-6)  # exactly symmetric
    assert abs(np.linalg.norm(t[LI.IRIS_L[0]] - t[LI.IRIS_R[0]]) - PUPIL_DISTANCE) < 1e-6
    # closed mouth: the inner lip contours meet
    np.testing.assert_allclose(t[list(LI.LIP_UPPER_INNER), 1], t[list(LI.LIP_LOWER_INNER), 1], atol=1e-6)


def _mirror_landmarks(m):
    """(478,) index of each landmark's mirror image (nearest landmark to its x-flipped rest position)."""
    rest = _lm(m)
    flip = rest * [-1, 1, 1]
    return np.argmin(np.linalg.norm(rest[:, None] - flip[None], axis=2), axis=1)


def test_every_arkit_shape_moves_the_face_and_sides_mirror(standin):
    """All 52 ARKit shapes move landmarks by a visible amount (>= 1 mm somewhere; the tongue's
    shape key only moves the lower lip), and each Left shape is the mirror image of its Right."""
    m = standin
    rest = _lm(m)
    moved = {n: _lm(m, {n: 1}) - rest for n in ARKIT_NAMES}
    for n, d in moved.items():
        assert np.linalg.norm(d, axis=1).max() > 1e-3, n
    mir = _mirror_landmarks(m)
    for n in ARKIT_NAMES:
        if not n.endswith("Left"):
            continue
        dl, dr = moved[n], moved[n[:-4] + "Right"]
        if n.startswith("eyeLook"):  # a gaze turns both eyes one way: in/out mirror, not left/right
            continue
        np.testing.assert_allclose(dl[mir] * [-1, 1, 1], dr, atol=1e-3, err_msg=n)  # mesh ~symmetric
    # the joint-like keys: jawOpen drops the chin, eyeLookUp raises the iris, jawLeft turns to +X
    assert moved["jawOpen"][LI.CHIN, 1] < -8e-3 and moved["mouthClose"][LI.LIP_BOTTOM, 1] > 3e-3
    assert moved["eyeLookUpLeft"][LI.IRIS_L[0], 1] > 2e-3 and abs(moved["eyeLookUpLeft"][LI.IRIS_R[0]]).max() < 1e-6
    assert moved["jawLeft"][LI.CHIN, 0] > 3e-3 and moved["jawRight"][LI.CHIN, 0] < -3e-3
    assert moved["mouthFunnel"][LI.LIP_TOP, 2] > 2e-3 and moved["mouthRollLower"][LI.LIP_BOTTOM, 2] < -1e-3
    # an "o" without the jaw: the funnel parts the inner lips (14 down, >= 6 mm; 13, the upper inner
    # lip, stays within 0.5 mm: no other shape lowers it again in a fit), draws the corners in and
    # leaves the chin where it is
    f = moved["mouthFunnel"]
    assert f[LI.LIP_INNER_TOP, 1] - f[LI.LIP_INNER_BOTTOM, 1] > 6e-3 and abs(f[LI.LIP_INNER_TOP, 1]) < 5e-4
    assert f[LI.MOUTH_CORNER_L, 0] < -3e-3 and f[LI.MOUTH_CORNER_R, 0] > 3e-3 and abs(f[LI.CHIN]).max() < 1e-3


def test_mouth_close_seals_the_lips_over_the_open_jaw_to_the_corners(standin):
    """mouthClose means "lips together while the jaw is open": at jawOpen = mouthClose = w (the jaw
    joint turned w * 0.35 rad, as the default mapping drives it) every inner-lip pair stays within
    1.2 mm of its rest gap for w up to 0.9, while the jaw alone parts the middle by over 15 mm (20) at 0.7.
    The key used to be minus the jawOpen key: skinning turns it with the jaw, which left the middle
    3.7 mm open at 0.7 and the outer lip more (a Gaussian across the mouth)."""
    from backend.face.mediapipe_face import INNER_LIP

    m = standin
    ring = np.array(INNER_LIP)
    upper, lower = ring[1:10], ring[19:10:-1]     # the inner ring's upper and lower rows, corner to corner

    def gaps(w: float, close: float) -> np.ndarray:
        pose = torch.zeros(1, 5, 3)
        pose[0, 2, 0] = 0.35 * w
        lm = _lm(m, {"mouthClose": close}, pose)
        return lm[upper, 1] - lm[lower, 1]

    rest = gaps(0.0, 0.0)
    assert (gaps(0.7, 0.0)[3:6] - rest[3:6]).min() > 0.015
    for w in (0.3, 0.6, 0.9):
        assert np.abs(gaps(w, w) - rest).max() < 1.2e-3, (w, gaps(w, w) - rest)


def test_cheek_puff_widens_the_outline_but_landmark_fits_solve_the_front_puff(standin):
    """cheekPuff, rendered, bulges the lower cheeks' outline sideways (what a camera in front can see
    of a puff); an uncalibrated landmark fit solves it with the front cheek's inflation only
    (HeadModel.landmark_exprdirs), so a real face's outline is not explained as a puff, and the
    rendered motion is still there for a tracker calibrated to the avatar's renders."""
    from backend.face.landmark_model import LandmarkModel
    from backend.face.mediapipe_face import FACE_OVAL

    m = standin
    k = m.expr_names.index("cheekPuff")
    assert set(m.landmark_exprdirs) == {"cheekPuff"}
    full, front = m.exprdirs[:, :, k], m.landmark_exprdirs["cheekPuff"]
    # the side of the face below the cheekbone moves outwards (+x on the subject's left) only rendered
    side = (np.abs(m.v_template[:, 0] - 0.056) < 0.006) & (np.abs(m.v_template[:, 1] + 0.02) < 0.01) \
        & (np.abs(m.v_template[:, 2] - 0.062) < 0.01)
    assert side.sum() > 3
    assert full[side, 0].mean() > 3e-3 and abs(front[side, 0]).mean() < 0.5 * full[side, 0].mean()
    # ... and the front cheek inflates in both
    cheek = np.linalg.norm(m.v_template - m.v_template[np.argmax(np.linalg.norm(front, axis=1))], axis=1) < 0.004
    np.testing.assert_allclose(np.linalg.norm(full[cheek], axis=1), np.linalg.norm(front[cheek], axis=1), rtol=0.3)
    # the fit's landmark model uses the front puff, the rendered one the whole puff; the outline's
    # landmarks move sideways only in the latter
    fit, rendered = LandmarkModel.from_model(m), LandmarkModel.from_model(m, rendered=True)
    S = fit.n_shape
    oval = list(FACE_OVAL)
    widen_fit = np.abs(fit.basis[oval, 0, S + k].numpy()).max()
    widen_rendered = np.abs(rendered.basis[oval, 0, S + k].numpy()).max()
    assert widen_rendered > 2e-3 and widen_fit < 0.5 * widen_rendered
    other = [i for i in range(m.n_expr) if i != k]
    np.testing.assert_array_equal(fit.basis[:, :, S + np.array(other)].numpy(),
                                  rendered.basis[:, :, S + np.array(other)].numpy())
