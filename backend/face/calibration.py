"""Calibration of the landmark model's expression basis to what mediapipe sees.

The tracker explains mediapipe's 478 landmarks with the head model's landmark embedding. On the
stand-in's ARKit-52 basis, mediapipe reads a rendered expression differently from the embedding's
own response: it under-reads most shapes (its face mesh pulls towards its mean face) and mixes
neighbouring mouth shapes, and on the neutral face its landmarks sit a little off the embedding.
The bounded [0, 1] solve can only explain that mismatch with wrong positive weights.

A :class:`LandmarkCalibration` holds, per landmark and in the head's rest frame (metres):
``offset`` (L, 3), where mediapipe puts each landmark on the neutral face relative to the
embedding, and ``exprdirs`` (L, 3, E), the displacement mediapipe reports per unit of each
expression. :func:`fit_calibration` derives both from mediapipe's landmarks on renders of the
neutral face and of each expression alone (the renders themselves are made by
``backend.avatar.calibrate``): each landmark's observed 2D displacement is lifted to 3D through the
camera's Jacobian, the depth the camera cannot see taken from the model (a ridge towards the
model's own direction). :meth:`LandmarkCalibration.apply` returns the landmark model with those
directions and offsets, which the tracker then solves with (``track_landmarks(calibration=...)``).

A joint channel can be calibrated as an expression too (``joint_channels``: the sideways jaw,
jawLeft and jawRight): mediapipe reads the jaw turned 0.1 rad left and 0.1 rad right as two motions
that are far from opposite (cosine 0.29 between one and the other's negative on the astronaut; the
model's own are opposite), so one signed angle cannot explain both. Each side then gets its own
calibrated direction, solved as a weight in [0, 1] with that joint axis held at rest
(:func:`joint_channel_priors`), and is written back into the joint's angle after the solve
(:func:`fold_joint_channels`): the tracked parameters keep their usual meaning.

A calibration can also hold a reading floor per expression (``floor``, :func:`reading_floor`): what
the calibrated tracker reads of a shape on renders that do not show it (mediapipe's crosstalk from
the shapes that are on). :func:`apply_floor` subtracts it after the solve and rescales the rest to
[0, 1], so an absent shape reads 0 instead of a small false weight.

A calibration can carry a second one for an open jaw (``open_jaw``, from ``open_jaw_from`` of
jawOpen up): mediapipe moves the chin and lower lip sideways by about a third of the model's motion
when the jaw is open, and mixes that reading with the mouth's stretch and funnel, which one linear
direction read with the jaw shut cannot follow (docs/figures/arkit.md, thirty-seventh session). The
same directions corrected by mixtures rendered with the jaw open, and their own reading floor, are
what the tracker re-solves the frames it first read open with (face.track.track_landmarks).
Pure numpy/torch, no bpy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .landmark_model import LandmarkModel
from .solver import Layout, Projector

CALIBRATION_FORMAT = "omg-landmark-calibration"

#: the largest reading floor kept (a shape read this high where absent would lose most of its range)
FLOOR_MAX = 0.5
#: the jawOpen weight from which a frame is re-solved with a calibration's open-jaw part: on the ARKit
#: round trip's seeds 0-3, 0.2 and 0.3 (and a blend of the two fits over 0.1-0.5) read the same
#: (docs/figures/arkit.md, thirty-seventh session)
OPEN_JAW_FROM = 0.2

#: the jaw joint (backend.head.model.JOINT_NAMES) and its pose-corrective slot (joints after the root)
JAW = 2
#: the eye joints (eye_L, eye_R), which share one gaze corrective (LandmarkCalibration.eyedirs)
EYES = (3, 4)
#: per rotation axis of the jaw, the entries (p, m) of the flattened (R - I) that are +sin and -sin
#: of a rotation about that axis alone: x (opening) R[2,1] = s, R[1,2] = -s; y (sideways)
#: R[0,2] = s, R[2,0] = -s. A corrective split +D/2, -D/2 over them moves a landmark by D sin(angle)
SIN_ENTRIES: dict[int, tuple[int, int]] = {0: (7, 5), 1: (2, 6)}


@dataclass
class LandmarkCalibration:
    """offset: (L, 3) float32 rest-frame metres added to the neutral landmarks; exprdirs: (L, 3, E)
    float32 rest-frame metres per unit expression, replacing the embedding's; expr_names: the E
    expressions, in the head model's order (a calibration applies only to that basis);
    response: (E,) float32, RMS landmark motion mediapipe saw per unit of each expression over the
    embedding's own (crop pixels / crop pixels; < 1: mediapipe under-reads the shape);
    jawdirs: (L, 3, 9) float32 rest-frame metres added to the jaw's pose correctives (per entry of
    its flattened R - I): what mediapipe reads of a jaw rotation beyond the model's own landmark
    motion (see :func:`fit_jaw_correctives`); None = the model's jaw response;
    offset_only: True when ``exprdirs`` are the model's own (:func:`offset_calibration`): the
    tracker then solves the expression weights as uncalibrated (TrackOptions.projected_bounds);
    joint_channels: names of head.arkit_names.JOINT_CHANNELS whose expression column is solved with
    its calibrated direction in place of that joint axis (see the module doc; () = none);
    floor: (E,) float32 weights in [0, FLOOR_MAX], per expression column (joint channels' columns
    included), what the tracker reads of that shape where it is absent (:func:`reading_floor`),
    taken off every solved weight by :func:`apply_floor`; None = none;
    open_jaw: the calibration for frames read with the jaw open (the module doc): the same offset,
    response and joint channels, expression directions, jaw correctives and floor of its own, no
    ``open_jaw`` itself; None = one calibration for every frame; open_jaw_from: the jawOpen weight
    (the jaw's opening over its radians per unit, as first read) from which a frame is re-solved
    with ``open_jaw``; eyedirs: (L, 3, 9) float32 rest-frame metres added to each eye joint's pose
    correctives: what mediapipe reads of a gaze beyond the model's own landmark motion, on every
    landmark (its face mesh shifts the mouth and chin with the irises), per eye (a gaze turns both;
    :func:`fit_mixtures`); None = the model's eye response."""

    offset: np.ndarray
    exprdirs: np.ndarray
    expr_names: tuple[str, ...]
    response: np.ndarray
    jawdirs: np.ndarray | None = None
    offset_only: bool = False
    joint_channels: tuple[str, ...] = ()
    floor: np.ndarray | None = None
    open_jaw: "LandmarkCalibration | None" = None
    open_jaw_from: float = OPEN_JAW_FROM
    eyedirs: np.ndarray | None = None

    def apply(self, lmm: LandmarkModel) -> LandmarkModel:
        """``lmm`` with the calibrated neutral landmarks and expression directions (its first
        ``n_expr`` expression columns; shape columns and joints unchanged). The exact forward's
        triangle corners move with their landmark (the barycentric weights sum to 1)."""
        E = lmm.n_expr
        if E > self.exprdirs.shape[2] or lmm.n_landmarks != self.offset.shape[0]:
            raise ValueError(f"calibration of {self.exprdirs.shape[2]} expressions and {self.offset.shape[0]} "
                             f"landmarks does not fit a landmark model of {E} and {lmm.n_landmarks}")
        S = lmm.n_shape
        dt = lmm.template.dtype
        off = torch.as_tensor(self.offset, dtype=dt)
        new_dirs = torch.as_tensor(self.exprdirs[:, :, :E], dtype=dt)
        d_dirs = new_dirs - lmm.basis[:, :, S:S + E]      # (L, 3, E) change per landmark

        added = {}              # joint -> (L, 3, 9) pose correctives added to the model's
        if self.jawdirs is not None:
            added[JAW] = torch.as_tensor(self.jawdirs, dtype=dt)
        if self.eyedirs is not None:
            for eye in EYES:
                added[eye] = torch.as_tensor(self.eyedirs, dtype=dt)

        def moved(m: LandmarkModel, rep: int) -> LandmarkModel:
            basis = m.basis.clone()
            basis[:, :, S:S + E] += d_dirs.repeat_interleave(rep, 0)
            extra = {}
            if added:               # the joints' correctives: the jacobian needs the joints listed
                posedirs = m.posedirs.clone()
                for joint, d in added.items():
                    posedirs[:, :, joint - 1] += d.repeat_interleave(rep, 0)
                extra = dict(posedirs=posedirs, corrective_joints=sorted(set(m.corrective_joints) | set(added)))
            return replace(m, template=m.template + off.repeat_interleave(rep, 0), basis=basis, **extra)

        corners = moved(lmm.corners, 3) if lmm.corners is not None else None
        out = moved(lmm, 1)
        out.corners = corners
        if not self.offset_only:
            out.unobserved_expr = ()
        out.__dict__.pop("_dtype_cache", None)
        return out

    def save(self, path: str | Path) -> Path:
        """Write as .npz (atomic); :meth:`load` reads it back."""
        from ..output_safety import atomic_path

        target = Path(path)
        meta = {"format": CALIBRATION_FORMAT, "version": 5, "expr_names": list(self.expr_names),
                "offset_only": bool(self.offset_only), "joint_channels": list(self.joint_channels)}
        extra = {} if self.jawdirs is None else {"jawdirs": self.jawdirs}
        if self.floor is not None:
            extra["floor"] = np.asarray(self.floor, np.float32)
        if self.eyedirs is not None:
            extra["eyedirs"] = np.asarray(self.eyedirs, np.float32)
        if self.open_jaw is not None:
            meta["open_jaw_from"] = float(self.open_jaw_from)
            extra["open_exprdirs"] = np.asarray(self.open_jaw.exprdirs, np.float32)
            if self.open_jaw.jawdirs is not None:
                extra["open_jawdirs"] = np.asarray(self.open_jaw.jawdirs, np.float32)
            if self.open_jaw.floor is not None:
                extra["open_floor"] = np.asarray(self.open_jaw.floor, np.float32)
            if self.open_jaw.eyedirs is not None:
                extra["open_eyedirs"] = np.asarray(self.open_jaw.eyedirs, np.float32)
        with atomic_path(target) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, offset=self.offset, exprdirs=self.exprdirs, response=self.response,
                     meta=np.array(json.dumps(meta)), **extra)
        return target

    @staticmethod
    def load(path: str | Path) -> "LandmarkCalibration":
        """Read a calibration written by :meth:`save`; InputError naming the file otherwise (a file
        that is not a zip, a damaged or oversized member, arrays of the wrong shape, non-finite or
        out-of-range values)."""
        from ..errors import InputError

        if not Path(path).is_file():
            raise InputError(path, "calibration file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if not isinstance(meta, dict) or meta.get("format") != CALIBRATION_FORMAT:
                    raise ValueError(f"format is not {CALIBRATION_FORMAT}")
                names = meta["expr_names"]
                channels = meta.get("joint_channels", [])                                 # version 2: none
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or \
                        not isinstance(channels, list) or not all(isinstance(n, str) for n in channels):
                    raise ValueError("its expression and joint channel names are not lists of names")
                arr = lambda key: np.asarray(z[key], np.float32) if key in z.files else None  # noqa: E731
                cal = LandmarkCalibration(arr("offset"), arr("exprdirs"), tuple(names), arr("response"),
                                          arr("jawdirs"), bool(meta.get("offset_only", False)),    # version 1: no jaw
                                          tuple(channels), arr("floor"))                          # version 3: no floor
                if cal.offset is None or cal.exprdirs is None or cal.response is None:
                    raise KeyError("offset, exprdirs and response are required")
                cal.eyedirs = arr("eyedirs")                                                    # version 4: none
                if "open_exprdirs" in z.files:                                                    # version 4: none
                    cal.open_jaw = replace(cal, exprdirs=arr("open_exprdirs"), jawdirs=arr("open_jawdirs"),
                                           floor=arr("open_floor"), eyedirs=arr("open_eyedirs"), open_jaw=None)
                    cal.open_jaw_from = float(meta.get("open_jaw_from", OPEN_JAW_FROM))
            _check_layout(cal)
            if cal.open_jaw is not None:
                _check_open_jaw(cal)
            return cal
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - zip/npy/json/key/shape/memory problems: all a bad file
            raise InputError(path, f"not a landmark calibration ({type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())[:100]})") from None


def _check_layout(cal: "LandmarkCalibration") -> None:
    """ValueError unless ``cal``'s arrays fit each other (offset (L, 3), exprdirs (L, 3, E) with E
    its names, response (E,), jaw correctives (L, 3, 9)), are finite, and its floor is in bounds."""
    L, E = cal.offset.shape[0] if cal.offset.ndim == 2 else -1, len(cal.expr_names)
    if cal.offset.shape != (L, 3) or L < 1 or cal.exprdirs.shape != (L, 3, E) or cal.response.shape != (E,):
        raise ValueError(f"its arrays do not fit each other (offset {cal.offset.shape}, directions "
                         f"{cal.exprdirs.shape}, response {cal.response.shape}, {E} names)")
    for what, a in (("jaw", cal.jawdirs), ("eye", cal.eyedirs)):
        if a is not None and a.shape != (L, 3, 9):
            raise ValueError(f"its {what} correctives are {a.shape}, not {(L, 3, 9)}")
    for a in (cal.offset, cal.exprdirs, cal.response, cal.jawdirs, cal.eyedirs):
        if a is not None and not np.all(np.isfinite(a)):
            raise ValueError("it holds values that are not finite numbers")
    _check_floor(cal.floor, E)


def _check_floor(floor: np.ndarray | None, n_expr: int, what: str = "its reading floor") -> None:
    """ValueError unless ``floor`` is None or (n_expr,) finite weights in [0, FLOOR_MAX]."""
    if floor is not None and (floor.shape != (n_expr,) or not np.all(np.isfinite(floor))
                              or floor.min() < 0.0 or floor.max() > FLOOR_MAX):
        raise ValueError(f"{what} is not {n_expr} weights in [0, {FLOOR_MAX}]")


def _check_open_jaw(cal: "LandmarkCalibration") -> None:
    """ValueError unless ``cal.open_jaw`` is shaped like ``cal`` (directions as its own, jaw
    and eye correctives (L, 3, 9)), finite, with a floor in bounds and ``open_jaw_from`` in (0, 1)."""
    o = cal.open_jaw
    if o.exprdirs.shape != cal.exprdirs.shape or not np.all(np.isfinite(o.exprdirs)):
        raise ValueError(f"its open-jaw directions are not {cal.exprdirs.shape} finite values")
    for what, a in (("jaw", o.jawdirs), ("eye", o.eyedirs)):
        if a is not None and (a.shape != (cal.offset.shape[0], 3, 9) or not np.all(np.isfinite(a))):
            raise ValueError(f"its open-jaw {what} correctives are not {(cal.offset.shape[0], 3, 9)} finite values")
    _check_floor(o.floor, len(cal.expr_names), "its open-jaw reading floor")
    if not (np.isfinite(cal.open_jaw_from) and 0.0 < cal.open_jaw_from < 1.0):
        raise ValueError(f"its open-jaw threshold {cal.open_jaw_from!r} is not a jawOpen weight in (0, 1)")


def open_jaw_rows(cal: "LandmarkCalibration | None", opening: np.ndarray) -> np.ndarray:
    """(T,) bool: the frames whose jaw opening ``opening`` (T,) radians about the jaw's x axis
    reads a jawOpen weight (head.arkit_names.JOINT_CHANNELS' radians per unit) above
    ``cal.open_jaw_from``; all False without an open-jaw part."""
    opening = np.asarray(opening, np.float64)
    if cal is None or cal.open_jaw is None:
        return np.zeros(opening.shape, bool)
    from ..head.arkit_names import JOINT_CHANNELS

    gain = next(g for n, j, axis, g in JOINT_CHANNELS if n == "jawOpen")
    return opening / gain > cal.open_jaw_from


def joint_channel_columns(cal: "LandmarkCalibration | None", expr_names) -> list[tuple[int, int, int, float]]:
    """(expression column, joint, axis, radians per unit) of each of ``cal.joint_channels`` present
    in ``expr_names`` (head.arkit_names.JOINT_CHANNELS); [] without a calibration."""
    if cal is None or not cal.joint_channels:
        return []
    from ..head.arkit_names import JOINT_CHANNELS
    from ..head.model import JOINT_NAMES

    names = list(expr_names)
    table = {n: (JOINT_NAMES.index(j), axis, gain) for n, j, axis, gain in JOINT_CHANNELS}
    return [(names.index(n), *table[n]) for n in cal.joint_channels if n in names and n in table]


def joint_channel_priors(cal: "LandmarkCalibration | None", layout: Layout, frame_w: torch.Tensor,
                         expr_names, expr_prior: float, frozen: float) -> torch.Tensor:
    """The tracker's per-frame prior weights (P_frame,) (face.fit.frame_prior_weights, layout
    order) with each joint channel's expression column free (``expr_prior``) and its joint axis
    held at rest (``frozen``): the channel's calibrated direction moves the landmarks instead of
    the joint. Unchanged without joint channels (or when the joint is not fitted)."""
    cols = joint_channel_columns(cal, expr_names)
    if not cols:
        return frame_w
    w = frame_w.clone()
    lead = [g[0] for g in layout.joints]
    n_joint = 3 * len(layout.joints) + 3           # joint groups, then translation, then expressions
    for col, joint, axis, _ in cols:
        if joint not in lead or col >= layout.n_expr:
            continue
        w[3 * lead.index(joint) + axis] = frozen
        w[n_joint + col] = expr_prior
    return w


def fold_joint_channels(cal: "LandmarkCalibration | None", expr: np.ndarray, pose: np.ndarray,
                        expr_names) -> tuple[np.ndarray, np.ndarray]:
    """Tracked (T, E) expressions and (T, J, 3) pose with each joint channel's weight moved into
    its joint's angle (radians per unit from JOINT_CHANNELS) and its column zeroed: the parameters
    the head model and the ARKit mapping expect. Copies; unchanged without joint channels."""
    cols = joint_channel_columns(cal, expr_names)
    if not cols:
        return expr, pose
    expr, pose = np.array(expr, copy=True), np.array(pose, copy=True)
    for col, joint, axis, gain in cols:
        pose[:, joint, axis] += gain * expr[:, col]
        expr[:, col] = 0.0
    return expr, pose




def apply_floor(cal: "LandmarkCalibration | None", expr: np.ndarray) -> np.ndarray:
    """Solved (T, E) expression weights (joint channels' columns still in place) with each column's
    reading floor f taken off and the rest rescaled: max(w - f, 0) / (1 - f), so a weight at its
    floor or below reads 0 and 1 stays 1. A copy; unchanged without a calibration floor."""
    if cal is None or cal.floor is None:
        return expr
    E = min(expr.shape[1], len(cal.floor))
    f = np.clip(np.asarray(cal.floor[:E], np.float64), 0.0, FLOOR_MAX)
    out = np.array(expr, copy=True)
    out[:, :E] = (np.maximum(out[:, :E] - f, 0.0) / (1.0 - f)).astype(out.dtype)
    return out


def unfold_joint_channels(cal: "LandmarkCalibration | None", expr: np.ndarray, pose: np.ndarray,
                          expr_names) -> np.ndarray:
    """(T, E) expression weights with each joint channel's column read back from its joint's angle
    (the part of the angle on the channel's side, per its radians per unit): the columns the
    tracker solved before :func:`fold_joint_channels`. A copy."""
    expr = np.array(expr, copy=True)
    for col, joint, axis, gain in joint_channel_columns(cal, expr_names):
        expr[:, col] = np.maximum(np.asarray(pose)[:, joint, axis] / gain, 0.0)
    return expr


def reading_floor(truth: np.ndarray, read: np.ndarray, columns: np.ndarray, quantile: float,
                  min_absent: int = 20) -> np.ndarray:
    """(E,) float32 reading floor from renders of known weights: per column in ``columns`` ((E,)
    bool), the ``quantile`` (percent) of the weights the tracker read, ``read`` (K, E), on the
    renders whose true weight, ``truth`` (K, E), is 0 (a shape absent from fewer than
    ``min_absent`` renders gets none); clipped to [0, FLOOR_MAX], 0 elsewhere. Rows with a
    non-finite reading are left out."""
    truth = np.asarray(truth, np.float64)
    read = np.asarray(read, np.float64)
    ok = np.all(np.isfinite(read), axis=1)
    truth, read = truth[ok], read[ok]
    floor = np.zeros(truth.shape[1], np.float32)
    for k in np.flatnonzero(np.asarray(columns, bool)[:truth.shape[1]]):
        absent = truth[:, k] == 0.0
        if absent.sum() >= min_absent:
            floor[k] = np.clip(np.percentile(read[absent, k], quantile), 0.0, FLOOR_MAX)
    return floor


def rest_to_pixels(lmm: LandmarkModel, proj: Projector, coeffs: torch.Tensor, pose: torch.Tensor,
                   transl: torch.Tensor, eps: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the landmarks (L, 2) at one frame (coeffs (1, C), pose (1, 5, 3), transl (1, 3))
    and their Jacobian with respect to a rest-frame offset of each landmark, (L, 2, 3) px / m
    (central differences of the exact forward: every landmark moves alone by its own offset)."""
    uv0, _ = proj.project(lmm.points(coeffs, pose, transl))
    cols = []
    for a in range(3):
        d = np.zeros((lmm.n_landmarks, 3))
        d[:, a] = eps
        plus = LandmarkCalibration(d, np.zeros((lmm.n_landmarks, 3, 0)), (), np.zeros(0))
        minus = LandmarkCalibration(-d, np.zeros((lmm.n_landmarks, 3, 0)), (), np.zeros(0))
        up, _ = proj.project(_offset_only(lmm, plus).points(coeffs, pose, transl))
        um, _ = proj.project(_offset_only(lmm, minus).points(coeffs, pose, transl))
        cols.append(((up - um) / (2 * eps))[0].numpy())
    return uv0[0].numpy(), np.stack(cols, -1)


def _offset_only(lmm: LandmarkModel, cal: LandmarkCalibration) -> LandmarkModel:
    """``lmm`` with only ``cal.offset`` applied (expression directions kept)."""
    E = lmm.n_expr
    S = lmm.n_shape
    dirs = lmm.basis[:, :, S:S + E].numpy()
    return LandmarkCalibration(cal.offset, dirs, (), np.zeros(E)).apply(lmm)


def lift(A: np.ndarray, du: np.ndarray, prior: np.ndarray, ridge: float) -> np.ndarray:
    """Per landmark, the rest-frame displacement (L, 3) whose pixel motion through A (L, 2, 3) is
    ``du`` (L, 2): argmin |A d - du|^2 + lam |d - prior|^2, lam = ridge x the mean of A^T A's trace
    over 3 (so the image-plane directions follow the pixels, the unseen depth follows ``prior``)."""
    AtA = np.einsum("lki,lkj->lij", A, A)
    lam = ridge * float(np.trace(AtA, axis1=1, axis2=2).mean()) / 3.0
    rhs = np.einsum("lki,lk->li", A, du) + lam * prior
    return np.linalg.solve(AtA + lam * np.eye(3)[None], rhs[..., None])[..., 0]


def fit_calibration(lmm: LandmarkModel, proj: Projector, shape: np.ndarray, pose: np.ndarray,
                    transl: np.ndarray, neutral: np.ndarray, shapes: np.ndarray, weight: float,
                    expr_names: tuple[str, ...], calibrate: np.ndarray | None = None,
                    ridge: float = 1e-3) -> LandmarkCalibration:
    """A calibration from mediapipe's landmarks on renders of one head.

    lmm: the tracker's landmark model (all E expressions); proj: the camera of the landmarks;
    shape (S,), pose (5, 3), transl (3,): the head's parameters at the neutral render, in that
    camera (expressions 0); neutral (L, 2): mediapipe's landmarks on the neutral render (px);
    shapes (E, L, 2): mediapipe's landmarks on the render of each expression alone at ``weight``
    (NaN rows: that render gave no face; the shape keeps the embedding's direction);
    calibrate (E,) bool: the expressions to calibrate (None: all; the rest keep the embedding's).
    """
    S, E = lmm.n_shape, lmm.n_expr
    f64 = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
    coeffs = torch.cat([f64(shape)[None, :S], torch.zeros(1, E, dtype=torch.float64)], 1)
    uv0, A = rest_to_pixels(lmm, proj, coeffs, f64(pose)[None], f64(transl)[None])
    # neutral: mediapipe's landmarks relative to the embedding's (no prior: what the camera cannot
    # see stays where the embedding has it)
    offset = lift(A, neutral - uv0, np.zeros((len(uv0), 3)), ridge)
    model_dirs = lmm.basis[:, :, S:S + E].numpy()
    dirs = model_dirs.copy()
    response = np.ones(E)
    calibrate = np.ones(E, bool) if calibrate is None else np.asarray(calibrate, bool)
    valid = lmm.valid
    for k in np.flatnonzero(calibrate):
        if not np.all(np.isfinite(shapes[k])):
            continue
        du = (shapes[k] - neutral) / weight                      # (L, 2) px per unit of the shape
        dirs[:, :, k] = lift(A, du, model_dirs[:, :, k], ridge)
        du_model = np.einsum("lki,li->lk", A, model_dirs[:, :, k])
        den = np.sqrt((du_model[valid] ** 2).sum(-1).mean())
        response[k] = np.sqrt((du[valid] ** 2).sum(-1).mean()) / den if den > 1e-9 else 1.0
    return LandmarkCalibration(offset.astype(np.float32), dirs.astype(np.float32), tuple(expr_names),
                               response.astype(np.float32))


def fit_jaw_correctives(lmm: LandmarkModel, proj: Projector, shape: np.ndarray, pose: np.ndarray,
                        transl: np.ndarray, neutral: np.ndarray,
                        readings: list[tuple[int, float, np.ndarray | None]], ridge: float = 1e-3) -> np.ndarray:
    """The jaw's pose correctives (L, 3, 9) that make the model's landmarks move, for a jaw
    rotation, as mediapipe reads them on renders of it.

    lmm, proj, shape, pose, transl, neutral: as :func:`fit_calibration` (the neutral render's
    fit and mediapipe's landmarks on it); readings: (axis, angle, landmarks) per render of the jaw
    turned alone by ``angle`` rad about its local ``axis`` (0 opens, 1 sideways) from that pose,
    with mediapipe's (L, 2) px landmarks on it (None: no face, skipped). Per reading, the pixel
    motion mediapipe saw minus the model's own is lifted to a rest-frame displacement through the
    camera's Jacobian at the turned pose (depth unseen: none); per axis, the displacement per sin
    of the angle (least squares over its readings: the part odd in the angle, which is what tells
    left from right) goes to the two sin entries of that axis (:data:`SIN_ENTRIES`). A mediapipe
    that reads the sideways jaw at half the model's motion gets a corrective that halves it.
    """
    S, E = lmm.n_shape, lmm.n_expr
    f64 = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
    coeffs = torch.cat([f64(shape)[None, :S], torch.zeros(1, E, dtype=torch.float64)], 1)
    p0 = f64(pose)[None]
    uv0, _ = proj.project(lmm.points(coeffs, p0, f64(transl)[None]))
    L = lmm.n_landmarks
    num = {a: np.zeros((L, 3)) for a in SIN_ENTRIES}
    den = {a: 0.0 for a in SIN_ENTRIES}
    for axis, angle, lm in readings:
        if lm is None or not np.all(np.isfinite(lm)):
            continue
        pc = p0.clone()
        pc[0, JAW, axis] += angle
        uvc, A = rest_to_pixels(lmm, proj, coeffs, pc, f64(transl)[None])
        du = (np.asarray(lm, np.float64) - neutral) - (uvc - uv0[0].numpy())   # px beyond the model's
        d = lift(A, du, np.zeros((L, 3)), ridge)
        s = np.sin(float(pc[0, JAW, axis]))
        num[axis] += s * d
        den[axis] += s * s
    out = np.zeros((L, 3, 9))
    for axis, (plus, minus) in SIN_ENTRIES.items():
        if den[axis] > 0:
            per_sin = num[axis] / den[axis]
            out[:, :, plus] += 0.5 * per_sin
            out[:, :, minus] -= 0.5 * per_sin
    return out.astype(np.float32)


def fit_offset(lmm: LandmarkModel, proj: Projector, shape: np.ndarray, expr: np.ndarray, poses: np.ndarray,
               transl: np.ndarray, observed: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """(L, 3) float64 rest-frame offsets (metres) that move the embedding's landmarks to where
    mediapipe reads them on V views of one head (an offset-only calibration, depth included).

    shape (S,), expr (E,): the head's coefficients in every view; poses (V, 5, 3) axis-angle
    radians and transl (3,) metres: each view's joints (e.g. the photo's pose with the neck turned);
    observed (V, L, 2) px: mediapipe's landmarks on each view's render (NaN rows: no face, left out).
    Per landmark, argmin sum_v |A_v d - (observed_v - embedding_v)|^2 + lam |d|^2, A_v the camera
    Jacobian of a rest-frame offset at view v (:func:`rest_to_pixels`), lam = ``ridge`` x the mean
    of sum_v A_v^T A_v's trace over 3: a frontal view alone cannot see depth, views turned left and
    right can, so a feature that sits in front of or behind the embedding (and slides against it
    when the head turns) gets its depth from them."""
    S, E = lmm.n_shape, lmm.n_expr
    f64 = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
    coeffs = torch.cat([f64(shape)[None, :S], f64(expr)[None, :E]], 1)
    L = lmm.n_landmarks
    AtA = np.zeros((L, 3, 3))
    rhs = np.zeros((L, 3))
    for pose, obs in zip(np.asarray(poses, np.float64), np.asarray(observed, np.float64)):
        if not np.all(np.isfinite(obs)):
            continue
        uv, A = rest_to_pixels(lmm, proj, coeffs, f64(pose)[None], f64(transl).reshape(1, 3))
        AtA += np.einsum("lki,lkj->lij", A, A)
        rhs += np.einsum("lki,lk->li", A, obs - uv)
    if not np.any(AtA):
        raise ValueError("no view with landmarks to fit the offsets to")
    lam = ridge * float(np.trace(AtA, axis1=1, axis2=2).mean()) / 3.0
    off = np.linalg.solve(AtA + lam * np.eye(3)[None], rhs[..., None])[..., 0]
    off[~np.asarray(lmm.valid, bool)] = 0.0
    return off


def offset_calibration(lmm: LandmarkModel, offset: np.ndarray, expr_names: tuple[str, ...]) -> LandmarkCalibration:
    """A calibration that moves only the neutral landmarks by ``offset`` (L, 3) rest-frame metres:
    the expression directions are ``lmm``'s own (all its expressions), so the tracker solves the
    same basis with landmarks placed where mediapipe reads this head."""
    S, E = lmm.n_shape, lmm.n_expr
    dirs = lmm.basis[:, :, S:S + E].numpy().astype(np.float32)
    return LandmarkCalibration(np.asarray(offset, np.float32), dirs, tuple(expr_names)[:E],
                               np.ones(E, np.float32), offset_only=True)


def fit_mixtures(lmm: LandmarkModel, proj: Projector, cal: LandmarkCalibration, shape: np.ndarray,
                 pose: np.ndarray, transl: np.ndarray, expr: np.ndarray, jaw: np.ndarray,
                 readings: np.ndarray, columns: np.ndarray, ridge: float = 1.0,
                 lift_ridge: float = 1e-3, free_motion: np.ndarray | None = None,
                 gaze: np.ndarray | None = None) -> LandmarkCalibration:
    """``cal`` with its expression directions and jaw corrective corrected by renders of mixtures.

    Each calibrated direction is read from its expression alone, but mediapipe does not read a
    mixture as the sum of its parts (shapes that move one landmark compete for it: two mouth
    shapes together each read weaker than alone). Over renders of random mixtures, the residual
    of mediapipe's reading against the calibrated model's prediction is regressed on the mixture
    weights, per landmark (ridge least squares, one solve for every landmark): the correction
    per unit of each shape that makes the linear model best explain the mixtures. It is lifted
    to the rest frame as :func:`fit_calibration` lifts a shape (depth unseen: none).

    lmm, proj, shape (S,), pose (5, 3), transl (3,): the landmark model and the neutral render's
    fitted head, jaw and eyes at rest (as :func:`fit_calibration` takes them); expr (K, E): each
    mixture's expression weights as the tracker solves them (joint channels of ``cal`` in their
    columns); jaw (K,): each mixture's jaw opening (rad about the jaw's x axis); readings (K, L, 2):
    mediapipe's landmarks on the mixture renders (px; NaN rows: no face, left out); columns (E,)
    bool: the expressions corrected (the calibrated ones). ridge: weight^2 units per column (the
    correction is shrunk as if each shape had been seen that many more times at weight 1 with no
    residual). free_motion: landmark indices on which each mixture's residual is first relieved of
    its least-squares 2-D similarity (render_compare.rigid_offsets' "similarity", no threshold; the
    tracker's free head pose would take that part); None = not. gaze (K, 2): each mixture's eye
    rotation (rad about the eyes' x and y axes, both eyes alike); with it, what mediapipe reads of
    a gaze beyond the model's own motion is regressed too, per sin of each angle, and becomes the
    eyes' corrective (``eyedirs``); None = eyes at rest, no eye corrective. Returns a new
    calibration (``cal`` is not changed)."""
    S, E = lmm.n_shape, lmm.n_expr
    expr = np.asarray(expr, np.float64)
    jaw = np.asarray(jaw, np.float64)
    readings = np.asarray(readings, np.float64)
    ok = np.all(np.isfinite(readings.reshape(len(readings), -1)), axis=1)
    if ok.sum() < 2:
        return cal
    gaze = np.zeros((len(expr), 2)) if gaze is None else np.asarray(gaze, np.float64)
    use_gaze = bool(np.any(gaze[ok]))
    expr, jaw, readings, gaze = expr[ok], jaw[ok], readings[ok], gaze[ok]
    K = len(expr)
    f64 = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
    lmc = cal.apply(lmm)
    coeffs = torch.cat([f64(shape)[None, :S].expand(K, S), f64(expr)[:, :E]], 1)
    poses = f64(pose)[None].repeat(K, 1, 1)
    poses[:, JAW, 0] += f64(jaw)
    for eye in EYES:
        poses[:, eye, :2] += f64(gaze)
    with torch.inference_mode():
        pred, _ = proj.project(lmc.points(coeffs, poses, f64(transl)[None].expand(K, 3)))
    resid = readings - pred.numpy()                                    # (K, L, 2) px
    if free_motion is not None:
        # the tracker fits every frame's head pose: what one in-image motion of the whole face
        # explains of a mixture's residual is the pose's, not the shapes'
        from .render_compare import rigid_offsets

        resid = resid - rigid_offsets(resid, pred.numpy(), np.asarray(free_motion, np.int64), "similarity")
    resid = resid.reshape(K, -1)
    cols = np.flatnonzero(np.asarray(columns, bool)[:E])
    # the jaw's part per sin of its angle; the gaze's per sin of each eye angle
    X = np.concatenate([expr[:, cols], np.sin(jaw)[:, None]] + ([np.sin(gaze)] if use_gaze else []), 1)
    delta = np.linalg.solve(X.T @ X + ridge * np.eye(X.shape[1]), X.T @ resid)   # (C + 1 [+ 2], L * 2)
    delta = delta.reshape(X.shape[1], -1, 2)
    coeffs0 = torch.cat([f64(shape)[None, :S], torch.zeros(1, E, dtype=torch.float64)], 1)
    _, A = rest_to_pixels(lmc, proj, coeffs0, f64(pose)[None], f64(transl)[None])
    zero = np.zeros((lmm.n_landmarks, 3))
    dirs = np.array(cal.exprdirs, np.float64, copy=True)
    for j, k in enumerate(cols):
        dirs[:, :, k] += lift(A, delta[j], zero, lift_ridge)
    jawdirs = np.zeros((lmm.n_landmarks, 3, 9)) if cal.jawdirs is None else np.array(cal.jawdirs, np.float64)
    per_sin = lift(A, delta[len(cols)], zero, lift_ridge)
    plus, minus = SIN_ENTRIES[0]
    jawdirs[:, :, plus] += 0.5 * per_sin
    jawdirs[:, :, minus] -= 0.5 * per_sin
    eyedirs = cal.eyedirs
    if use_gaze:
        # both eyes turn together: each carries half of what the gaze reads beyond the model
        eyedirs = np.zeros((lmm.n_landmarks, 3, 9)) if cal.eyedirs is None else np.array(cal.eyedirs, np.float64)
        for axis in (0, 1):
            per_sin = lift(A, delta[len(cols) + 1 + axis], zero, lift_ridge)
            plus, minus = SIN_ENTRIES[axis]
            eyedirs[:, :, plus] += 0.25 * per_sin
            eyedirs[:, :, minus] -= 0.25 * per_sin
        eyedirs = eyedirs.astype(np.float32)
    return replace(cal, exprdirs=dirs.astype(np.float32), jawdirs=jawdirs.astype(np.float32), eyedirs=eyedirs)

