"""Several views -> one avatar: a clip or a few photos of one person, fused into a whole head.

Stages (timed in ``BuildResult.seconds`` beside the single-photo build's own):
  views     clip: one streamed scan (face, yaw/pitch, sharpness per frame), N views picked to span
            the poses (face/views.py), the chosen frames decoded; photos: loaded as given
  detect    each view analysed as a photo (crop, landmarks, portrait mask)
  fit       one identity over all views (joint landmark fit), per view pose + expression; each view
            also fitted alone, to tell one person from a mixture by the spread of identity fits and
            of skin colours
  build     the single-photo build of the most frontal view (or the anchor frame) with the joint
            identity, refined as that build would be (MultiViewOptions.primary_refine): what
            the primary view sees well keeps its colour and opacity through fusion and refinement
            (primary_hold), so the source frame is the single photo's
  fuse      the paper's occlusion-aware fusion applied to views: every Gaussian takes its colour
            from the views that see it, weighted by visibility (rendered depth), facing angle and
            sampling resolution (a part Gaussian: its disc's normal, part_facing); what no view
            saw keeps the single-photo completion. A Gaussian with view data (view_colors.py:
            seen edge-on from the source) takes as its side colour what the other views show of
            it (side_from_views), which a turned frame shows instead of the outline's smear
  slide     (opt-in, MultiViewOptions.slide; before fusion) hair bound to the head moves along
            the primary view's rays to the depth the other views' silhouettes hold (slide_hair)
  carve     hair Gaussians outside any view's portrait silhouette are removed (a visual hull)
  grow      (opt-in, MultiViewOptions.grow) hair added where a view shows the person and the
            avatar's render does not, at depths every view's silhouette and seen surface allow
            (grow_hair)
  refine    colours and opacities against all views at once (one batched render per step), with
            the single photo's whole-portrait terms (refine.refine_views)

Every stage poses the views as frames are rendered (``posed_set``): Gaussians where a view's pose
stretches the skin beyond what the build sized them for grow (stretch_growth), and the refinement
fits each view at its own sizes (RefineView.scales).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, OMGWarning
from ..filekind import is_video
from ..progress import Progress
from .gaussians import ClampedShape, GaussianAvatar, GaussianSet, SkinnedPart
from .imageops import bilinear, to_float
from .mouth import plausible_refined_colors
from .posing import model_lods
from .posed import posed_set
from .view_colors import ViewColors

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..render.camera import Camera
    from .build import BuildOptions, BuildResult

# Views within this yaw and pitch (degrees) judge whether all views show one person.
FRONTAL_DEG = 20.0
# Skin patches (MediaPipe face-mesh ids: cheeks, below the eyes, forehead middle and sides, nose
# bridge, chin) whose median colour is a view's skin colour (skin_colour); half-size in crop px.
SKIN_LANDMARKS = (50, 280, 117, 346, 151, 108, 337, 6, 199)
SKIN_PATCH_PX = 5
# a hair Gaussian covering this many pixels of the primary view is never carved (carve_hair)
PRIMARY_SEEN_PX = 0.5


FLAT_RATIO = 0.5      # a part Gaussian whose smallest scale is below this share of its largest is a disc
ROUND_FACING = 0.5    # view_samples' facing of a round part Gaussian (no surface to face the view)


class FewerViewsWarning(OMGWarning):
    """The input offered fewer usable views than were asked for."""


class MixedIdentityWarning(OMGWarning):
    """The views' identity fits or skin colours spread more than one person's usually do."""


@dataclass
class MultiViewOptions:
    """views: views picked from a clip (photos: all given are used); views_from: (start, end
    inclusive | None) frame range a clip's views may come from; min_views: fewer usable views is
    an error; identity_spread / identity_spread_error: the spread (identity_spread()) of the
    identity fits of the near-frontal views (within FRONTAL_DEG; judged when there are at least 3)
    above which the build warns that the views may show different people / refuses them;
    skin_spread: the spread (skin_spread()) of those views' skin chromaticity above which it warns.
    Landmarks identify a head only weakly: on the shared clips one person's 8 views spread
    0.6-1.10 (clip d12 1.03-1.10 by the views picked), half-and-half mixtures of two clips' people
    0.94-1.16 (landmarks cannot tell them apart), photos of different people 1.7-2.3 (refused);
    three views of one synthetic head 0.9-1.35, the same head with one reshaped by 5 prior
    standard deviations 1.16: above 1.4 only sets of clearly different faces;
    skin tells most of them apart: one clip's views spread 0.005-0.009 in chromaticity,
    mixtures of two clips 0.031-0.10 (d3 + d12, d0 + d19, d3 + d0; 4 + 2 views count), photos of
    different people 0.076, a synthetic turn-around 0.002. A single stray view among 7 (0.014)
    and two people of similar build and skin (d12 + d19: 0.008) pass;
    anchor_frame: a clip's frame that is always a view and anchors the build (framing, body,
    rest pose: what the single-photo build of that frame would anchor on), or with photos the
    position (from 0) of the photo that does; None: the most frontal view;
    visibility_tol_m: a Gaussian is seen when it is at most this far behind the rendered depth;
    prior_weight: weight of the single-photo colour against the fused views' (unseen -> kept);
    primary_weight / primary_refine_weight: the primary view's (the anchor or the most frontal one,
    whose single-photo build the others complete) weight against one other view in fusion / in the
    refinement loss: where it sees well the avatar stays its photo's (on the shared clips an equal
    say cost 1.9 dB at the anchor frame for 0.2 dB elsewhere; in fusion 10x still cost clip d12's
anchor frame 2.7 dB, 30x 0.2 dB), the others fill what it sees poorly;
    refine_seconds / refine_steps: the multi-view refinement budget (0 = none);
    refine_views_per_step: views rendered per refinement step (the primary and the others in turn;
    None: all), so a budget of seconds buys more steps;
    refine_downscale: the refinement matches the views at 1/this of their resolution (block means;
    1: full). The budget buys few steps: on clip d12 at LOD 2 under load 10-13 the 10 s budget ran
    1 step (the views' coverage, 8 renders before the first step, took most of it), 3 at half
    resolution; 30 s at half resolution ran 4 steps on d12 and 2 on d3 and moved the build's own
    views by -0.06 dB (d12 18.31 -> 18.25, d3 23.51 -> 23.45, every 30th frame), so it stays 1 until
    measured on a quiet machine;
    registration_px: a view whose landmark error under the joint fit exceeds the primary view's
    by e px counts exp(-(e / registration_px)^2) in fusion and refinement and carves hair only
    while that is at least 0.5 (registration_weights; None: every view counts fully): a
    misregistered view paints its colours onto the wrong Gaussians (on the synthetic turn-around
    the -60 deg view, fitted 13 deg short of its yaw at 6.6 px against the primary's 1.2, put the
    multi-view build 1.1 dB behind the single photo at -60 deg);
    register_seconds / register_steps: the budget of register_views, which runs before fusion
    when the build refines (0 = views stay where the landmark fit put them). On by default since
    the forty-fourth session: the landmark fit turns the synthetic turn-around's views 10-15 %
    short of their yaw (-51 deg for -60, +43 for +50), and 5 s of registration (3.5 and 4.5 deg
    of correction there) cut the head's squared error at -60 / +60 deg from 1031 / 1807 to 760 /
    1290 for 5.6 s more (35 s against the single photo's 13 s); on the shared clips, which turn
    less, it moved the views 1-5 deg at 814f6db for no gain (held-out PSNR full 23.21 -> 23.14 dB
    with a 6 s budget); register_downscale:
    it matches the views at 1/this of their resolution (a step costs that squared less: more
    steps in the budget; a head turned by a degree still moves several pixels at 256)."""

    views: int = 8
    views_from: tuple[int, int | None] = (0, None)
    anchor_frame: int | None = None
    min_views: int = 2
    identity_spread: float = 1.4
    identity_spread_error: float = 1.6
    visibility_tol_m: float = 0.01
    prior_weight: float = 0.05
    primary_weight: float = 30.0
    primary_refine_weight: float = 5.0
    refine_seconds: float = 20.0
    refine_steps: int = 200
    refine_views_per_step: int | None = 3
    refine_downscale: int = 1
    register_seconds: float = 5.0
    register_steps: int = 40
    register_downscale: int = 2
    skin_spread: float = 0.015
    registration_px: float | None = 1.5
    # Off by default: on the synthetic turn-around the grown hair floated a few cm behind the head
    # at +-60 deg (a sparse sheet) and cost 0.7 / 0.4 dB there (no refinement: 19.28 / 19.37 dB with
    # it, 20.01 / 19.77 without, main 6cf77fe), for +0.1 dB on the clips' held-out frames.
    grow: bool = False
    # slide_hair before fusion: the primary's hair moved in depth to where the views hold it
    # (diagnosis runs at LOD 2: held-out PSNR full d3 22.48 -> 22.64 dB, d12 19.65 -> 19.65,
    # source frames unchanged; docs/figures/eval.md.in). Off since r11: silhouettes do not rule out
    # hair in front of the face (every view shows the person there), and on the synthetic
    # turn-around slid hair showed as thin streaks in front of the ear at +-60 deg (PSNR -60/0/+60
    # 20.00/29.75/19.69 dB with it, 20.32/29.83/20.41 without; only the hair the primary covers
    # < 0.5 px slid: 19.92/30.40/19.66); with primary_refine it cost the hair ("head" region) at
    # the source frame of clip d12 1.0 dB (28.97 vs 30.02) and held-out d12 19.54 vs 19.53 dB
    slide: bool = False
    # carve_hair after fusion (off: diagnosis only; the views' silhouettes then bound no hair)
    carve: bool = True
    # the source frame no worse than the single photo (issue 17): the primary view's own build is
    # the single-photo build of its frame, refinement included (primary_refine: its single-photo
    # refinement with the multi-view budget, before the other views are fused), and a Gaussian
    # covering primary_keep_px pixels of the primary view keeps that build's colour and opacity
    # through fusion and the multi-view refinement (less coverage: that share of it;
    # primary_hold; None: the other views recolour everything, the primary by its weight)
    primary_refine: bool = True
    primary_keep_px: float | None = 1.0
    # with the primary refined, the multi-view refinement's budget is this share of refine_seconds
    # (0: none; it refines only what the primary sees poorly)
    views_refine_share: float = 1.0


@dataclass
class View:
    """One view in the 512 crop. label: where it came from ("clip.mp4 frame 42", "a.jpg");
    image (512, 512, 3) float32 [0, 1]; mask (512, 512) float32 portrait mask; params: HeadParams
    T = 1 with the shared identity; camera: its Camera; yaw_deg / pitch_deg: the fitted head turn;
    rmse_px: its landmark error under the joint fit."""

    label: str
    image: np.ndarray
    mask: np.ndarray
    params: Any
    camera: "Camera"
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    rmse_px: float = float("nan")
    observation: Any = field(default=None, repr=False)
    registered_deg: float = 0.0   # register_views: the camera correction's rotation (degrees)
    registered_mm: float = 0.0    # ... and how far it moved the head's centroid (millimetres)

    def real(self) -> np.ndarray:
        """(H, W) float32: 1 where the crop holds the frame's own pixels, 0 in its padding (where
        the crop reached past the frame's edges and the build continued the texture: an invented
        colour, which fusion and refinement must not take from a view); ones without an
        observation."""
        if self.observation is None or getattr(self.observation, "crop", None) is None:
            return np.ones(self.mask.shape, np.float32)
        from ..face.crop import source_coverage

        return source_coverage(self.observation.crop).astype(np.float32)


def _scaled(progress: Progress, lo: float, hi: float) -> Progress:
    """A Progress whose 0..1 lands in ``lo..hi`` of ``progress`` (same cancellation), so the
    stages' own bars do not make the whole build's bar jump back."""
    return Progress(callback=lambda f, m: progress.report(lo + (hi - lo) * f, m),
                    should_cancel=progress.should_cancel)


# ---- views ------------------------------------------------------------------------------------

def _clip_images(path: Path, model, mv: MultiViewOptions, progress: Progress) -> list[tuple[str, np.ndarray]]:
    from ..face.views import load_frames, scan_clip, select_views

    start, end = mv.views_from
    scan = scan_clip(path, model, start, end, progress=_scaled(progress, 0.0, 0.1))
    picked = select_views(scan.candidates, mv.views, anchor=mv.anchor_frame)
    frames = load_frames(path, [c.index for c in picked])
    return [(_frame_label(path, c.index), frames[c.index]) for c in picked]


def _frame_label(path: Path, index: int) -> str:
    return f"{path.name} frame {index}"


def _analyze(images: list[tuple[str, Any]], is_clip: bool, progress: Progress) -> list[tuple[str, Any]]:
    """[(label, FaceObservation)]: every photo must work (its InputError stands); clip frames that
    fail are left out with a warning."""
    from ..face.analyze import shared_analyzer
    from ..face.image import image_from_array, load_image

    out = []
    with shared_analyzer() as analyzer:
        for i, (label, img) in enumerate(images):
            progress.report(0.1 + 0.1 * i / max(len(images), 1), f"analysing view {i + 1}/{len(images)}")
            src = load_image(img) if isinstance(img, (str, Path)) else image_from_array(img)
            try:
                out.append((label, analyzer.analyze(src)))
            except InputError as exc:
                if not is_clip:
                    raise
                warnings.warn(f"{label}: left out ({exc.message})",
                              FewerViewsWarning, stacklevel=2)
    return out


def fit_views(model: "HeadModel", observations: list[Any]) -> tuple[Any, np.ndarray]:
    """One identity over all views. Returns (HeadParams with T = K views, per-view landmark RMSE
    (K,) px under the joint fit)."""
    import torch

    from ..face.fit import FitOptions, landmark_weights, to_head_params
    from ..face.landmark_model import LandmarkModel
    from ..face.solver import Projector, single_thread
    from ..face.track import fit_identity

    fopts = FitOptions()
    cam = observations[0].camera
    obs = np.stack([np.asarray(o.landmarks, np.float64)[:, :2] for o in observations])
    with torch.inference_mode(), single_thread():
        lmm = LandmarkModel.from_model(model, fopts.n_shape, fopts.n_expr)
        w = landmark_weights(lmm, fopts.contour_weight, fopts.iris_weight)
        proj = Projector(cam.K, cam.viewmat)
        state = fit_identity(lmm, proj, obs, w, fopts)
        uv, _ = proj.project(lmm.points(state.coeffs(), state.pose, state.transl))
        d2 = ((uv.numpy() - obs) ** 2).sum(-1)
        rmse = np.sqrt(d2[:, w > 0].mean(1))
    return to_head_params(state, model, lmm), rmse


def single_identities(model: "HeadModel", observations: list[Any]) -> np.ndarray:
    """(K, n_shape) identity of each view fitted alone (fit.fit_image)."""
    from ..face.fit import fit_image

    return np.stack([fit_image(model, o).params.shape for o in observations])


def identity_spread(singles: np.ndarray) -> float:
    """Spread of per-view identity fits: the median distance of each view's identity coefficients
    to the element-wise median identity, in units of the coefficients' prior (unit variance)."""
    med = np.median(singles, axis=0)
    return float(np.median(np.linalg.norm(singles - med, axis=1)))


def skin_colour(observation: Any) -> np.ndarray:
    """(3,) float64 RGB in [0, 1]: the median over SKIN_LANDMARKS of each patch's median colour in
    the view's 512 crop (medians: a patch on hair, shadow or an occluded far cheek is outvoted)."""
    img = np.asarray(observation.image512)
    lm = np.asarray(observation.landmarks, np.float64)[list(SKIN_LANDMARKS), :2]
    r = SKIN_PATCH_PX
    h, w = img.shape[:2]
    xy = np.round(lm).astype(np.int64)
    xy[:, 0] = np.clip(xy[:, 0], r, w - r - 1)
    xy[:, 1] = np.clip(xy[:, 1], r, h - r - 1)
    offs = np.arange(-r, r + 1)
    ys = xy[:, 1, None, None] + offs[None, :, None]          # (P, 2r+1, 1)
    xs = xy[:, 0, None, None] + offs[None, None, :]          # (P, 1, 2r+1)
    patches = img[ys, xs].reshape(len(xy), -1, 3).astype(np.float64) / 255.0
    return np.median(np.median(patches, axis=1), axis=0)


def skin_spread(colours: np.ndarray) -> float:
    """Spread of the views' skin colours (K, 3): the 75th percentile of each view's chromaticity
    (r, g) / (r + g + b) distance to the element-wise median chromaticity. Chromaticity ignores
    brightness, so a cheek turned out of the light moves it little; another person's skin moves
    it more. The 75th percentile, not the median: a third of the views from another person count."""
    c = np.asarray(colours, np.float64)
    chroma = c[:, :2] / np.maximum(c.sum(axis=1, keepdims=True), 1e-6)
    med = np.median(chroma, axis=0)
    return float(np.percentile(np.linalg.norm(chroma - med, axis=1), 75))


def person_spreads(model: "HeadModel", observations: list[Any], yaw_deg: np.ndarray,
                   pitch_deg: np.ndarray) -> tuple[float | None, float | None]:
    """(identity_spread, skin_spread) of the views within FRONTAL_DEG in yaw and pitch (degrees,
    per view); (None, None) when fewer than 3 are: a single view's identity is only trusted near
    frontal (turned views spread even for one person)."""
    frontal = np.flatnonzero((np.abs(yaw_deg) <= FRONTAL_DEG) & (np.abs(pitch_deg) <= FRONTAL_DEG))
    if len(frontal) < 3:
        return None, None
    judged = [observations[k] for k in frontal]
    return (identity_spread(single_identities(model, judged)),
            skin_spread(np.stack([skin_colour(o) for o in judged])))


def check_one_person(spread: float | None, mv: MultiViewOptions, source: str | Path,
                     skin: float | None = None) -> None:
    """Warn (MixedIdentityWarning) or refuse (InputError naming ``source``) views whose identity
    fits (``spread``) or skin colours (``skin``) spread like different people's; None (too few
    frontal views to judge) passes. Only the identity fits refuse: skin also moves with lighting."""
    reasons = []
    if spread is not None and spread > mv.identity_spread:
        reasons.append(f"identity fits spread {spread:.2f}, one person usually stays below {mv.identity_spread:.2f}")
    if skin is not None and skin > mv.skin_spread:
        reasons.append(f"skin colours spread {skin:.3f}, one person usually stays below {mv.skin_spread:.3f}")
    if not reasons:
        return
    msg = f"the views seem to show different people ({'; '.join(reasons)})"
    if spread is not None and spread > mv.identity_spread_error:
        raise InputError(source, msg + "; use views of one person")
    warnings.warn(f"{source}: {msg}; the avatar may mix them", MixedIdentityWarning, stacklevel=3)


def head_angles_from_params(params) -> tuple[np.ndarray, np.ndarray]:
    """(yaw, pitch) degrees per frame of the head's forward axis after global and neck rotation."""
    from ..rotations import axis_angle_to_matrix

    Rg = axis_angle_to_matrix(np.asarray(params.pose[:, 0], np.float64))
    Rn = axis_angle_to_matrix(np.asarray(params.pose[:, 1], np.float64))
    fwd = (Rg @ Rn)[:, :, 2]
    return np.degrees(np.arctan2(fwd[:, 0], fwd[:, 2])), np.degrees(np.arcsin(np.clip(-fwd[:, 1], -1, 1)))


# ---- fusion ------------------------------------------------------------------------------------

def registration_weights(views: list[View], primary: int | None, scale_px: float | None) -> np.ndarray:
    """(K,) float64 in (0, 1]: each view's say by how well the joint fit registers it,
    exp(-(e / scale_px)^2) with e its landmark RMSE (px) above the primary view's (or the best
    view's without a primary); 1 for the primary, for a view of unknown error (NaN) and when
    ``scale_px`` is None."""
    rmse = np.array([v.rmse_px for v in views], np.float64)
    if scale_px is None or not np.isfinite(rmse).any():
        return np.ones(len(views))
    ref = rmse[primary] if primary is not None and np.isfinite(rmse[primary]) else np.nanmin(rmse)
    excess = np.where(np.isfinite(rmse), np.maximum(rmse - ref, 0.0), 0.0)
    return np.exp(-(excess / float(scale_px)) ** 2)


def view_samples(avatar: GaussianAvatar, model: "HeadModel", view: View, lod: int, tol_m: float,
                 backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Colours (N, 3) float32 the view shows at every Gaussian of ``rest_set(lod)`` and their
    weights (N,) float32 = seen x facing^2 x (sampling resolution relative to the view's head)^2 x
    portrait mask x the frame's own pixels (View.real: none from the padding). Seen: in the image,
    where the render is opaque (alpha > 0.5) and no more than ``tol_m`` behind the rendered
    (expected) depth. Facing: the posed head surface's normal against
    the direction to the camera (a part Gaussian: part_facing)."""
    from ..render.splat import splat
    from .attributes import vertex_normals

    gs = posed_set(avatar, model, view.params, lod)
    cam = view.camera
    res = splat(gs.means, gs.quats, gs.scales, gs.opacities, gs.colors, cam, background=np.zeros(3, np.float32),
                backend=backend)
    depth = res.depth[0].detach().cpu().numpy()
    alpha = res.alpha[0].detach().cpu().numpy()
    uv, z = cam.project(gs.means)
    ok = np.isfinite(uv).all(1) & (uv[:, 0] >= 0) & (uv[:, 1] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] < cam.height)
    uvc = np.where(ok[:, None], uv, 0.0)
    ix = np.clip(uvc[:, 0].astype(np.int64), 0, cam.width - 1)
    iy = np.clip(uvc[:, 1].astype(np.int64), 0, cam.height - 1)
    seen = ok & (alpha[iy, ix] > 0.5) & (z <= depth[iy, ix] + tol_m)
    n_head = len(avatar.lods[lod])
    facing = np.full(len(gs), 0.5, np.float32)
    faces = model_lods(model, [lod])[lod].faces
    normals = vertex_normals(gs.means[:n_head], faces)
    eye = np.linalg.inv(np.asarray(cam.viewmat, np.float64))[:3, 3]
    to_cam = eye[None] - gs.means[:n_head]
    to_cam /= np.linalg.norm(to_cam, axis=1, keepdims=True)
    facing[:n_head] = np.clip((normals * to_cam).sum(1), 0.0, 1.0)
    facing[n_head:] = part_facing(gs.quats[n_head:], gs.scales[n_head:], eye[None] - gs.means[n_head:])
    zref = float(np.median(z[:n_head][np.isfinite(z[:n_head])]))
    resolution = np.clip(zref / np.maximum(z, 1e-6), 0.0, 4.0)
    w = seen * facing ** 2 * resolution ** 2 * bilinear(view.mask, uvc) * bilinear(view.real(), uvc)
    return bilinear(view.image, uvc), np.where(ok, w, 0.0).astype(np.float32)


def part_facing(quats: np.ndarray, scales: np.ndarray, to_cam: np.ndarray) -> np.ndarray:
    """(P,) float32 in [0, 1]: how squarely a view sees each part Gaussian. A flat one (a disc: its
    smallest scale below ``FLAT_RATIO`` of its largest, as the torso's and the hair's fine layer's
    are) faces the view by |cos| between its disc's normal (the smallest scale's axis, from the
    posed ``quats`` (P, 4) w,x,y,z) and ``to_cam`` (P, 3, towards the camera, any length); a round
    one has no surface and counts ``ROUND_FACING``. Seen edge-on, a disc's pixel is the outline's
    mix with the background, which averaged over views as fully as a frontal one's paled the torso's
    sides (the synthetic turn-around, -60 deg: a white band down the back of the neck)."""
    from ..rotations import quat_to_matrix

    out = np.full(len(quats), ROUND_FACING, np.float32)
    if not len(quats):
        return out
    scales = np.abs(np.asarray(scales, np.float64))
    flat = scales.min(1) < FLAT_RATIO * scales.max(1)
    R = quat_to_matrix(np.asarray(quats, np.float64)[flat])                  # (F, 3, 3), columns = axes
    normal = R[np.arange(len(R)), :, np.argmin(scales[flat], axis=1)]
    d = np.asarray(to_cam, np.float64)[flat]
    cos = np.abs((normal * d).sum(1)) / np.maximum(np.linalg.norm(d, axis=1), 1e-12)
    out[flat] = cos.astype(np.float32)
    return out


def primary_hold(avatar: GaussianAvatar, model: "HeadModel", view: View, lod: int, keep_px: float | None,
                 backend: str = "auto") -> np.ndarray | None:
    """(N,) float32 in [0, 1] over ``rest_set(lod)``: how much of each Gaussian the primary
    ``view`` vouches for, its coverage there (pixels, refine.source_coverage) / ``keep_px``,
    clamped; None when ``keep_px`` is None (nothing held)."""
    from .refine import source_coverage

    if keep_px is None:
        return None
    cover = source_coverage(posed_set(avatar, model, view.params, lod), view.camera, backend).numpy()
    return np.clip(cover / max(float(keep_px), 1e-6), 0.0, 1.0).astype(np.float32)


def fuse_views(avatar: GaussianAvatar, model: "HeadModel", views: list[View], mv: MultiViewOptions,
               backend: str = "auto", primary: int | None = None, keep_primary: bool = False) -> dict[str, float]:
    """Recolour every LOD's head Gaussians and the parts from ``views`` in place (see the module
    docstring); view ``primary`` weighs ``mv.primary_weight`` times one other view, the others
    their registration_weights; with ``keep_primary`` (the avatar is the primary's refined
    single-photo build) what the primary sees well keeps its colour (primary_hold with
    ``mv.primary_keep_px``: colour = hold x its own + (1 - hold) x fused). Returns
    {"seen_share": share of the finest LOD's Gaussians some view saw}."""
    finest = max(avatar.levels)
    seen_share = 0.0
    registered = registration_weights(views, primary, mv.registration_px)
    others: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for lod in avatar.levels:
        hold = None if primary is None or not keep_primary else primary_hold(
            avatar, model, views[primary], lod, mv.primary_keep_px, backend)
        acc = np.zeros((avatar.counts()[lod]["total"], 3), np.float64)
        wsum = np.zeros(len(acc), np.float64)
        acc_o, w_o = np.zeros_like(acc), np.zeros_like(wsum)
        for k, v in enumerate(views):
            c, w = view_samples(avatar, model, v, lod, mv.visibility_tol_m, backend)
            w = w * (mv.primary_weight if k == primary else registered[k])
            acc += w[:, None] * c
            wsum += w
            if k != primary:
                acc_o += w[:, None] * c
                w_o += w
        others[lod] = (acc_o / np.maximum(w_o, 1e-12)[:, None], w_o)
        n_head = len(avatar.lods[lod])
        rest = avatar.rest_set(lod)
        fused = (acc + mv.prior_weight * rest.colors) / (wsum + mv.prior_weight)[:, None]
        if hold is not None:
            fused = hold[:, None] * rest.colors + (1.0 - hold[:, None]) * fused
        avatar.lods[lod].colors = fused[:n_head].astype(np.float32)
        if lod == finest:
            for part, sl in zip(avatar.parts, avatar.part_slices(lod).values()):
                part.gaussians.colors = fused[sl].astype(np.float32)
            seen_share = float((wsum > mv.prior_weight).mean())
    fn = len(avatar.lods[finest])
    for lod, view in list(avatar.lod_views.items()):
        col, w = others[lod]
        n_head = len(avatar.lods[lod])
        # the parts took their colours from the finest LOD's views: so do their side colours
        col = np.concatenate([col[:n_head], others[finest][0][fn:]])
        w = np.concatenate([w[:n_head], others[finest][1][fn:]])
        avatar.lod_views[lod] = side_from_views(view, col, w, mv.prior_weight)
    return {"seen_share": seen_share}


def side_from_views(view: ViewColors, colors: np.ndarray, weights: np.ndarray, prior: float) -> ViewColors:
    """``view`` with each row's side colour taken from what the views other than the primary show
    of its Gaussian: ``colors`` (N, 3) their weighted mean and ``weights`` (N,) their summed weight
    (view_samples' seen x facing^2 x ..., over the LOD's Gaussians), blended with the row's own side
    colour (the single photo's fill) by weight / (weight + ``prior``). A side colour is what a view
    turned away from the source direction shows: the primary sees such a Gaussian edge-on (a
    pixel of the outline smeared over it), a turned view squarely. Grow factors stay."""
    w = np.asarray(weights, np.float64)[view.rows]
    share = (w / (w + max(float(prior), 1e-12)))[:, None]
    side = share * np.asarray(colors, np.float64)[view.rows] + (1.0 - share) * view.side
    return replace(view, side=np.clip(side, 0.0, 1.0).astype(np.float32))


def shift_view_colors(avatar: GaussianAvatar, before: dict[int, np.ndarray]) -> None:
    """In place: every LOD's side colours moved by what a refinement changed in their Gaussians'
    own colours (``before``: {lod: (N, 3) rest_set(lod).colors before it}), so a side colour keeps
    its difference from the colour the source direction shows."""
    for lod, view in list(avatar.lod_views.items()):
        delta = avatar.rest_set(lod).colors[view.rows] - before[lod][view.rows]
        avatar.lod_views[lod] = replace(view, side=np.clip(view.side + delta, 0.0, 1.0).astype(np.float32))


def carve_hair(avatar: GaussianAvatar, model: "HeadModel", views: list[View], dilate_px: int = 6,
               primary: int | None = None, backend: str = "auto") -> int:
    """Remove "hair" Gaussians that some view shows outside its (dilated) portrait silhouette: a
    point of the person must project inside the person in every view that frames it. With
    ``primary``, hair the primary view itself shows (coverage of at least ``PRIMARY_SEEN_PX``
    pixels there) is kept: its photo vouches for it, and the other views' silhouettes miss it
    only by tracking error or hair that moved (on clip d12 carving it cost the primary view
    3 dB). Returns the number removed."""
    from scipy.ndimage import maximum_filter

    from .refine import source_coverage

    names = [p.name for p in avatar.parts]
    if "hair" not in names:
        return 0
    lod = min(avatar.levels)
    sl = avatar.part_slices(lod)["hair"]
    keep = np.ones(sl.stop - sl.start, bool)
    vouched = np.zeros_like(keep)
    if primary is not None:
        pv = views[primary]
        cover = source_coverage(posed_set(avatar, model, pv.params, lod), pv.camera, backend).numpy()
        vouched = cover[sl] >= PRIMARY_SEEN_PX
    for v in views:
        means = posed_set(avatar, model, v.params, lod).means[sl]
        uv, _ = v.camera.project(means)
        ok = np.isfinite(uv).all(1) & (uv[:, 0] >= 0) & (uv[:, 1] >= 0) & (uv[:, 0] < v.camera.width) \
            & (uv[:, 1] < v.camera.height)
        wide = maximum_filter(v.mask, size=2 * dilate_px + 1)
        inside = bilinear(wide, np.where(ok[:, None], uv, 0.0)) >= 0.5
        keep &= ~ok | inside
    keep |= vouched
    avatar.replace_part("hair", avatar.part("hair").take(keep), kept=keep)
    return int((~keep).sum())


@dataclass(frozen=True)
class GrowOptions:
    """grow_hair's settings. step_px: gap pixels are taken on a grid this coarse (px of the 512
    view); the new Gaussians' std-dev is ``sigma_ratio`` of that spacing at their depth; depth_near_m /
    depth_far_m / depth_step_m: the ray samples searched, metres before / behind the view's median
    head depth; dilate_px: the views' mattes are dilated this much before a sample must fall inside
    (tracking error); free_tol_m: a sample this far in front of a view's rendered surface (where
    that view's render is opaque) lies in space the view sees through; hidden_px / primary_behind_m:
    in the primary view a sample must lie where the render is opaque (eroded by hidden_px) and at
    least primary_behind_m behind its surface, so its photo, the source frame, keeps its look (with
    the primary's matte dilated and 5 mm in front allowed, as for the other views, the grown hair
    showed at the source frame: clip d12 30.14 -> 28.94 dB, d3 30.14 -> 29.75 dB); reach_m:
    new hair lies at most this far beside, behind or above the box of the hair bound to the head
    (never below it); opacity: the new Gaussians';
    colour_tol / colour_prior_per_m / colour_blur_px: the depth along a gap pixel's ray is where the
    other views agree best with its colour (photo-consistency, grow_depths): among the depths every
    view allows and at least one other view shows as its own gap (the person where the avatar is
    transparent), the one with the least mean |colour difference| (0..1 RGB, images blurred by a
    Gaussian of colour_blur_px) plus colour_prior_per_m per metre away from the middle of the first
    allowed run (the rule without colour: flat colours fall back to it); a ray whose best
    difference is not below colour_tol keeps the middle of the run; colour_tol 0: no colour test."""

    step_px: int = 3
    sigma_ratio: float = 0.6
    depth_near_m: float = 0.10
    depth_far_m: float = 0.20
    depth_step_m: float = 0.003
    dilate_px: int = 4
    free_tol_m: float = 0.005
    hidden_px: int = 3
    primary_behind_m: float = 0.01
    reach_m: float = 0.06
    opacity: float = 0.97
    colour_tol: float = 0.06
    colour_prior_per_m: float = 0.4
    colour_blur_px: float = 1.0


@dataclass
class _ViewState:
    """One view as grow_hair sees it: the avatar's render there and the view's head transform."""

    alpha: np.ndarray      # (H, W) float32 the avatar's render alpha
    depth: np.ndarray      # (H, W) float32 its expected depth (metres, camera z)
    person: np.ndarray     # (H, W) bool the view's matte >= 0.5, dilated by dilate_px
    head: np.ndarray       # (4, 4) float64 rest -> world of a point bound to the head (neck joint)
    gap: np.ndarray | None = None     # (H, W) bool the view's matte >= 0.5 where the render is transparent
    colour: np.ndarray | None = None  # (H, W, 3) float32 the view's image, blurred (grow_depths)


def _view_state(avatar: GaussianAvatar, model: "HeadModel", v: View, lod: int, dilate_px: int,
                backend: str, hidden_px: int = 0, blur_px: float = 0.0) -> _ViewState:
    """With ``hidden_px`` > 0 (the primary view) ``person`` is where the render is opaque, eroded by
    that many px: a sample may only lie hidden behind what the view already shows. blur_px: the
    std-dev of the Gaussian blur of ``colour`` (0: the image as it is)."""
    from scipy.ndimage import binary_dilation, binary_erosion, gaussian_filter

    from ..head.params import HeadParams
    from ..render.splat import splat
    from .posing import part_transforms
    from .skinning import NECK

    gs = posed_set(avatar, model, v.params, lod)
    res = splat(gs.means, gs.quats, gs.scales, gs.opacities, gs.colors, v.camera,
                background=np.zeros(3, np.float32), backend=backend)
    alpha = res.alpha[0].detach().cpu().numpy()
    person = np.asarray(v.mask) >= 0.5
    if hidden_px > 0:
        person = binary_erosion(alpha > 0.5, iterations=int(hidden_px))
    elif dilate_px > 0:
        person = binary_dilation(person, iterations=int(dilate_px))
    A = part_transforms(model, HeadParams(avatar.params.shape, v.params.expr, v.params.pose, v.params.transl))[0]
    image = np.asarray(v.image, np.float32)
    colour = gaussian_filter(image, (blur_px, blur_px, 0)) if blur_px > 0 else image
    return _ViewState(alpha, res.depth[0].detach().cpu().numpy(), person, np.asarray(A[NECK], np.float64),
                      (np.asarray(v.mask) >= 0.5) & (alpha < 0.5), colour)


def hull_free(world_pts: np.ndarray, v: View, st: _ViewState, tol_m: float) -> np.ndarray:
    """(N,) bool: which world points (N, 3) view ``v`` allows to hold the person: outside its image
    (it cannot tell), or inside its dilated matte and not more than ``tol_m`` in front of the
    avatar's rendered surface where that render is opaque (the view sees through that space); a
    negative ``tol_m``: at least that far behind it."""
    cam = v.camera
    uv, z = cam.project(np.asarray(world_pts, np.float32))
    uv = np.nan_to_num(np.asarray(uv, np.float64), nan=-1.0)
    z = np.asarray(z, np.float64)
    framed = (uv[:, 0] >= 0) & (uv[:, 1] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] < cam.height) & (z > 0)
    iu = np.clip(uv[:, 0].astype(np.int64), 0, cam.width - 1)
    iv = np.clip(uv[:, 1].astype(np.int64), 0, cam.height - 1)
    seen_through = (st.alpha[iv, iu] > 0.5) & (z < st.depth[iv, iu] - tol_m)
    return ~framed | (st.person[iv, iu] & ~seen_through)


def colour_costs(rest: np.ndarray, ok: np.ndarray, colour: np.ndarray,
                 others: list[tuple[View, _ViewState]]) -> np.ndarray:
    """(P, D) float64 photo-consistency of ray samples: per ray p (a gap pixel of one view, its
    colour ``colour`` (P, 3)) and depth d, the mean |colour difference| (0..1 RGB, mean over
    channels) against the other views that show the sample as their own gap (inside their image,
    matte and transparent render: the person the avatar does not explain there); NaN where no other
    view shows it or ``ok`` (P, D) bool rules it out. rest: (P, D, 3) the samples in the head's
    rest frame."""
    P, D = ok.shape
    flat = np.flatnonzero(ok.ravel())
    pts = rest.reshape(-1, 3)[flat]
    ref = np.repeat(colour, D, 0)[flat]                                                     # (S, 3)
    best = np.full(len(flat), np.inf)
    for vj, sj in others:
        if sj.gap is None or sj.colour is None:
            continue
        cam = vj.camera
        uv, zc = cam.project((pts @ sj.head[:3, :3].T + sj.head[:3, 3]).astype(np.float32))
        uv = np.nan_to_num(np.asarray(uv, np.float64), nan=-1.0)
        inside = ((uv[:, 0] >= 0) & (uv[:, 1] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] < cam.height)
                  & (np.asarray(zc) > 0))
        iu = np.clip(uv[:, 0].astype(np.int64), 0, cam.width - 1)
        iv = np.clip(uv[:, 1].astype(np.int64), 0, cam.height - 1)
        shows = inside & sj.gap[iv, iu]
        diff = np.abs(sj.colour[iv, iu] - ref).mean(1)
        best = np.minimum(best, np.where(shows, diff, np.inf))
    out = np.full(P * D, np.nan)
    out[flat] = np.where(np.isfinite(best), best, np.nan)
    return out.reshape(P, D)


def grow_depths(ok: np.ndarray, z: np.ndarray, cost: np.ndarray | None, o: GrowOptions) -> np.ndarray:
    """(P,) int: the depth index chosen along each ray. ok: (P, D) bool the samples every view
    allows (each row has one); z: (D,) the samples' depths (metres); cost: (P, D) colour_costs or
    None. Without colour: the middle of the first allowed run (the hull of a few views is wide in
    depth, its front is where the person is least likely to be). With it: the allowed sample of the
    least cost + ``colour_prior_per_m`` * |z - that middle|, where that is below ``colour_tol``."""
    D = ok.shape[1]
    first = np.argmax(ok, axis=1)
    after = np.where(np.arange(D)[None] >= first[:, None], ~ok, False)
    end = np.where(after.any(1), np.argmax(after, axis=1), D)
    middle = (first + end - 1) // 2
    if cost is None:
        return middle
    score = cost + o.colour_prior_per_m * np.abs(z[None] - z[middle][:, None])
    score = np.where(ok & np.isfinite(score), score, np.inf)
    best = np.argmin(score, axis=1)
    agreed = np.take_along_axis(cost, best[:, None], 1)[:, 0] < o.colour_tol      # NaN compares False
    return np.where(agreed, best, middle)


def head_bound_hair(avatar: GaussianAvatar) -> tuple[int, SkinnedPart, np.ndarray] | None:
    """(index of the "hair" part, the part, (M,) bool its Gaussians bound to the head alone: neck
    joint weight >= 0.99), or None without a hair part or without any such Gaussian (hair on the
    shoulders follows the torso: grow_hair and slide_hair leave it be)."""
    from .skinning import NECK

    names = [p.name for p in avatar.parts]
    if "hair" not in names:
        return None
    hi = names.index("hair")
    hair = avatar.parts[hi]
    bound = hair.weights[:, NECK] >= 0.99
    return (hi, hair, bound) if bound.any() else None


def grow_hair(avatar: GaussianAvatar, model: "HeadModel", views: list[View], primary: int | None = None,
              opts: GrowOptions | None = None, backend: str = "auto") -> int:
    """Add hair Gaussians where a view shows the person but the avatar's render there does not
    (its alpha < 0.5 inside the view's matte): hair beyond the one-view hull (the back of the hair a
    turned view shows behind the synthesized shell). Per gap pixel (on a ``step_px`` grid) the ray
    is searched for the samples every view allows (hull_free: inside every framing view's dilated
    matte, and in no view in front of the surface it already sees): the views' visual hull, carved
    also by the avatar's seen surfaces; of those, the depth where the other views that show the
    sample as their own gap agree best with the pixel's colour, else the middle of the first
    allowed run (grow_depths; a hull of a few views is wide in depth). So nothing grows in
    front of what any view shows (the primary view's render, and the source frame, are unchanged
    but where it was already transparent), and nothing where a view shows background.

    The new Gaussians join the "hair" part bound to the head (neck joint), at rest, coloured from the
    gap pixel, isotropic; they grow only within ``reach_m`` of the box of the hair already bound to
    the head and never below it (above the chin: hair on the shoulders follows the torso and moves
    apart from the head).
    View ``primary`` finds no gaps of its own (its photo built the hull). Returns the number added;
    0 without a hair part."""
    from .skinning import NECK

    o = opts or GrowOptions()
    found = head_bound_hair(avatar)
    if found is None or len(views) < 2:
        return 0
    _, hair, bound = found
    # a box around the hair already bound to the head, widened by reach_m (above it: tall hair);
    # a view that does not frame a sample cannot rule it out, and far from the head few views do
    box_lo = hair.gaussians.means[bound].min(0) - np.array([o.reach_m, 0.0, o.reach_m])
    box_hi = hair.gaussians.means[bound].max(0) + o.reach_m
    lod = min(avatar.levels)
    states = [_view_state(avatar, model, v, lod, o.dilate_px, backend, o.hidden_px if k == primary else 0,
                          o.colour_blur_px) for k, v in enumerate(views)]
    depths_rel = np.arange(-o.depth_near_m, o.depth_far_m + 1e-9, o.depth_step_m)           # (D,)
    new_rest, new_col, new_sigma = [], [], []
    for k, (v, st) in enumerate(zip(views, states)):
        if k == primary:
            continue
        cam = v.camera
        H, W = st.alpha.shape
        gap = (np.asarray(v.mask) >= 0.5) & (st.alpha < 0.5)
        grid = np.zeros_like(gap)
        grid[o.step_px // 2::o.step_px, o.step_px // 2::o.step_px] = True
        rows, cols = np.nonzero(gap & grid)
        if len(rows) == 0:
            continue
        z_head = float(np.median(st.depth[st.alpha > 0.5])) if (st.alpha > 0.5).any() else float("nan")
        if not np.isfinite(z_head):
            continue
        z = z_head + depths_rel                                                               # (D,)
        u, w_ = cols + 0.5, rows + 0.5
        # camera-frame samples (P, D, 3) -> world -> head rest frame
        xc = ((u[:, None] - cam.cx) / cam.fx) * z[None]
        yc = ((w_[:, None] - cam.cy) / cam.fy) * z[None]
        pc = np.stack([xc, yc, np.broadcast_to(z[None], xc.shape)], -1).reshape(-1, 3)
        V = np.asarray(cam.viewmat, np.float64)
        world = (pc - V[:3, 3]) @ V[:3, :3]                                                   # R^T (p - t)
        Minv = np.linalg.inv(st.head)
        rest = world @ Minv[:3, :3].T + Minv[:3, 3]
        ok = ((rest >= box_lo) & (rest <= box_hi)).all(1)
        for j, (vj, sj) in enumerate(zip(views, states)):
            if j == k or not ok.any():
                continue
            wj = rest[ok] @ sj.head[:3, :3].T + sj.head[:3, 3]
            tol = -o.primary_behind_m if j == primary else o.free_tol_m
            ok[np.flatnonzero(ok)] = hull_free(wj, vj, sj, tol)
        ok = ok.reshape(len(rows), len(z))
        hit = ok.any(1)
        if not hit.any():
            continue
        cost = None
        if o.colour_tol > 0:
            cost = colour_costs(rest.reshape(len(rows), len(z), 3)[hit], ok[hit], st.colour[rows[hit], cols[hit]],
                                [(vj, sj) for j, (vj, sj) in enumerate(zip(views, states)) if j != k])
        first = grow_depths(ok[hit], z, cost, o)
        sel = np.flatnonzero(hit) * len(z) + first
        new_rest.append(rest[sel])
        new_col.append(np.asarray(v.image, np.float32)[rows[hit], cols[hit]])
        new_sigma.append(o.sigma_ratio * o.step_px * z[first] / cam.fx)
    if not new_rest:
        return 0
    means = np.concatenate(new_rest).astype(np.float32)
    colors = np.clip(np.concatenate(new_col), 0.0, 1.0).astype(np.float32)
    sigma = np.concatenate(new_sigma).astype(np.float32)
    # several views' rays reach the same spot: one Gaussian per cell of the sample spacing
    key = np.round(means / o.depth_step_m).astype(np.int64)
    _, first_idx = np.unique(key, axis=0, return_index=True)
    first_idx = np.sort(first_idx)
    means, colors, sigma = means[first_idx], colors[first_idx], sigma[first_idx]
    n = len(means)
    g = hair.gaussians
    features = None
    if g.features is not None:
        from scipy.spatial import cKDTree

        features = np.concatenate([g.features, g.features[cKDTree(g.means).query(means)[1]]]).astype(np.float32)
    weights = np.zeros((n, hair.weights.shape[1]), np.float32)
    weights[:, NECK] = 1.0
    shapes = {name: np.concatenate([d, np.zeros((n, 3), np.float32)]) for name, d in hair.shapes.items()}
    clamped = {name: ClampedShape(c.start, np.concatenate([c.delta, np.zeros((n, 3), np.float32)]))
               for name, c in hair.clamped.items()}
    # the grown Gaussians follow the old ones: the view data keeps its rows, the later parts' shift
    avatar.replace_part(hair.name, SkinnedPart(hair.name, GaussianSet(
        np.concatenate([g.means, means]), np.concatenate([g.quats, np.tile(np.float32([1, 0, 0, 0]), (n, 1))]),
        np.concatenate([g.scales, np.repeat(sigma[:, None], 3, 1)]).astype(np.float32),
        np.concatenate([g.opacities, np.full(n, o.opacity, np.float32)]),
        np.concatenate([g.colors, colors]), features), np.concatenate([hair.weights, weights]), shapes, clamped))
    return n


@dataclass(frozen=True)
class SlideOptions:
    """slide_hair's settings. reach_m / step_m: the depths searched along the primary view's ray,
    this far before and behind a hair Gaussian's own depth, in steps of step_m (metres); dilate_px:
    the other views' mattes are dilated this much (tracking error) before a point counts inside;
    middle: move to the middle of the best run of depths, else to its nearest end."""

    reach_m: float = 0.04
    step_m: float = 0.004
    dilate_px: int = 4
    middle: bool = True


def slide_hair(avatar: GaussianAvatar, model: "HeadModel", views: list[View], primary: int,
               opts: SlideOptions | None = None, backend: str = "auto") -> int:
    """Move the hair bound to the head along the primary view's rays to the depth that the most
    other views' silhouettes hold. One photo fixes where hair is seen in the image, not how deep
    it lies: the single-photo hull guesses the depth, and turned views then show that hair outside
    the person (where carving would remove it, or, when the primary view shows it, keep it in the
    wrong place). A point moved along a primary ray projects to the same pixel there, and its
    scale grows with its depth, so its footprint in the primary view (the source frame) stays; it
    also keeps its side (in front of or behind) of the head surface the primary view renders, so
    nothing that hid hair there now covers it, or the reverse.

    Per Gaussian (N head-bound hair Gaussians, D = 2 reach_m / step_m + 1 depths): the count of the
    other views whose dilated matte holds the point (a view that does not frame it counts as
    holding it); the nearest depth of the largest count, then (``middle``) the middle of the run of
    depths with that count around it (the hull's edge is where a point is least sure to be: in the
    test, 18 mm from the truth at the edge, 2 mm in the middle). A Gaussian moves only where that
    count exceeds the one at its own depth. Returns the number moved."""
    from scipy.ndimage import binary_dilation

    from ..head.params import HeadParams
    from ..render.splat import splat
    from .posing import part_transforms
    from .skinning import NECK

    o = opts or SlideOptions()
    found = head_bound_hair(avatar)
    if found is None or len(views) < 2:
        return 0
    hi, hair, bound_mask = found
    bound = np.flatnonzero(bound_mask)

    def neck(v: View) -> np.ndarray:
        A = part_transforms(model, HeadParams(avatar.params.shape, v.params.expr, v.params.pose, v.params.transl))[0]
        return np.asarray(A[NECK], np.float64)

    pv = views[primary]
    cam = pv.camera
    V = np.asarray(cam.viewmat, np.float64)
    Ap = neck(pv)
    rest = hair.gaussians.means[bound].astype(np.float64)                                 # (N, 3)
    world = rest @ Ap[:3, :3].T + Ap[:3, 3]
    pc = world @ V[:3, :3].T + V[:3, 3]                                                   # (N, 3) camera frame
    z0 = pc[:, 2]
    offs = np.arange(-o.reach_m, o.reach_m + 1e-9, o.step_m)                              # (D,)
    zs = z0[:, None] + offs[None]                                                         # (N, D)
    valid = zs > 1e-3
    samples = pc[:, None, :] * (np.maximum(zs, 1e-3) / z0[:, None])[..., None]            # (N, D, 3)
    # the primary's head surface (the head mesh's Gaussians, no parts): a Gaussian keeps its side
    lod = min(avatar.levels)
    n_head = len(avatar.lods[lod])
    gs = posed_set(avatar, model, pv.params, lod)
    res = splat(gs.means[:n_head], gs.quats[:n_head], gs.scales[:n_head], gs.opacities[:n_head],
                gs.colors[:n_head], cam, background=np.zeros(3, np.float32), backend=backend)
    h_alpha = res.alpha[0].detach().cpu().numpy()
    h_depth = res.depth[0].detach().cpu().numpy()
    uv, _ = cam.project(world.astype(np.float32))
    uv = np.nan_to_num(np.asarray(uv, np.float64), nan=-1.0)
    iu = np.clip(uv[:, 0].astype(np.int64), 0, cam.width - 1)
    iv = np.clip(uv[:, 1].astype(np.int64), 0, cam.height - 1)
    over = h_alpha[iv, iu] > 0.5
    surf = h_depth[iv, iu]
    valid &= ~over[:, None] | ((zs < surf[:, None]) == (z0 < surf)[:, None])
    # the samples in the head's rest frame, then posed in every other view
    Ainv = np.linalg.inv(Ap)
    w_s = (samples.reshape(-1, 3) - V[:3, 3]) @ V[:3, :3]                                 # R^T (p - t)
    r_s = w_s @ Ainv[:3, :3].T + Ainv[:3, 3]
    count = np.zeros(len(r_s), np.int64)
    for k, v in enumerate(views):
        if k == primary:
            continue
        A = neck(v)
        uvk, zk = v.camera.project((r_s @ A[:3, :3].T + A[:3, 3]).astype(np.float32))
        uvk = np.nan_to_num(np.asarray(uvk, np.float64), nan=-1.0)
        framed = ((uvk[:, 0] >= 0) & (uvk[:, 1] >= 0) & (uvk[:, 0] < v.camera.width)
                  & (uvk[:, 1] < v.camera.height) & (np.asarray(zk) > 0))
        person = binary_dilation(np.asarray(v.mask) >= 0.5, iterations=int(o.dilate_px))
        ju = np.clip(uvk[:, 0].astype(np.int64), 0, v.camera.width - 1)
        jv = np.clip(uvk[:, 1].astype(np.int64), 0, v.camera.height - 1)
        count += ~framed | person[jv, ju]
    count = count.reshape(len(bound), len(offs))
    here = int(np.argmin(np.abs(offs)))
    # most views hold it: the nearest such depth, then the middle of its run of such depths (the
    # edge of a silhouette is where the hull is least sure; the run is the views' hull in depth)
    score = np.where(valid, count - 1e-3 * np.abs(offs)[None], -np.inf)
    near = np.argmax(score, axis=1)
    top = np.where(valid, count, -1) == np.take_along_axis(count, near[:, None], 1)
    D = len(offs)
    ar = np.arange(D)[None]
    before = (ar <= near[:, None]) & ~top
    start = np.where(before.any(1), D - np.argmax(before[:, ::-1], axis=1), 0)
    after = (ar >= near[:, None]) & ~top
    end = np.where(after.any(1), np.argmax(after, axis=1), D)
    best = (start + end - 1) // 2 if o.middle else near
    move = np.take_along_axis(count, near[:, None], 1)[:, 0] > count[:, here]
    if not move.any():
        return 0
    idx = bound[move]
    new_pc = samples[move, best[move]]
    new_rest = (((new_pc - V[:3, 3]) @ V[:3, :3]) @ Ainv[:3, :3].T + Ainv[:3, 3]).astype(np.float32)
    ratio = (zs[move, best[move]] / z0[move]).astype(np.float32)
    g = hair.gaussians
    means, scales = g.means.copy(), g.scales.copy()
    means[idx] = new_rest
    scales[idx] = scales[idx] * ratio[:, None]
    avatar.parts[hi] = replace(hair, gaussians=GaussianSet(means, g.quats, scales, g.opacities, g.colors, g.features))
    return int(move.sum())


# ---- refinement against all views ---------------------------------------------------------------

def downscaled(a: np.ndarray, f: int) -> np.ndarray:
    """(H, W, ...) -> (H // f, W // f, ...) float32 block means (f <= 1: ``a`` as float32)."""
    if f <= 1:
        return np.ascontiguousarray(a, np.float32)
    h, w = a.shape[0] // f, a.shape[1] // f
    return np.ascontiguousarray(a[: h * f, : w * f].reshape(h, f, w, f, *a.shape[2:]).mean((1, 3)), np.float32)


def refine_views(avatar: GaussianAvatar, model: "HeadModel", views: list[View], mv: MultiViewOptions,
                 backend: str = "auto", progress: Progress | None = None, primary: int | None = None,
                 keep_primary: bool = False) -> dict[int, int]:
    """Colours and opacities of every LOD (parts at the finest) refined against all views at once
    with the single photo's whole-portrait terms (refine.refine_views): per view, the render
    against its own alpha times the view's foreground colours over the whole image, and its alpha
    against the view's matte. View ``primary`` counts ``mv.primary_refine_weight`` times in the
    loss and the coverage, the others their registration_weights; a Gaussian no view covers (the
    synthesized back no view saw) stays frozen, and with ``keep_primary`` (the avatar is the
    primary's refined single-photo build) so does what the primary sees well (primary_hold's share
    of each step withheld, ``mv.primary_keep_px``). Positions stay (the views' poses differ, so one world offset would not fit them all).
    The budget ``mv.refine_seconds`` is split over the LODs by Gaussian count. Returns steps per LOD."""
    from ..face.matte import foreground_colors
    from .refine import RefineOptions, RefineView
    from .refine import refine_views as refine_against

    progress = progress or Progress()
    steps: dict[int, int] = {}
    finest = max(avatar.levels)
    total = sum(avatar.counts()[l]["total"] for l in avatar.levels)
    f = max(int(mv.refine_downscale), 1)
    fgs = [downscaled(foreground_colors(v.image, v.mask), f) for v in views]
    images = [downscaled(v.image, f) for v in views]
    mattes = [downscaled(v.mask, f) for v in views]
    cams = [v.camera.resized(m.shape[1], m.shape[0]) if f > 1 else v.camera for v, m in zip(views, mattes)]
    registered = registration_weights(views, primary, mv.registration_px)
    # the colour loss counts a view's own pixels only; the primary's padding is continued as its
    # single-photo build refines it (build.padding_continued)
    ones = np.ones(mattes[0].shape, np.float32)
    weights = [ones if k == primary else downscaled(v.real(), f) for k, v in enumerate(views)]
    before = {lod: avatar.rest_set(lod).colors.copy() for lod in avatar.lod_views}
    for lod in avatar.levels:
        sets = [posed_set(avatar, model, v.params, lod) for v in views]
        targets = [RefineView(cam, img, wmask, matte, fg, s.means, s.quats,
                              mv.primary_refine_weight if k == primary else float(registered[k]), scales=s.scales)
                   for k, (cam, img, wmask, matte, s, fg) in enumerate(zip(cams, images, weights, mattes, sets, fgs))]
        budget = mv.refine_seconds * (mv.views_refine_share if keep_primary else 1.0)
        ropts = RefineOptions(seconds=budget * avatar.counts()[lod]["total"] / total,
                              max_steps=mv.refine_steps, backend=backend,
                              views_per_step=mv.refine_views_per_step)

        def on_step(step: int, frac: float, lod: int = lod) -> None:
            progress.report(frac, f"refining LOD {lod} over {len(views)} views (step {step})")

        # rendered again, not passed down from fuse_views: carve_hair and grow_hair change the
        # Gaussian set between the two, and a grown Gaussian is held as far as the primary covers it
        hold = None if primary is None or not keep_primary else primary_hold(
            avatar, model, views[primary], lod, mv.primary_keep_px, backend)
        res = refine_against(sets[0], None, targets, ropts, on_step, hold=hold)
        n_head = len(avatar.lods[lod])
        avatar.lods[lod].colors = res.colors[:n_head].astype(np.float32)
        avatar.lods[lod].opacities = res.opacities[:n_head].astype(np.float32)
        if lod == finest:
            for part, sl in zip(avatar.parts, avatar.part_slices(lod).values()):
                part.gaussians.colors = plausible_refined_colors(part.name, part.gaussians.colors, res.colors[sl])
                part.gaussians.opacities = res.opacities[sl].astype(np.float32)
        steps[lod] = res.steps
    shift_view_colors(avatar, before)
    return steps


def register_views(avatar: GaussianAvatar, model: "HeadModel", views: list[View], mv: MultiViewOptions,
                   primary: int, backend: str = "auto", progress: Progress | None = None) -> list[View]:
    """Per-view camera refinement before fusion: every view but the primary gets the small rigid
    correction (refine.refine_views with ``register``; colours and opacities held) under which the
    primary's avatar at the coarsest LOD best matches that view's photo and matte where both show
    the person, folded into the view's camera (viewmat @ transform). Returns the views with their
    corrected cameras (the primary's unchanged); ``mv.register_seconds`` 0 returns them as given.
    The correction records how far each view moved: View.registered_deg / registered_mm."""
    from ..face.matte import foreground_colors
    from ..render.camera import Camera
    from .refine import RefineOptions, RefineView
    from .refine import refine_views as refine_against

    if mv.register_seconds <= 0 or mv.register_steps <= 0 or len(views) < 2:
        return views
    progress = progress or Progress()
    lod = min(avatar.levels)
    sets = [posed_set(avatar, model, v.params, lod) for v in views]
    f = max(int(mv.register_downscale), 1)

    def small(a: np.ndarray) -> np.ndarray:
        return downscaled(a, f)

    # the primary view has nothing to register and the colours are held: only the others render,
    # all of them every step (each view's correction learns only from its own render)
    others = [k for k in range(len(views)) if k != primary]
    targets = []
    for k in others:
        v, s = views[k], sets[k]
        mask = small(v.mask)
        cam = v.camera.resized(mask.shape[1], mask.shape[0])
        targets.append(RefineView(cam, small(v.image), small(v.real()), mask,
                                  small(foreground_colors(v.image, v.mask)), s.means, s.quats, register=True,
                                  scales=s.scales))
    # no SSIM term: its pooled maps cost a quarter of a step here (7 views at 256 px) and the L1
    # and silhouette terms already place the head
    ropts = RefineOptions(seconds=mv.register_seconds, max_steps=mv.register_steps, backend=backend,
                          lr_color=0.0, lr_opacity=0.0, views_per_step=None, ssim_weight=0.0)

    def on_step(step: int, frac: float) -> None:
        progress.report(frac, f"registering {len(others)} views (step {step})")

    res = refine_against(sets[primary], None, targets, ropts, on_step)
    transforms = {k: res.view_transforms[j] for j, k in enumerate(others)}
    out = []
    for k, v in enumerate(views):
        if k == primary:
            out.append(v)
            continue
        M = transforms[k]
        cam = Camera(v.camera.K, np.asarray(v.camera.viewmat, np.float64) @ M, v.camera.width, v.camera.height)
        angle = float(np.degrees(np.arccos(np.clip((np.trace(M[:3, :3]) - 1) / 2, -1.0, 1.0))))
        c = sets[k].means.mean(0).astype(np.float64)
        moved = float(np.linalg.norm(M[:3, :3] @ c + M[:3, 3] - c) * 1e3)
        out.append(replace(v, camera=cam, registered_deg=angle, registered_mm=moved))
    return out


# ---- the whole build ----------------------------------------------------------------------------

def build_from_views(inputs: list[str | Path], options: "BuildOptions | None" = None,
                     mv: MultiViewOptions | None = None, progress: Progress | None = None) -> "BuildResult":
    """Build one avatar from a clip (one path) or several photos (paths) of one person.

    Raises InputError naming the input for: no face in any frame, fewer usable views than
    ``mv.min_views``, views of different people (identity fits spread beyond
    ``mv.identity_spread_error``). Warns (MixedIdentityWarning) when the skin colours or identity
    fits spread less but still like different people's, (FewerViewsWarning) when a clip offers
    fewer distinct views than asked.
    """
    from ..face.fit import FitResult
    from ..head.loader import load_head_model
    from ..head.params import HeadParams
    from .build import BuildOptions, build_avatar, padding_continued

    opts = options or BuildOptions()
    mv = mv or MultiViewOptions()
    progress = progress or Progress()
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("build_from_views needs at least one input")
    if opts.method != "analytic":
        raise InputError(opts.checkpoint, "the multi-view build is analytic: build from one photo to use a "
                                          "learned checkpoint")
    if mv.views < mv.min_views:
        raise InputError(None, f"--views must be at least {mv.min_views} for a multi-view build, got {mv.views}")
    for p in paths:
        if not p.exists():
            raise InputError(p, "file not found")
    clip = len(paths) == 1 and is_video(paths[0])
    if not clip and any(is_video(p) for p in paths):
        raise InputError(next(p for p in paths if is_video(p)), "give either one clip or several photos, not both")
    start, end = mv.views_from
    if not clip and (start, end) != (0, None):
        raise InputError(None, f"--views-from {start}:{'' if end is None else end} picks frames of a clip: give "
                               "one clip, or leave it out for photos (every photo is a view)")
    outside = mv.anchor_frame is not None and (mv.anchor_frame < start or (end is not None and mv.anchor_frame > end))
    if clip and outside:
        raise InputError(paths[0], f"--anchor {mv.anchor_frame} lies outside the frames views are picked from "
                                   f"({start}..{'the last' if end is None else end})")
    if not clip and mv.anchor_frame is not None and not 0 <= mv.anchor_frame < len(paths):
        raise InputError(None, f"--anchor {mv.anchor_frame}: give the position of one of the {len(paths)} photos "
                               f"(0..{len(paths) - 1})")
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    model = load_head_model(opts.head_model)

    t = time.perf_counter()
    images = _clip_images(paths[0], model, mv, progress) if clip else [(p.name, p) for p in paths]
    seconds["views"] = time.perf_counter() - t
    t = time.perf_counter()
    analysed = _analyze(images, clip, progress)
    seconds["detect"] = time.perf_counter() - t
    source = paths[0] if clip else paths[0].parent
    if len(analysed) < mv.min_views:
        raise InputError(source, f"only {len(analysed)} usable view(s) with a face (at least {mv.min_views} "
                                 f"needed for a multi-view build; build from one photo instead)")
    if clip and len(analysed) < mv.views:
        warnings.warn(f"{paths[0]}: {len(analysed)} distinct usable views found (asked for {mv.views})",
                      FewerViewsWarning, stacklevel=2)

    t = time.perf_counter()
    progress.report(0.22, f"fitting one identity over {len(analysed)} views")
    params, rmse = fit_views(model, [o for _, o in analysed])
    yaw, pitch = head_angles_from_params(params)
    spread, skin = person_spreads(model, [o for _, o in analysed], yaw, pitch)
    check_one_person(spread, mv, source, skin)
    seconds["fit"] = time.perf_counter() - t
    # each view's padding (past its frame's edges) continues its own texture, as a single photo's
    # build does (build.padding_continued): fusion and refinement see no streaks of edge pixels
    views = [View(label, padding_continued(to_float(o.image512), o, np.asarray(o.mask, np.float32)),
                  np.asarray(o.mask, np.float32), params.frame(k), o.camera,
                  float(yaw[k]), float(pitch[k]), float(rmse[k]), o)
             for k, (label, o) in enumerate(analysed)]
    primary = int(np.argmin(np.hypot(yaw, pitch)))
    if clip and mv.anchor_frame is not None:
        labels = [label for label, _ in analysed]
        anchor = _frame_label(paths[0], mv.anchor_frame)
        if anchor in labels:
            primary = labels.index(anchor)
        else:
            warnings.warn(f"{paths[0]}: frame {mv.anchor_frame} shows no usable face; the build is anchored on "
                          f"the most frontal view instead", FewerViewsWarning, stacklevel=2)
    elif mv.anchor_frame is not None:
        primary = mv.anchor_frame  # photos: every one was analysed (a failure raised), in order

    t = time.perf_counter()
    pv = views[primary]
    fit = FitResult(params=pv.params, camera=pv.camera, rmse_px=float(rmse[primary]),
                    mean_error_px=float(rmse[primary]), seconds=0.0)
    refining = mv.refine_seconds > 0 and mv.refine_steps > 0 and opts.refine is not False
    # the primary's own build is its frame's single-photo build, refined as that would be (the
    # source frame no worse than the single photo), with the multi-view budget (seconds and steps)
    single_opts = replace(opts, refine=opts.refine if refining and mv.primary_refine else False,
                          refine_seconds=mv.refine_seconds, refine_steps=min(opts.refine_steps, mv.refine_steps),
                          metrics=False)
    result = build_avatar(None, single_opts, _scaled(progress, 0.25, 0.6), prepared=(pv.observation, fit, pv.label))
    seconds["build"] = time.perf_counter() - t
    avatar = result.avatar

    t = time.perf_counter()
    if refining:  # registration is refinement too: a build without refinement skips it
        views = register_views(avatar, model, views, mv, primary, opts.render_backend, _scaled(progress, 0.6, 0.65))
        seconds["register"] = time.perf_counter() - t
    slid = 0
    if mv.slide:
        t = time.perf_counter()
        # as with carving, a misregistered view's silhouette is its own error
        keepers = registration_weights(views, primary, mv.registration_px) >= 0.5
        slid = slide_hair(avatar, model, [v for v, ok in zip(views, keepers) if ok],
                          int(keepers[:primary].sum()), backend=opts.render_backend)
        seconds["slide"] = time.perf_counter() - t
    t = time.perf_counter()
    progress.report(0.65, f"fusing {len(views)} views")
    kept = bool(any(result.refine_steps.values()))  # the primary's single-photo refinement ran
    fused = fuse_views(avatar, model, views, mv, opts.render_backend, primary, keep_primary=kept)
    seconds["fuse"] = time.perf_counter() - t
    t = time.perf_counter()
    # a misregistered view's silhouette would carve the hair it misses by its own error
    carvers = registration_weights(views, primary, mv.registration_px) >= 0.5
    carved = 0 if not mv.carve else carve_hair(
        avatar, model, [v for v, ok in zip(views, carvers) if ok],
        primary=int(carvers[:primary].sum()),  # the primary's own weight is 1
        backend=opts.render_backend)
    seconds["carve"] = time.perf_counter() - t
    grown = 0
    if mv.grow:
        t = time.perf_counter()
        progress.report(0.68, f"growing hair the {len(views)} views show")
        # as with carving, a misregistered view's gaps are its own error
        grown = grow_hair(avatar, model, [v for v, ok in zip(views, carvers) if ok],
                          primary=int(carvers[:primary].sum()), backend=opts.render_backend)
        seconds["grow"] = time.perf_counter() - t
    steps = {l: 0 for l in avatar.levels}
    if refining and (not kept or mv.views_refine_share > 0):
        t = time.perf_counter()
        steps = refine_views(avatar, model, views, mv, opts.render_backend, _scaled(progress, 0.7, 1.0), primary,
                             keep_primary=kept)
        seconds["refine"] = time.perf_counter() - t
    primary_steps = dict(result.refine_steps)
    avatar.options["refined"] = bool(any(steps.values()) or any(primary_steps.values()))
    avatar.options["views"] = [{"label": v.label, "yaw_deg": round(v.yaw_deg, 2), "pitch_deg": round(v.pitch_deg, 2),
                                "rmse_px": round(v.rmse_px, 3), "primary": k == primary,
                                "registered_deg": round(v.registered_deg, 2),
                                "registered_mm": round(v.registered_mm, 2)}
                               for k, v in enumerate(views)]
    avatar.options["multiview"] = {"source": source.name, "seen_share": fused["seen_share"],
                                   "hair_carved": carved, "hair_grown": grown, "hair_slid": slid,
                                   "primary_refine_steps": {str(l): n for l, n in primary_steps.items()},
                                   "identity_spread": spread,
                                   "skin_spread": skin}
    seconds["total"] = time.perf_counter() - t_start
    result.seconds = seconds
    result.refine_steps = steps
    result.photo_name = paths[0].stem if clip else f"{paths[0].stem}+{len(paths) - 1}"
    progress.report(1.0, "done")
    return result
