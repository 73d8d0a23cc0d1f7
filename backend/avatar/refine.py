"""Per-photo refinement: a short photometric optimisation with the differentiable splatter.

Starting from the analytic avatar at the source pose, Adam adjusts per-Gaussian colours, opacities
(as logits) and small head position offsets (L2-penalised, clamped to ``max_offset_m``) so that the
render at the source camera matches the photo inside the portrait mask, and (``alpha_weight``)
its alpha matches the portrait mask over the whole image: every Gaussian (head and parts: hair,
body, mouth, eyes) is refined against the whole portrait, not the face.

With ``foreground`` (the person's own colour, face.matte.foreground_colors) the colour term is the
whole portrait's, split the way a matte splits a photo: the render (over black) against its own
alpha times the foreground colour, over the whole image, and the alpha against the matte. Colours
then learn the person's colour even where the photo mixes in the background (no halo of background
colour at the silhouette, no darkened edge colours either), and only opacities answer for the
silhouette; together they bound the error against the cut-out person (matte * foreground over
black, what the eval scores). Gaussians the source view
does not cover (the synthesized back and sides) get no step (coverage-scaled updates), so the
refinement never undoes the synthesized texture. Stops at ``max_steps`` or
when ``seconds`` of wall time are used, whichever comes first. Only appearance and a tiny geometry
nudge change: scales and rotations stay those of the mesh so novel views keep their coverage.

Several views (refine_views) may also register: a view marked ``register`` gets a small rigid
correction of its posed Gaussians (a rotation about their centroid and a shift, Adam-optimised
with the rest, clamped to ``max_view_rotation`` / ``max_view_translation``), returned as a world
transform the caller folds into the view's camera (a head moved by M seen by camera V is the head
seen by V @ M): the joint landmark fit places each view's head only as well as mediapipe's
landmarks do, and a view misplaced by a few degrees paints its colours onto the wrong Gaussians.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from .gaussians import GaussianSet
from .ssim_loss import ssim_loss

if TYPE_CHECKING:
    from ..render.camera import Camera


@dataclass
class RefineOptions:
    seconds: float = 20.0          # wall-time budget
    max_steps: int = 300
    lr_color: float = 0.02
    lr_opacity: float = 0.05
    lr_offset: float = 2e-4        # metres per step (Adam's step size)
    max_offset_m: float = 0.003    # offsets are clamped to +/- this per axis
    offset_weight: float = 1e3     # L2 penalty on offsets (per m^2, mean over Gaussians)
    ssim_weight: float = 0.2       # loss = (1 - w) L1 + w (1 - SSIM) over the mask
    alpha_weight: float = 0.2      # + this * mean |render alpha - portrait mask| over the image
    full_trust_px: float = 4.0     # a Gaussian covering this many source pixels (sum of alpha*T) moves freely
    # the same for the colours alone (None: full_trust_px): at LOD 2 most Gaussians cover 1-2
    # source pixels, so with 4 px their colours took a quarter to a half of each step and of the
    # solve (photo_refine_options); opacities and offsets keep full_trust_px (they shape the
    # silhouette)
    color_trust_px: float | None = None
    backend: str = "auto"
    # torch's intra-op threads while refining on the CPU (None: leave as is). One: the splatter's
    # numba kernels already use every core, and with two threads torch's OpenMP barriers made a
    # step 2-3x slower once other work shared the 2 cores (docs/figures/loop.md).
    cpu_torch_threads: int | None = 1
    # several views (refine_views): render this many per step, the heaviest view every step and
    # the others in turn (None: all every step). A step costs about one render per view, so with
    # 8 views and a budget of seconds, all of them every step leaves only a few steps.
    views_per_step: int | None = None
    # per-view registration (RefineView.register): Adam step sizes of the rigid correction
    # (radians, metres per step) and its bounds (rotation angle, shift per axis)
    lr_view_rotation: float = 6e-3
    lr_view_translation: float = 8e-4
    max_view_rotation: float = 0.15
    max_view_translation: float = 0.02
    # closed-form start: this many preconditioned conjugate-gradient iterations solve the colours
    # for the L2 colour term at the starting opacities and positions (the render is linear in the
    # colours: a weighted least squares over every Gaussian at once, each iteration one render and
    # one backward pass) before the Adam steps; 0: Adam alone. Each Gaussian takes its share
    # (coverage / full_trust_px, clamped to 1) of the solved change, as with the Adam steps;
    # color_ridge_px pulls each colour towards its start with the weight of this many fully
    # covered pixels (it keeps the barely covered ones' solve well conditioned)
    color_solve_iters: int = 0
    # learning rates follow a cosine from their value down to lr_decay times it over the run
    # (progress: the larger of steps / max_steps and seconds / budget); 1: constant
    lr_decay: float = 1.0
    color_ridge_px: float = 0.5
    # the colour solve's own trust (None: the colours' trust, color_trust_px): each Gaussian takes
    # its coverage / solve_trust_px (clamped to 1) of its solved change
    solve_trust_px: float | None = None
    # keep a snapshot of colours, opacities and offsets every this many steps (0: none) for
    # convergence curves (bench refine); the copies' time is left out of RefineResult.seconds
    trace_every: int = 0
    # focus steps (one view): after every full step, this many steps render only the crop around
    # the view's focus region (RefineView.focus: the face), grown by focus_margin_px: cheaper steps
    # where the detail is
    focus_steps: int = 0
    focus_margin_px: int = 16
    # Adam's moment decay rates (beta1, beta2; torch's defaults). A short run does better with less
    # momentum: at beta1 0.9 a step still carries a tenth of its gradient 22 steps on, and the fast
    # path's whole run is about 60 steps (photo_refine_options)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    # the offsets' L2 penalty (per m^2, mean over Gaussians) at the start of the run (None:
    # offset_weight throughout); it eases to offset_weight on a cosine over the run (progress as for
    # lr_decay): the first steps, while colours and opacities are still far off, then move the
    # offsets little, and the last ones may move them freely
    offset_weight_start: float | None = None
    # colours trusted only as far as the views show each Gaussian itself (None: not at all): its
    # colour trust is scaled by its visible share (coverage / unoccluded footprint, source_footprint)
    # over this share, clamped to 1. A Gaussian behind the surface that a view shows through the
    # surface's transmittance (the synthesized back of the head, the body's far side) covers a
    # fraction of a pixel of a footprint of tens: with colours trusted from 0.25 px it took its
    # whole solved change and showed it from behind (photo_refine_options)
    color_visible_share: float | None = None


@dataclass
class RefineResult:
    colors: np.ndarray             # (N, 3)
    opacities: np.ndarray          # (N,)
    offsets: np.ndarray            # (N, 3) world offsets at the source pose (zero where frozen)
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    # wall seconds per phase of the steps: forward (splat), loss, backward, update (Adam + trust);
    # "solve": the colour solve; "focus": the focus steps' share of the four phases
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # (K, 4, 4) float64 world transforms found for the views (identity where not registered;
    # None for one view not registered): the view's camera becomes viewmat @ transform
    view_transforms: np.ndarray | None = None
    # with RefineOptions.trace_every: (step, seconds, colors (N, 3), opacities (N,), offsets (N, 3))
    # after that many steps (step 0: the start), seconds of refinement wall time up to then
    trace: list[tuple[int, float, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)


def photo_refine_options(seconds: float, max_steps: int, backend: str = "auto") -> RefineOptions:
    """The fast refinement of a single photo (the build's, build.refine_avatar; bench refine
    --converge's fast path): the colour solve first (4 conjugate-gradient iterations, at most half
    the budget), then Adam with less momentum (beta1 0.7), the colour step doubled (0.04), opacity
    steps of 0.8 (logits) and rates decaying on a cosine to 0.03 of their start over the run
    (``seconds`` or ``max_steps``, whichever ends it first); colours trusted from 0.25 px of coverage
    and a twentieth of their footprint shown (``color_visible_share``: what the view sees only through
    the surface, the synthesized back of the head, keeps its colour), opacities and offsets from 1 px;
    an offset penalty that eases from 3e4 to 1e2 over the run; with a focus region
    (RefineView.focus: the face), three focus steps after every full step.

    Each choice and what it was measured against (the 300-step Adam reference, RefineOptions'
    defaults) is in docs/figures/loop.md, "Refinement"."""
    return RefineOptions(seconds=seconds, max_steps=max_steps, backend=backend, color_solve_iters=4,
                         color_trust_px=0.25, full_trust_px=1.0, lr_color=0.04, lr_opacity=0.8, lr_decay=0.03,
                         adam_betas=(0.7, 0.999), offset_weight=1e2, offset_weight_start=3e4, focus_steps=3,
                         focus_margin_px=8, color_visible_share=0.05)


def source_coverage(gs: GaussianSet, camera: "Camera", backend: str = "auto") -> torch.Tensor:
    """(N,) float32: each Gaussian's total compositing weight in the source view, in pixels.

    The render is linear in the features, so the gradient of the summed one-channel image with
    respect to a Gaussian's feature is the sum over pixels of its weight alpha * T.
    """
    from ..render.splat import splat

    ones = torch.ones(len(gs.means), 1, requires_grad=True)
    res = splat(torch.from_numpy(gs.means), torch.from_numpy(gs.quats), torch.from_numpy(gs.scales),
                torch.from_numpy(gs.opacities), ones, camera, background=torch.zeros(1), backend=backend, depth=False)
    res.image.sum().backward()
    return ones.grad[:, 0].detach().cpu()


def source_footprint(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
                     cameras: "Camera | list[Camera]", eps2d: float = 0.3) -> torch.Tensor:
    """(K, N) float32: each Gaussian's compositing weight summed over the image plane as if nothing
    were in front of it (transmittance 1), in pixels: the coverage (source_coverage) it would have
    unoccluded, so coverage / footprint is the share of it that a view shows.

    means (N, 3) | (K, N, 3) world metres, quats (N, 4) | (K, N, 4) wxyz, scales (N, 3) | (K, N, 3)
    metres, opacities (N,), one camera or K. The splatter's alpha is opacity x exp(-sigma) cut off below
    1/255, so the integral over the ellipse sigma < ln(255 opacity) is 2 pi sqrt(det cov2d)
    (opacity - 1/255), cov2d with the EWA filter ``eps2d``; the 0.99 cap on alpha and the image's
    borders are left out (a Gaussian partly off the image gets a smaller share). Culled: 0.
    """
    from ..render.projection import ALPHA_THRESHOLD, project_gaussians
    from ..render.splat_data import camera_tensors

    cams = list(cameras) if isinstance(cameras, (list, tuple)) else [cameras]
    K = len(cams)
    m, q, s, op = (torch.as_tensor(x, dtype=torch.float32) for x in (means, quats, scales, opacities))
    m = (m.expand(K, *m.shape) if m.dim() == 2 else m).contiguous()                   # (K, N, 3)
    q = (q.expand(K, *q.shape) if q.dim() == 2 else q).contiguous()                   # (K, N, 4)
    s = (s.expand(K, *s.shape) if s.dim() == 2 else s).contiguous()                   # (K, N, 3)
    op = op.expand(K, len(op)).contiguous()                                           # (K, N)
    viewmats, Ks = camera_tensors(cams, "cpu")
    with torch.no_grad():
        proj = project_gaussians(m, q, s, viewmats, Ks, cams[0].width, cams[0].height, opacities=op, eps2d=eps2d)
        a, b, c = proj.conics.double().unbind(-1)                    # (K, N): the inverse covariance
        inv_det = (a * c - b * b).clamp(min=1e-300)
        foot = 2.0 * math.pi / inv_det.sqrt() * (op.double() - ALPHA_THRESHOLD).clamp(min=0.0)
        foot = torch.where((proj.radii > 0).any(-1), foot, torch.zeros_like(foot))
    return foot.float()


def behind_head_middle(means: np.ndarray, camera: "Camera", head: np.ndarray) -> np.ndarray:
    """(N,) bool: the Gaussians (means (N, 3) world metres) whose centre lies at or behind the
    plane parallel to ``camera``'s image plane halfway through the depth of the head's Gaussians
    (``head`` (N,) bool marks them): the back of the head, the body's far side, the back half of
    the hair, which other views show (refine_views' ``share_held``)."""
    means = np.asarray(means, np.float64).reshape(-1, 3)
    head = np.asarray(head, bool).reshape(-1)
    if len(head) != len(means) or not head.any():
        raise ValueError(f"head marks {int(head.sum())} of {len(head)} rows for {len(means)} Gaussians; "
                         "it must mark at least one")
    depth = means @ np.asarray(camera.viewmat, np.float64)[2, :3] + float(camera.viewmat[2, 3])   # (N,) metres
    middle = 0.5 * (depth[head].min() + depth[head].max())
    return depth >= middle


@dataclass
class RefineView:
    """One view the refinement matches (shapes for N Gaussians, an H x W image).

    means (N, 3) / quats (N, 4) float32: the Gaussians posed for this view (world metres, wxyz);
    None: the refined set's own. camera: the view's Camera. photo (H, W, 3) float32 [0, 1]: the
    colour target where ``foreground`` is None. mask (H, W) float32: colour-loss weights (ones: the
    whole image). portrait (H, W) float32 [0, 1]: the alpha target (None: ``mask``). foreground
    (H, W, 3) float32 [0, 1] or None: the person's own colour (face.matte.foreground_colors); when
    given, the colour target is the render's own alpha (no gradient) times it. weight: this view's
    say in the loss and in the coverage that frees Gaussians (a primary view may weigh more).
    register: optimise a rigid correction of this view's pose too (RefineResult.view_transforms).
    scales (N, 3) float32 metres: the Gaussians' sizes in this view (a frame's per-frame growth,
    posed.posed_set); None: the refined set's own."""

    camera: "Camera"
    photo: np.ndarray
    mask: np.ndarray
    portrait: np.ndarray | None = None
    foreground: np.ndarray | None = None
    means: np.ndarray | None = None
    quats: np.ndarray | None = None
    weight: float = 1.0
    register: bool = False
    focus: np.ndarray | None = None
    scales: np.ndarray | None = None


@dataclass
class _Focus:
    """The crop the focus steps render: box (y0, y1, x0, x1) pixels of the view, camera its own."""

    box: tuple[int, int, int, int]
    camera: "Camera"
    ids: torch.Tensor | None = None   # (M,) int64: the Gaussians that may show in the crop (None: all)


def _focus_crop(view: RefineView, opts: RefineOptions) -> "_Focus | None":
    """The view's focus region's bounding box grown by ``opts.focus_margin_px`` and rounded out to
    the splatter's 16-pixel tiles, with a camera that renders exactly those pixels (the principal
    point shifted); None without a focus region or when the box is the whole image."""
    from ..render.camera import Camera

    if view.focus is None or not np.any(view.focus):
        return None
    H, W = view.focus.shape
    rows, cols = np.flatnonzero(np.any(view.focus, 1)), np.flatnonzero(np.any(view.focus, 0))
    mg, tile = int(opts.focus_margin_px), 16
    y0, x0 = max(0, (rows[0] - mg) // tile * tile), max(0, (cols[0] - mg) // tile * tile)
    y1, x1 = min(H, -(-(rows[-1] + 1 + mg) // tile) * tile), min(W, -(-(cols[-1] + 1 + mg) // tile) * tile)
    if (y0, y1, x0, x1) == (0, H, 0, W):
        return None
    K = view.camera.K.copy()
    K[0, 2] -= x0
    K[1, 2] -= y0
    return _Focus((int(y0), int(y1), int(x0), int(x1)), Camera(K, view.camera.viewmat, int(x1 - x0), int(y1 - y0)))


def _focus_ids(focus: _Focus, means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
               opts: RefineOptions, movable: np.ndarray | None) -> torch.Tensor:
    """(M,) int64 ascending: the Gaussians (N; means (N, 3), quats (N, 4), scales (N, 3)) whose
    footprint at full opacity (the widest the 1/255 cut-off allows) reaches the crop grown by how
    far an offset (``opts.max_offset_m`` per axis) can move a centre at the nearest depth, plus two
    pixels: the others cannot show in the crop during the refinement."""
    from ..render.camera import Camera
    from ..render.splat import splat

    cam = focus.camera
    depth = means.double() @ torch.from_numpy(cam.viewmat[2, :3]).double() + float(cam.viewmat[2, 3])
    near = float(depth[depth > 0].min()) if bool((depth > 0).any()) else 1.0
    moves = movable is not None and bool(np.any(movable))
    pad = int(math.ceil((math.sqrt(3.0) * opts.max_offset_m if moves else 0.0) * max(cam.fx, cam.fy) / near)) + 2
    K = cam.K.copy()
    K[0, 2] += pad
    K[1, 2] += pad
    grown = Camera(K, cam.viewmat, cam.width + 2 * pad, cam.height + 2 * pad)
    with torch.no_grad():
        res = splat(means, quats, scales, torch.ones(len(means)), torch.zeros(len(means), 1), grown,
                    backend="cpu", depth=False)
    return torch.from_numpy(np.flatnonzero((res.radii[0] > 0).any(-1).numpy()).astype(np.int64))


def refine(gs: GaussianSet, movable: np.ndarray, photo: np.ndarray, mask: np.ndarray, camera: "Camera",
           opts: "RefineOptions | None" = None, on_step: Callable[[int, float], None] | None = None,
           portrait: np.ndarray | None = None, foreground: np.ndarray | None = None,
           keep_colors: np.ndarray | None = None, focus: np.ndarray | None = None,
           share_held: np.ndarray | None = None) -> RefineResult:
    """Optimise ``gs`` (world frame, source pose) against one photo: :func:`refine_views` with one
    view (see it for the arguments; ``focus``: RefineView.focus)."""
    view = RefineView(camera, photo, mask, portrait, foreground, focus=focus)
    return refine_views(gs, movable, [view], opts, on_step, keep_colors, share_held=share_held)


def refine_views(gs: GaussianSet, movable: np.ndarray | None, views: "list[RefineView]",
                 opts: "RefineOptions | None" = None,
                 on_step: Callable[[int, float], None] | None = None,
                 keep_colors: np.ndarray | None = None, hold: np.ndarray | None = None,
                 share_held: np.ndarray | None = None) -> RefineResult:
    """Optimise ``gs``'s colours and opacities (and, with ``movable``, small offsets) against all
    ``views`` at once: every step renders the K views in one (batched) splat. On the CPU, torch
    runs with ``opts.cpu_torch_threads`` intra-op threads meanwhile.

    movable (N,) bool or None (nothing moves): Gaussians allowed to move; the offsets are world
    offsets shared by the views, so give it only where the views share one pose (one view).
    on_step(step, fraction_of_budget) is called after every step (progress / cancellation).
    keep_colors (N,) bool or None: Gaussians whose colours stay as given (left out of the colour
    solve and the steps), for colours meant for another expression than the views': the upper-lid
    skin a blink pulls over the eye (eyes.eyelid_vertices' lids and "around" set) overlaps the dark
    lash line at the source view, grown by the blink's stretch, and fitted there a blink showed a
    dark lid (docs/figures/loop.md).
    hold (N,) float in [0, 1] or None: the share of each Gaussian's change (colours, opacities,
    offsets) withheld, on top of its coverage (1: it stays as given, and its colour is a constant
    of the colour solve): what a multi-view build's primary view already sees well stays its own
    (multiview.primary_hold).
    share_held (N,) bool or None (all): the Gaussians whose colour trust ``opts.color_visible_share``
    scales; the others are trusted by their coverage alone. One photo's build holds only what lies
    behind the head's middle (behind_head_middle): the synthesized back of the head and the body's
    far side, which other views show, and not the inner layers of the hair or the head's own
    Gaussians the view shows through the surface in front, which no other view shows better.
    """
    from ..render.splat import select_backend

    opts = opts or RefineOptions()
    if not views:
        raise ValueError("refine_views needs at least one view")
    backend = select_backend(opts.backend)
    threads = opts.cpu_torch_threads if backend == "cpu" else None
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        if math.isfinite(opts.seconds):
            _warm_kernels(backend, movable is not None, views, opts)
        return _refine(gs, movable, views, opts, on_step, keep_colors, hold, share_held)
    finally:
        if threads:
            torch.set_num_threads(before)


_WARM: set[tuple[str, bool, int, bool]] = set()


def _warm_kernels(backend: str, moving: bool, views: "list[RefineView]", opts: RefineOptions) -> None:
    """One step of the same refinement on a tiny scene (three Gaussians, 16x16 views), once per
    process and kind of refinement, before a time budget starts: the first refinement after an
    install compiles the splat's forward and backward and the SSIM kernels (about a minute on the
    2-core development machine), which inside the budget left a fresh install's first build one
    or two steps (d12's frame 0 with a 10 s budget: 49.8 s of refinement). Warm, the step takes
    milliseconds. It also gives a process's first refinement the budget its later ones get (the
    same 4-step refinement of the astronaut's LOD 0 run twice in a fresh process: 2.37 / 2.24 s with
    the warm-up, 4.38 / 2.25 s without it and numba's cache warm; tests/avatar/test_refine.py)."""
    from ..render.camera import Camera

    key = (backend, moving, min(len(views), 2), any(v.register for v in views))
    if key in _WARM:
        return
    _WARM.add(key)
    cam = Camera.look_at((0.0, 0.0, 1.0), width=16, height=16)
    tiny = GaussianSet(np.array([[-0.05, -0.05, 0.0], [0.05, -0.05, 0.0], [0.0, 0.05, 0.0]], np.float32),
                       np.tile(np.array([[1.0, 0.0, 0.0, 0.0]], np.float32), (3, 1)),
                       np.full((3, 3), 0.03, np.float32), np.full(3, 0.8, np.float32),
                       np.full((3, 3), 0.5, np.float32))
    img = np.full((16, 16, 3), 0.4, np.float32)
    ones = np.ones((16, 16), np.float32)
    small = [RefineView(cam, img, ones, ones, img, weight=v.weight, register=v.register) for v in views[:2]]
    try:
        _refine(tiny, np.ones(3, bool) if moving else None, small,
                replace(opts, max_steps=1, seconds=float("inf"), trace_every=0), None)
    except Exception:  # noqa: BLE001 - a warm-up only: the real refinement reports its own errors
        pass


def _stack(arrays: "list[np.ndarray]", transpose: tuple[int, ...] | None = None) -> torch.Tensor:
    out = np.stack([np.asarray(a, np.float32) if transpose is None else np.asarray(a, np.float32).transpose(transpose)
                    for a in arrays])
    return torch.from_numpy(np.ascontiguousarray(out))


def _refine(gs: GaussianSet, movable: np.ndarray | None, views: "list[RefineView]", opts: RefineOptions,
            on_step: Callable[[int, float], None] | None = None,
            keep_colors: np.ndarray | None = None, hold: np.ndarray | None = None,
            share_held: np.ndarray | None = None) -> RefineResult:
    """The optimisation of :func:`refine_views`.

    Per view k: colour loss (1 - ssim_weight) L1 + ssim_weight (1 - SSIM) weighted by mask_k x
    weight_k, normalised over all views; alpha loss: the weight-averaged mean |alpha_k -
    portrait_k|. A Gaussian's Adam step is scaled by its coverage summed over the views
    (sum_k weight_k x coverage_k / full_trust_px, clamped to 1): what no view covers stays frozen.
    """
    from ..render.splat import splat

    t0 = time.perf_counter()
    K = len(views)
    vw = torch.tensor([float(v.weight) for v in views], dtype=torch.float32)              # (K,)
    target = _stack([v.photo if v.foreground is None else v.foreground for v in views], (2, 0, 1))  # (K, 3, H, W)
    use_fg = torch.tensor([v.foreground is not None for v in views])[:, None, None, None]   # (K, 1, 1, 1)
    w = _stack([np.asarray(v.mask, np.float32) * np.float32(v.weight) for v in views])[:, None]  # (K, 1, H, W)
    wsum = w.sum().clamp(min=1.0) * 3
    a_target = _stack([v.mask if v.portrait is None else v.portrait for v in views])      # (K, H, W)
    batched = K > 1 or views[0].register  # a view to register: its rigid correction needs the (K, N, 3) path
    view_scales = [gs.scales if v.scales is None else np.asarray(v.scales, np.float32) for v in views]
    if not batched:  # the single-photo refinement: unbatched render, as it always was
        means0 = torch.from_numpy(gs.means if views[0].means is None else views[0].means)
        quats = torch.from_numpy(gs.quats if views[0].quats is None else views[0].quats)
        scales = torch.from_numpy(view_scales[0])
        cams = views[0].camera
    else:
        means0 = _stack([gs.means if v.means is None else v.means for v in views])          # (K, N, 3)
        quats = _stack([gs.quats if v.quats is None else v.quats for v in views])          # (K, N, 4)
        # (K, N, 3) where a view has sizes of its own, else the set's (N, 3) for every view
        scales = (torch.from_numpy(gs.scales) if all(v.scales is None for v in views) else _stack(view_scales))
        cams = [v.camera for v in views]
    colors = torch.from_numpy(gs.colors.copy()).requires_grad_(True)
    op = np.clip(gs.opacities, 1e-4, 1 - 1e-4)
    op_logit = torch.from_numpy(np.log(op) - np.log1p(-op)).requires_grad_(True)
    offsets = torch.zeros(len(gs.means), 3, requires_grad=True)
    # per-view rigid correction (registration): rotation vector and shift, rows of views not
    # registered held at zero
    reg = torch.tensor([[float(v.register)] for v in views])                                 # (K, 1)
    registering = bool(reg.any())
    rotvec = torch.zeros(K, 3, requires_grad=True)
    shift = torch.zeros(K, 3, requires_grad=True)
    pivot = means0.mean(-2, keepdim=True) if batched else None   # (K, 1, 3): each view's centroid
    mov = torch.from_numpy(np.zeros(len(gs.means), np.float32) if movable is None
                           else np.asarray(movable, np.float32))[:, None]
    # Adam steps every parameter by about its learning rate however small its gradient, so Gaussians
    # the views barely show (grazing angles, the closed mouth's interior, the synthesized back no
    # view saw) would drift to arbitrary colours; each Gaussian's step is scaled by how much of the
    # views it covers.
    cover = None
    appearance = opts.lr_color > 0 or opts.lr_opacity > 0 or movable is not None
    solving = opts.color_solve_iters > 0 and opts.lr_color > 0
    clock = time.perf_counter
    stages = {"forward": 0.0, "loss": 0.0, "backward": 0.0, "update": 0.0}
    solved = None
    free = None if hold is None else torch.from_numpy(1.0 - np.clip(np.asarray(hold, np.float32), 0.0, 1.0))
    fixed = None if keep_colors is None else np.asarray(keep_colors, bool)
    if hold is not None:
        fixed = (np.zeros(len(gs.means), bool) if fixed is None else fixed) | (np.asarray(hold) >= 1.0)
    if solving:
        # the colour solve's first pass also gives the coverage (one more channel)
        tp = clock()
        with torch.no_grad():
            solved, cover = _solve_colors(
                lambda f: splat(means0, quats, scales, torch.sigmoid(op_logit), f, cams,
                                background=torch.zeros(f.shape[-1]), backend=opts.backend, depth=False),
                colors.detach(), target, use_fg, w, vw, opts.color_ridge_px, opts.color_solve_iters,
                deadline=t0 + SOLVE_SHARE * opts.seconds,
                fixed=None if fixed is None else torch.from_numpy(fixed))
        stages["solve"] = clock() - tp
    for v, vs in zip(views, view_scales) if appearance and not solving else ():  # registration alone moves none
        c = source_coverage(replace(gs, means=gs.means if v.means is None else v.means,
                                    quats=gs.quats if v.quats is None else v.quats, scales=vs), v.camera, opts.backend)
        c = c if v.weight == 1.0 else float(v.weight) * c
        cover = c if cover is None else cover + c
    seen_share = None
    if opts.color_visible_share is not None and cover is not None:
        # the views' weighted coverage over their weighted unoccluded footprints (source_footprint)
        foot = (source_footprint(means0, quats, scales, torch.sigmoid(op_logit).detach(), cams) * vw[:, None]).sum(0)
        seen_share = torch.where(foot > 0, cover / foot.clamp(min=1e-12), torch.zeros_like(cover))
        if share_held is not None:  # the others: full share, trusted by their coverage alone
            held = torch.from_numpy(np.asarray(share_held, bool).reshape(-1))
            if len(held) != len(gs.means):
                raise ValueError(f"share_held has {len(held)} rows for {len(gs.means)} Gaussians")
            seen_share = torch.where(held, seen_share, torch.full_like(seen_share, math.inf))

    def trust_from(px: float, colours: bool = False) -> torch.Tensor:
        """(N,) each Gaussian's coverage / px, clamped to [0, 1], less what ``hold`` withholds;
        kept colours get none, and with ``opts.color_visible_share`` colours get only the share
        their visible share earns."""
        t = (cover / px).clamp(0.0, 1.0) if cover is not None else torch.zeros(len(gs.means))
        if free is not None:
            t = t * free
        if colours and keep_colors is not None:
            t = t * torch.from_numpy(~np.asarray(keep_colors, bool)).to(t.dtype)
        if colours and seen_share is not None:
            t = t * (seen_share / opts.color_visible_share).clamp(0.0, 1.0)
        return t

    trust = trust_from(opts.full_trust_px)
    trust_c = trust_from(opts.full_trust_px if opts.color_trust_px is None else opts.color_trust_px, colours=True)
    if solved is not None:
        with torch.no_grad():
            # coverage-scaled like the Adam steps: a Gaussian covering fewer than full_trust_px
            # pixels takes that share of its solved change (the ridge alone let the eyelids, hidden
            # behind the eyeball at rest but for a pixel or so, take the iris's colour: a blink
            # then showed the iris; with it they still do, see photo_refine_options)
            trust_s = trust_c if opts.solve_trust_px is None else trust_from(opts.solve_trust_px, colours=True)
            colors.copy_(colors + trust_s[:, None] * (solved - colors))
    optim = torch.optim.Adam([
        {"params": [colors], "lr": opts.lr_color},
        {"params": [op_logit], "lr": opts.lr_opacity},
        {"params": [offsets], "lr": opts.lr_offset},
        {"params": [rotvec], "lr": opts.lr_view_rotation if registering else 0.0},
        {"params": [shift], "lr": opts.lr_view_translation if registering else 0.0},
    ], betas=opts.adam_betas)
    base_lrs = [g["lr"] for g in optim.param_groups]
    bg = torch.zeros(3)
    losses: list[float] = []
    step = 0
    # at least one step once asked to refine (the first also pays for any kernel compilation)
    m = opts.views_per_step
    heavy = int(torch.argmax(vw))
    others = [k for k in range(K) if k != heavy]
    full = (means0, quats, cams, target, use_fg, w, wsum, a_target, vw)
    focus = _focus_crop(views[0], opts) if opts.focus_steps > 0 and not batched else None
    if focus is not None:
        focus.ids = _focus_ids(focus, means0, quats, scales, opts, movable)
    n_pixels = float(a_target.shape[-1] * a_target.shape[-2])
    trace: list[tuple[int, float, np.ndarray, np.ndarray, np.ndarray]] = []
    paused = 0.0   # seconds spent on trace snapshots, not refinement

    def snapshot() -> None:
        nonlocal paused
        ts = clock()
        with torch.no_grad():
            trace.append((step, ts - t0 - paused, colors.numpy().copy(), torch.sigmoid(op_logit).numpy().copy(),
                          (offsets * mov).numpy().copy()))
        paused += clock() - ts

    if opts.trace_every > 0:
        snapshot()
    while step < opts.max_steps and (step == 0 or time.perf_counter() - t0 - paused < opts.seconds):
        optim.zero_grad(set_to_none=True)
        ow = opts.offset_weight
        if opts.lr_decay != 1.0 or opts.offset_weight_start is not None:
            progress = min(1.0, max(step / opts.max_steps, (clock() - t0 - paused) / opts.seconds))
            f = opts.lr_decay + (1.0 - opts.lr_decay) * 0.5 * (1.0 + math.cos(math.pi * progress))
            if opts.lr_decay != 1.0:
                for group, lr in zip(optim.param_groups, base_lrs):
                    group["lr"] = lr * f
            if opts.offset_weight_start is not None:
                ease = 0.5 * (1.0 + math.cos(math.pi * progress))   # 1 -> 0 over the run
                ow = opts.offset_weight + (opts.offset_weight_start - opts.offset_weight) * ease
        tp = ts = clock()
        if registering:
            means_r, quats_r = _registered(means0, quats, pivot, rotvec * reg, shift * reg)
        else:
            means_r, quats_r = means0, quats
        cropped = focus is not None and step % (1 + opts.focus_steps) != 0
        if cropped:  # a focus step: only the crop's pixels, weighted as in a full step
            y0, y1, x0, x1 = focus.box
            means_s, quats_s, cams_s, vw_s = means_r, quats_r, focus.camera, vw
            target_s, fg_s = target[..., y0:y1, x0:x1], use_fg
            w_s, wsum_s, a_s = w[..., y0:y1, x0:x1], wsum, a_target[..., y0:y1, x0:x1]
        elif m is not None and 1 <= m < K:
            pick = [heavy] + [others[(step * (m - 1) + j) % len(others)] for j in range(m - 1)]
            ix = torch.tensor(pick)
            means_s, quats_s, cams_s = means_r[ix], quats_r[ix], [cams[k] for k in pick]
            scales_s = scales[ix] if scales.dim() == 3 else scales
            target_s, fg_s, w_s, a_s, vw_s = target[ix], use_fg[ix], w[ix], a_target[ix], vw[ix]
            wsum_s = w_s.sum().clamp(min=1.0) * 3
        else:
            means_s, quats_s, cams_s, target_s, fg_s, w_s, wsum_s, a_s, vw_s = full
            means_s, quats_s, scales_s = means_r, quats_r, scales
        if cropped:  # only the Gaussians that may show in the crop: the step's cost follows the crop
            sel = focus.ids
            res = splat(means_s[sel] + offsets[sel] * mov[sel], quats_s[sel], scales[sel],
                        torch.sigmoid(op_logit[sel]), colors[sel], cams_s, background=bg, backend=opts.backend,
                        depth=False)
        else:  # no depth channel: the loss never reads it (the same image and gradients, bit for bit)
            res = splat(means_s + offsets * mov, quats_s, scales_s, torch.sigmoid(op_logit), colors, cams_s,
                        background=bg, backend=opts.backend, depth=False)
        img = res.image.cpu() if res.image.device.type != "cpu" else res.image   # (K, 3, H, W)
        alpha = res.alpha.cpu() if res.alpha.device.type != "cpu" else res.alpha   # (K, H, W)
        stages["forward"] += clock() - tp
        tp = clock()
        tgt = torch.where(fg_s, target_s * alpha.detach()[:, None], target_s)
        l1 = ((img - tgt).abs() * w_s).sum() / wsum_s
        loss = (1 - opts.ssim_weight) * l1
        if opts.ssim_weight > 0:
            # the fused kernel (ssim_loss.py): equal to autograd through ssim_map_reference, 4-8x faster
            loss = loss + opts.ssim_weight * ssim_loss(img, tgt, w_s) / wsum_s
        if opts.alpha_weight > 0:
            da = (alpha - a_s).abs()
            if cropped:
                loss = loss + opts.alpha_weight * da.sum() / n_pixels
            else:
                loss = loss + opts.alpha_weight * (da.mean() if not batched else
                                                   (da.mean((1, 2)) * vw_s).sum() / vw_s.sum())
        loss = loss + ow * (offsets * mov).pow(2).sum(1).mean()
        stages["loss"] += clock() - tp
        tp = clock()
        loss.backward()
        stages["backward"] += clock() - tp
        tp = clock()
        before = [colors.detach().clone(), op_logit.detach().clone(), offsets.detach().clone()]
        # a focus step moves only the Gaussians the crop shows (Adam's momentum would move the rest)
        seen = (colors.grad != 0).any(1) | (op_logit.grad != 0) if cropped else None
        optim.step()
        with torch.no_grad():
            for param, old, tr in zip((colors, op_logit, offsets), before, (trust_c, trust, trust)):
                tr = tr if seen is None else tr * seen
                t = tr if param.dim() == 1 else tr[:, None]
                param.copy_(old + t * (param - old))
            colors.clamp_(0.0, 1.0)
            offsets.clamp_(-opts.max_offset_m, opts.max_offset_m)
            if registering:
                angle = rotvec.norm(dim=1, keepdim=True)
                rotvec.mul_((opts.max_view_rotation / angle.clamp(min=opts.max_view_rotation)))
                shift.clamp_(-opts.max_view_translation, opts.max_view_translation)
        losses.append(loss.item())
        stages["update"] += clock() - tp
        if cropped:  # their share of the four phases above
            stages["focus"] = stages.get("focus", 0.0) + clock() - ts
        step += 1
        if opts.trace_every > 0 and (step % opts.trace_every == 0 or step == opts.max_steps):
            snapshot()
        if on_step is not None:
            on_step(step, min(1.0, max(step / opts.max_steps, (time.perf_counter() - t0 - paused) / opts.seconds)))
    with torch.no_grad():
        transforms = None if not batched else _transforms((rotvec * reg).double(), (shift * reg).double(),
                                                     pivot.double())
        return RefineResult(colors.numpy().copy(), torch.sigmoid(op_logit).numpy().copy(),
                            (offsets * mov).numpy().copy(), step, time.perf_counter() - t0 - paused, losses,
                            stages, transforms, trace)


COVER_EPS_PX = 1e-3   # a Gaussian with less coverage than this (pixels) is left out of the colour solve
SOLVE_SHARE = 0.5     # the colour solve stops its iterations after this share of the time budget


def _solve_colors(render: Callable[[torch.Tensor], "object"], c0: torch.Tensor, target: torch.Tensor,
                  use_fg: torch.Tensor, w: torch.Tensor, vw: torch.Tensor, ridge: float, iters: int,
                  deadline: float = float("inf"), fixed: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(colours (N, 3) in [0, 1], coverage (N,) pixels): the colours minimising
    sum_p w_p |render_p(c) - t_p|^2 + ridge |c - c0|^2, by ``iters`` preconditioned
    conjugate-gradient iterations from ``c0`` (fewer once time.perf_counter() passes ``deadline``),
    and each Gaussian's coverage summed over the views with weights ``vw`` (as source_coverage).

    render(features (N, C)) -> SplatResult of K views (image (K, C, H, W), alpha (K, H, W)) at fixed
    geometry and opacities: the image is J @ features, J (K*H*W, N) the compositing weights
    alpha_i * T_i. Products with J^T come from a backward pass of the render (a vector-Jacobian
    product), so J is never formed. target (K, 3, H, W); use_fg (K, 1, 1, 1) bool: that view's t is
    target * the render's alpha (the matte split, refine.py), else target; w (K, 1, H, W) pixel
    weights; vw (K,) view weights. Gaussians covering less than COVER_EPS_PX, and those ``fixed``
    (N,) bool marks, keep c0 (the others' solve sees them at c0).
    The preconditioner is the row sum of J^T W J, sum_p w_p J_pi alpha_p (>= its diagonal), plus
    the ridge; it and the coverage are two more channels of the first pass.
    """
    def jt(feats: torch.Tensor, grad_of_image: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
           ) -> torch.Tensor:
        """J^T grad_of_image(J feats, alpha) for feats (N, C)."""
        with torch.enable_grad():
            f = feats.detach().requires_grad_(True)
            res = render(f)
            (g,) = torch.autograd.grad(res.image, f,
                                       grad_outputs=grad_of_image(res.image.detach(), res.alpha.detach()))
        return g

    n = len(c0)

    def first(img: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        t = torch.where(use_fg, target * alpha[:, None], target)           # (K, 3, H, W)
        views = vw[:, None, None, None].expand_as(alpha[:, None])          # (K, 1, H, W)
        return torch.cat([w * (t - img[:, :3]), w * alpha[:, None], views], 1)   # (K, 5, H, W)

    g = jt(torch.cat([c0, torch.zeros(n, 2)], 1), first)
    cover = g[:, 4].clone()
    act = (cover > COVER_EPS_PX).to(c0.dtype)[:, None]                     # (N, 1)
    if fixed is not None:
        act = act * (~fixed).to(c0.dtype)[:, None]
    r = g[:, :3] * act                                                     # J^T W (t - J c0)
    m_inv = act / (g[:, 3:4] + ridge).clamp(min=1e-12)                     # (N, 1)
    x = c0.clone()
    z = r * m_inv
    p = z.clone()
    rz = (r * z).sum()
    for _ in range(iters):
        if rz <= 0 or time.perf_counter() > deadline:
            break
        ap = (jt(p, lambda img, alpha: w * img) + ridge * p) * act
        pap = (p * ap).sum()
        if pap <= 0:
            break
        a = rz / pap
        x = x + a * p
        r = r - a * ap
        z = r * m_inv
        rz_new = (r * z).sum()
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x.clamp(0.0, 1.0), cover


def _registered(means: torch.Tensor, quats: torch.Tensor, pivot: torch.Tensor, rotvec: torch.Tensor,
                shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each view's Gaussians moved rigidly: means (K, N, 3) rotated by rotvec (K, 3) radians about
    pivot (K, 1, 3) and shifted by shift (K, 3) metres; quats (K, N, 4) wxyz turned alike."""
    from ..rotations import axis_angle_to_matrix_torch, axis_angle_to_quat_torch, quat_multiply_torch

    R = axis_angle_to_matrix_torch(rotvec)                                     # (K, 3, 3)
    moved = (means - pivot) @ R.transpose(1, 2) + pivot + shift[:, None]        # (K, N, 3)
    turned = quat_multiply_torch(axis_angle_to_quat_torch(rotvec)[:, None], quats)  # (K, N, 4)
    return moved, turned


def _transforms(rotvec: torch.Tensor, shift: torch.Tensor, pivot: torch.Tensor) -> np.ndarray:
    """(K, 4, 4) float64 world transforms x -> R (x - p) + p + t of :func:`_registered`."""
    from ..rotations import axis_angle_to_matrix_torch

    R = axis_angle_to_matrix_torch(rotvec)                       # (K, 3, 3)
    p = pivot[:, 0]                                              # (K, 3)
    M = torch.eye(4, dtype=torch.float64).repeat(len(R), 1, 1)
    M[:, :3, :3] = R
    M[:, :3, 3] = p + shift - (R @ p[:, :, None])[:, :, 0]
    return M.numpy()
