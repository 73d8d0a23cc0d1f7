"""Photo -> GaussianAvatar: the build pipeline (analytic by default, learned when a checkpoint is given).

Stages (timed in ``BuildResult.seconds``):
  load        photo and head model
  detect      face detection, 512 crop, landmarks, portrait mask (backend.face)
  fit         head-model fit to the landmarks -> HeadParams + source camera (backend.face)
  sampling    per LOD: subdivided rest mesh, Gaussian attributes from geometry, HPFS + OAFF colours
  parts       hair volume and torso shell from the portrait mask (avatar.portrait), the mouth
              interior (mouth.py) and the eyeballs (eyes.py), coloured from the photo; analytic
              builds make them on a second thread while sampling runs, so this stage's time is
              only the wait for them after sampling
  metrics     source-view face PSNR/SSIM per LOD (before and after refinement)
  refine      optional photometric refinement with the differentiable splatter
The learned path (issue 7) replaces sampling by a reconstructor the caller passes in
(``backend.model.reconstruct_avatar``; the model package sits above this one and is never imported here)
and keeps the same hair volume, torso, mouth and eye parts.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..blas_threads import limit_new_blas, single_blas_thread
from ..errors import InputError
from ..face.matte import foreground_colors
from ..image_metrics import hull_mask, psnr, ssim
from ..progress import Progress
from .attributes import (AttributeOptions, capped_stretch, geometry_attributes, mean_edge_length, unique_edges,
                         vertex_normals)
from .gaussians import GaussianAvatar, GaussianSet, SkinnedPart
from .imageops import to_float
from .posed import posed_set
from .posing import lbs_numpy, model_lods, rotate_blended, shaped_vertices
from .refine import RefineOptions, behind_head_middle, photo_refine_options, refine
from .regions import CHIN, NOSE_TIP
from .silhouette import MatteFields, SilhouetteOptions, fit_avatar_to_matte
from .sample_portrait import SAMPLE_NAME, sample_photo
from .synthesis import FACE_OVAL
from .sampling import (SamplingOptions, jaw_edge_stretch, lip_stretch, mirror_indices, mouth_interior,
                       region_laplacian, sample_colors, vertex_max_stretch, vertex_regions)
from .portrait import PortraitOptions, portrait_parts
from .eyes import EyeOptions, expression_stretch, eyelid_vertices
from .interior import interior_parts
from .landmark_detail import LandmarkDetailOptions, landmark_detail, prepared_spread
from .mouth import MouthOptions, plausible_refined_colors
from .view_colors import MAX_GROW, ViewColors, source_toward, view_frames_torch

if TYPE_CHECKING:
    import scipy.sparse as sp

    from ..head.lod import LOD
    from ..head.model import HeadModel
    from ..render.camera import Camera

METHODS = ("analytic", "learned")


@dataclass
class BuildOptions:
    """What to build and how. ``refine=None`` = automatic: refine when the splatter is fast enough
    for at least ``min_refine_steps`` steps within ``refine_seconds`` (estimated from one render)."""

    lods: tuple[int, ...] = (0, 1, 2)
    head_model: str | None = None          # None -> bundled stand-in
    method: str = "analytic"               # "analytic" | "learned"
    checkpoint: str | None = None          # learned OMG weights (method "learned")
    dinov2: str | None = None              # DINOv2 weights (method "learned")
    refine: bool | None = None
    refine_seconds: float = 30.0           # total budget, split over the LODs by Gaussian count
    refine_steps: int = 300                # per LOD
    min_refine_steps: int = 3              # even 2-4 steps gain several dB (docs/figures/avatar.md)
    render_backend: str = "auto"
    metrics: bool = True
    fit_silhouette: bool = True            # carve/shrink Gaussians beyond the portrait matte (silhouette.py)
    attributes: AttributeOptions = field(default_factory=AttributeOptions)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    portrait: PortraitOptions = field(default_factory=PortraitOptions)   # hair volume and torso
    mouth: MouthOptions = field(default_factory=MouthOptions)
    eyes: EyeOptions = field(default_factory=EyeOptions)
    detail: LandmarkDetailOptions = field(default_factory=LandmarkDetailOptions)  # geometry onto the paint
    # the share of the photo refinement's colour change a head Gaussian keeps seen from a turned view
    # (view_colors.py: beyond FAR_DEG of the source direction; the source view keeps all of it)
    turned_refined_share: float = 0.0
    # the parts whose Gaussians take back the refinement's colour change the same way (the hair keeps
    # only HairOptions.refined_share of it at the source view: overlapping layers fitted as one)
    turned_refined_parts: tuple[str, ...] = ("hair",)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["lods"] = list(self.lods)
        return d


@dataclass
class BuildResult:
    """avatar; model (the HeadModel used); observation (FaceObservation); fit (FitResult);
    seconds: per stage plus ``total``; metrics: {lod: {psnr_face, ssim_face, psnr_face_raw,
    ssim_face_raw}} (raw = before refinement); refine_steps: {lod: steps run}; photo_name."""

    avatar: GaussianAvatar
    model: "HeadModel"
    observation: Any
    fit: Any
    seconds: dict[str, float]
    metrics: dict[int, dict[str, float]]
    refine_steps: dict[int, int]
    photo_name: str

    def figures(self) -> dict[str, Any]:
        """The ``--json`` figures: gaussians, seconds, psnr_face, ssim_face (per LOD)."""
        return {
            "photo": self.photo_name,
            "head_model": self.avatar.head_model_name,
            "method": self.avatar.method,
            "gaussians": {str(l): c for l, c in self.avatar.counts().items()},
            "seconds": self.seconds,
            "psnr_face": {str(l): m.get("psnr_face") for l, m in self.metrics.items()},
            "ssim_face": {str(l): m.get("ssim_face") for l, m in self.metrics.items()},
            "psnr_face_unrefined": {str(l): m.get("psnr_face_raw") for l, m in self.metrics.items()},
            "ssim_face_unrefined": {str(l): m.get("ssim_face_raw") for l, m in self.metrics.items()},
            "refine_steps": {str(l): s for l, s in self.refine_steps.items()},
            "fit_rmse_px": float(getattr(self.fit, "rmse_px", float("nan"))),
        }


def render_source(avatar: GaussianAvatar, model: "HeadModel", lod: int, camera: "Camera | None" = None,
                  params=None, background=(0.0, 0.0, 0.0), backend: str = "auto"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Render ``lod`` at ``params`` (default: the source frame) -> image (H, W, 3), alpha (H, W)."""
    from ..render.splat import splat

    gs = posed_set(avatar, model, avatar.params if params is None else params, lod)
    cam = avatar.camera if camera is None else camera
    res = splat(gs.means, gs.quats, gs.scales, gs.opacities, gs.colors, cam,
                background=np.asarray(background, np.float32), backend=backend)
    img = res.image[0].detach().cpu().numpy().transpose(1, 2, 0)
    return np.clip(img, 0.0, 1.0), res.alpha[0].detach().cpu().numpy()


def _resolve_photo(photo) -> tuple[Any, str]:
    """path | LoadedImage | (H, W, 3) array | None (-> bundled sample) -> (input for analyze, name)."""
    from ..face.image import image_from_array, load_image

    if photo is None:
        return image_from_array(sample_photo()), SAMPLE_NAME
    if isinstance(photo, np.ndarray):
        return image_from_array(photo), "array"
    if isinstance(photo, (str, Path)):
        return load_image(photo), Path(photo).stem
    return photo, Path(getattr(photo, "path", None) or "photo").stem


def padding_continued(photo512: np.ndarray, obs, mask: np.ndarray) -> np.ndarray:
    """(512, 512, 3) float32: the crop ``photo512`` with its padding below the chin (where the crop
    reached past the photo's edges, filled there by repeating the edge pixels) continued from the
    person's real pixels below the chin (texture.continue_padding): a body cut off by the photo's
    edge is built from its own texture mirrored, not from vertical streaks of its last row. The
    build samples, refines and measures this image; the head and hair above the chin keep the
    crop as it is. obs: the FaceObservation (its crop and landmarks); mask (512, 512) the matte."""
    from ..face.crop import source_coverage
    from .texture import continue_padding

    real = source_coverage(obs.crop)
    if real.all():
        return photo512
    below = (np.arange(mask.shape[0]) + 0.5 > float(obs.landmarks[CHIN, 1]))[:, None]
    person = mask >= 0.5
    source = person & below
    out = continue_padding(photo512, real, source)
    # only the person's padding changes: the background's stays as the matte was made on it
    return np.where((below & ~real & (mask > 0.0))[..., None], out, photo512).astype(np.float32)


def _face_metrics(avatar, model, lods, photo, face_mask, backend) -> tuple[dict[int, dict[str, float]], dict[int, float]]:
    out, secs = {}, {}
    for l in lods:
        t0 = time.perf_counter()
        img, _ = render_source(avatar, model, l, backend=backend)
        secs[l] = time.perf_counter() - t0
        out[l] = {"psnr_face": float(psnr(img, photo, face_mask)), "ssim_face": float(ssim(img, photo, face_mask))}
    return out, secs


def _import_sampling_modules() -> None:
    """Import what the sampling imports on first use (scipy.spatial's k-d tree, about 0.2 s of CPU,
    and the sparse solvers), on the kernel preload thread while the main thread detects the face.
    Neither imports a module the detection imports (mediapipe, cv2, scipy.ndimage), so the two
    threads never wait on each other's imports."""
    import scipy.sparse.linalg  # noqa: F401
    import scipy.spatial  # noqa: F401

    limit_new_blas()  # scipy's own OpenBLAS loaded just now: one thread, as numpy's (blas_threads.py)


def _exact_splat_needed(opts: BuildOptions) -> bool:
    """Whether a build renders with the exact splat kernels (source-view metrics, refinement or
    the automatic refinement's timing renders): the previews use the 8-lane kernel, so a build
    without either does not preload the exact ones (render.preload)."""
    return bool(opts.metrics) or opts.refine is not False


@dataclass
class LevelTopology:
    """What the sampling of one LOD needs that depends on the head model's topology alone:
    edges (E, 2) int64 (unique_edges), regions (V_l,) int8 (vertex_regions), laplacian (V_l, V_l)
    (region_laplacian of the two)."""

    edges: np.ndarray
    regions: np.ndarray
    laplacian: "sp.csr_matrix"


def level_topology(model: "HeadModel", lod: "LOD") -> LevelTopology:
    """LevelTopology of one of ``model``'s LODs."""
    edges = unique_edges(lod.faces)
    regions = vertex_regions(model, lod.upsample)
    return LevelTopology(edges, regions, region_laplacian(edges, regions))


def head_topology(model: "HeadModel", levels: list[int]) -> dict[int, LevelTopology]:
    """{level: LevelTopology} for ``levels`` and LOD 0 (analytic_head always samples it): the
    photo-independent part of the head sampling, made while the head model is fitted."""
    work = sorted(set(levels) | {0})
    return {l: level_topology(model, lod) for l, lod in model_lods(model, work).items()}


def analytic_head(model: "HeadModel", params, camera: "Camera", photo: np.ndarray, mask: np.ndarray,
                  levels: list[int], opts: BuildOptions,
                  topology: dict[int, LevelTopology] | None = None,
                  offsets: np.ndarray | None = None,
                  sides: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[int, GaussianSet]:
    """Head Gaussians at rest for every level: geometry attributes + HPFS/OAFF colours.

    LOD 0 is always solved first (directly); its colours, upsampled, start the iterative
    diffusion of every finer level, which needs nothing else from the others: the finest level is
    sampled here while the ones between run on a second thread (numpy, scipy's sparse products
    and the depth-buffer kernel release the GIL; no parallel numba kernel runs on either thread).
    The result is the same as sampling them one after another (tests/avatar/test_build_threads.py).
    ``topology``: head_topology(model, levels) when the caller made it already. ``offsets``: (V, 3)
    the avatar's ``vertex_offsets`` (landmark_detail): the surface is sampled, shaped and placed
    where they put it (a set's rest means are the rest surface, offsets included, as posing's).
    ``sides``: when given, filled with {level: (rows (K,) int64, side colours (K, 3) float32)}, the
    skin each level's photo sees edge-on and its colour seen from elsewhere (sampling.side_fill)."""
    from concurrent.futures import ThreadPoolExecutor

    work = sorted(set(levels) | {0})
    lods = model_lods(model, work)
    rest0 = shaped_vertices(model, params.shape)
    verts_src, _, A = lbs_numpy(model, params)
    if offsets is not None:
        rest0 = rest0 + offsets
        verts_src = verts_src + rotate_blended(offsets, model.weights, A[:1])
    rest_landmarks = model.landmarks.points(rest0, model.faces)
    face_oval = rest_landmarks[list(FACE_OVAL)]
    # hair-coloured samples below the nose tip do not feed the unseen skin's fill (below_hair.py)
    hair_ends_y = (float(rest_landmarks[NOSE_TIP, 1]), float(rest_landmarks[CHIN, 1]))
    topology = topology or {}
    head0, coarse, side0 = _head_level(model, lods[0], rest0, verts_src[0], face_oval, camera, photo, mask, None,
                                       opts, topology.get(0), hair_ends_y)
    out: dict[int, GaussianSet] = {0: head0} if 0 in levels else {}
    side_out = {0: side0}
    finer = [l for l in work if l > 0]

    def level(l: int) -> GaussianSet:
        head, _, side_out[l] = _head_level(model, lods[l], rest0, verts_src[0], face_oval, camera, photo, mask,
                                           coarse, opts, topology.get(l), hair_ends_y)
        return head

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="omg-lod") as pool:
        jobs = {l: pool.submit(level, l) for l in finer[:-1]}
        if finer:
            out[finer[-1]] = level(finer[-1])
        out.update({l: j.result() for l, j in jobs.items()})
    if sides is not None:
        sides.update({l: side_out[l] for l in out if side_out[l][0] is not None})
    return {l: out[l] for l in sorted(out)}


def _head_level(model: "HeadModel", lod, rest0: np.ndarray, verts_src: np.ndarray, face_oval: np.ndarray,
                camera: "Camera", photo: np.ndarray, mask: np.ndarray, coarse: np.ndarray | None,
                opts: BuildOptions, topo: LevelTopology | None = None,
                hair_ends_y: tuple[float, float] | None = None
                ) -> tuple[GaussianSet, np.ndarray, tuple[np.ndarray | None, np.ndarray | None]]:
    """One level of analytic_head -> (its head GaussianSet, its vertex colours (V_l, 3), its
    (side rows, side colours): SampledColors.side_rows / side).

    lod: the level's LOD (upsample, faces); rest0 / verts_src (V, 3): the identity's rest and
    source-posed LOD-0 vertices, the avatar's vertex offsets included; coarse (V, 3): LOD 0's
    colours (None on LOD 0 itself); topo: the level's LevelTopology (made here when None);
    hair_ends_y: sample_colors' (the rest-frame nose tip's and chin's heights, metres)."""
    U, F = lod.upsample, lod.faces
    topo = topo or level_topology(model, lod)
    rest = np.asarray(U @ rest0, np.float32)
    posed = np.asarray(U @ verts_src, np.float32)
    edges = topo.edges
    spacing = mean_edge_length(rest, F, edges)
    x0 = None if coarse is None else np.asarray(U @ coarse, np.float32)
    # each edge's jaw stretch once: the lips' stretch below is the same per-edge values over a subset
    edge_stretch = jaw_edge_stretch(model, rest, U, edges)
    stretch = vertex_max_stretch(len(rest), edges, edge_stretch)
    mouth = mouth_interior(model, rest, stretch)
    lids, lid_ref, around_eyes = eyelid_vertices(model, rest, U, opts.eyes) if opts.eyes.enabled else (None,) * 3

    def shape_attributes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # rotations, scales and opacities: the geometry alone, never the colours, so they are made
        # on a thread of their own while the colours are sampled below (numpy, which releases the GIL)
        if opts.mouth.enabled:
            # the mouth parts fill the opening: the band between the lips turns transparent and
            # the lips grow only with their own edges' stretch (not the band's), so an opened
            # jaw shows teeth and cavity instead of lip colour smeared across the gap
            grow = capped_stretch(lip_stretch(len(rest), edges, edge_stretch, mouth), np.zeros_like(mouth),
                                  opts.attributes)
        else:
            grow = capped_stretch(stretch, mouth, opts.attributes)
        quats, scales, opac, _ = geometry_attributes(rest, F, opts.attributes, spacing, grow)
        if opts.mouth.enabled:
            opac[mouth] = 0.0
        if lids is not None and around_eyes.any():
            # a blink pulls the upper lid's rows apart over the eye: grown by that stretch they
            # close without gaps (the eyeball's iris must not show between them); the lid
            # Gaussians hidden behind the eyeball at rest grow further, for free
            sel = np.flatnonzero(around_eyes)
            # only the edges at these vertices decide their stretch: measuring those alone
            # gives the same values without stretching the whole mesh's edges per expression
            near = edges[around_eyes[edges[:, 0]] | around_eyes[edges[:, 1]]]
            k = np.clip(expression_stretch(model, rest, U, near)[sel], 1.0, opts.eyes.max_lid_stretch)
            scales[sel, :2] *= (np.maximum(k, grow[sel]) / grow[sel])[:, None]
            scales[lids, :2] *= opts.eyes.lid_grow
            opac[lids] = 1.0
        return quats, scales, opac

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="omg-attributes") as pool:
        attributes = pool.submit(shape_attributes)
        sc = sample_colors(posed, F, vertex_normals(posed, F), photo, mask, camera, edges, spacing,
                           topo.regions, mirror_indices(rest, spacing), mouth, opts.sampling,
                           x0=x0, rest=rest, face_oval=face_oval, lids=lids, lid_ref=lid_ref,
                           laplacian=topo.laplacian, hair_ends_y=hair_ends_y)
        quats, scales, opac = attributes.result()
    return GaussianSet(rest, quats, scales, opac, sc.colors), sc.colors, (sc.side_rows, sc.side)


def analytic_parts(model: "HeadModel", params, camera: "Camera", photo: np.ndarray, mask: np.ndarray,
                   landmarks: np.ndarray, opts: BuildOptions, offsets: np.ndarray | None = None,
                   sides: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> list[SkinnedPart]:
    """The portrait beyond the face as skinned parts at rest: "body" (the torso shell) and "hair"
    (the hair volume), built at the source pose (avatar.portrait), then the parts inside the head:
    the mouth interior and the eyeballs (avatar.interior), on the surface the avatar's vertex
    ``offsets`` (V, 3) give (None: none; the hair and body ignore them: they reach the scalp and
    neck, where landmark_detail moves nothing). ``sides``: when given, filled with
    PortraitParts.sides (per part name: rows into its Gaussians and their side colours)."""
    pp = portrait_parts(model, params, camera, photo, mask, landmarks, opts.portrait)
    if sides is not None:
        sides.update(pp.sides)
    inner = interior_parts(model, params, camera, photo, np.asarray(landmarks, np.float32), opts.mouth, opts.eyes,
                           offsets)
    return [SkinnedPart(name, g, w) for name, g, w in pp.parts] + inner


def with_portrait_parts(avatar: GaussianAvatar, parts: list[SkinnedPart]) -> GaussianAvatar:
    """The learned avatar keeps the same hair volume and torso: ``parts`` replace its parts of the
    same names (the image-plane "body") and join the others. When its Gaussians carry feature
    vectors, the new parts get theirs from their colours (the first three feature channels are
    RGB, the rest zero) so the sets still concatenate with features."""
    width = avatar.lods[avatar.levels[0]].features
    for p in parts:
        if width is not None:
            f = np.zeros((len(p), width.shape[1]), np.float32)
            f[:, :3] = p.gaussians.colors
            p.gaussians.features = f
    names = {p.name for p in parts}
    avatar.parts = [p for p in avatar.parts if p.name not in names] + list(parts)
    return avatar


# The learned reconstructor's signature (backend.model.reconstruct_avatar): keyword arguments model,
# observation, fit, lods, checkpoint, dinov2, progress, head_model_path -> GaussianAvatar.
Reconstructor = Callable[..., GaussianAvatar]


def _learned_avatar(reconstruct: Reconstructor, model, obs, fit, levels, opts: BuildOptions,
                    progress: Progress) -> GaussianAvatar:
    """The learned OMG network (issue 7) through the reconstructor the caller passed in."""
    return reconstruct(model=model, observation=obs, fit=fit, lods=levels, checkpoint=opts.checkpoint,
              dinov2=opts.dinov2, progress=progress,
              head_model_path=None if opts.head_model is None else str(Path(opts.head_model).resolve()))


def build_avatar(photo=None, options: BuildOptions | None = None, progress: Progress | None = None,
                 reconstruct: Reconstructor | None = None, prepared: tuple[Any, Any, str] | None = None
                 ) -> BuildResult:
    """Build an avatar from one portrait photo (path, LoadedImage, uint8 array, None = sample).

    ``reconstruct``: the learned reconstructor for method "learned" (the CLI and the add-on pass
    ``backend.model.reconstruct_avatar``); unused by the analytic method.
    ``prepared``: (FaceObservation, FitResult, name) of a photo already analysed and fitted (the
    multi-view build fits one identity over several views); ``photo`` is then ignored.

    Raises InputError for unusable photos/models (no face, face too small, bad head model...),
    CancelledError when ``progress.should_cancel`` says so.

    BLAS runs on one thread meanwhile (backend.blas_threads): the build's own threads keep the
    cores busy, and OpenBLAS's spinning workers only took turns with them.
    """
    with single_blas_thread():
        return _build_avatar(photo, options, progress, reconstruct, prepared)


def _build_avatar(photo, options: BuildOptions | None, progress: Progress | None,
                  reconstruct: Reconstructor | None, prepared: tuple[Any, Any, str] | None) -> BuildResult:
    """build_avatar's body (see there)."""
    from ..face.analyze import FaceAnalyzer, shared_analyzer
    from ..face.fit import fit_image
    from ..head.loader import load_head_model

    opts = options or BuildOptions()
    progress = progress or Progress()
    if opts.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {opts.method!r}")
    levels = sorted({int(l) for l in opts.lods})
    if not levels or levels[0] < 0 or levels[-1] > 3:
        raise ValueError(f"LOD levels must be within 0..3, got {list(opts.lods)}")
    if opts.method == "learned":  # fail before the slow stages
        for what, f in (("--checkpoint", opts.checkpoint), ("--dinov2", opts.dinov2)):
            if what == "--checkpoint" and not f:
                raise InputError(None, "method 'learned' needs --checkpoint (trained OMG weights)")
            if f and not Path(f).is_file():
                raise InputError(f, f"{what} file not found")
        if reconstruct is None:
            raise ValueError("method 'learned' needs the learned reconstructor (backend.model.reconstruct_avatar)")
    t_start = time.perf_counter()

    preview_kernels: Callable[[], Any] | None = None   # starts the previews' kernel preload (below)
    preview_preload = None
    if opts.method == "analytic":  # the kernels load on the other core while the photo, the head
        # model and mediapipe load and the face is detected
        from ..render.preload import preload_kernels_async, preload_splat_kernels, preload_watermark, run_async
        from .pose_kernels import preload as preload_pose_kernels
        from .silhouette_kernels import preload as preload_silhouette_kernels
        from .synthesis_kernels import preload as preload_synthesis_kernels

        if _exact_splat_needed(opts):  # the source view is rendered right after the sampling
            preload_kernels_async(preload_pose_kernels, _import_sampling_modules, preload_synthesis_kernels,
                                  preload_silhouette_kernels)
        else:
            # Only the previews splat (and pose with the numba kernels), at the very end: their
            # kernels load once the sampling starts. Detection and the fit are bound by the GIL (their
            # Python work, mediapipe's and numba's start-up take turns on it), the sampling threads
            # mostly run numpy without it: ~90 ms of Python-bound loading moves out of the former.
            # So do the kernels of the texture synthesis (its first use is at the end of LOD 0's
            # colours, some 0.1 s into the sampling: loaded first here) and of the silhouette fit
            # (after the sampling), and the watermark's font and PIL's image plugins (the previews'
            # PNGs): ~45 ms more
            preload_kernels_async(_import_sampling_modules, splat=False)

            def preview_kernels():
                return run_async(preload_synthesis_kernels, preload_silhouette_kernels,
                                 lambda: preload_splat_kernels(exact=False), preload_pose_kernels, preload_watermark,
                                 name="omg-preview-preload")
    with progress.stage("load"):
        progress.report(0.0, "loading photo and head model")
        model = load_head_model(opts.head_model)
        if prepared is None:
            image, name = _resolve_photo(photo)
        else:
            obs, fit, name = prepared
    from concurrent.futures import ThreadPoolExecutor

    def matte_and_person() -> tuple[np.ndarray, np.ndarray, MatteFields | None, np.ndarray]:
        # colours are sampled from the person's own colour: at the matte's soft edge the photo
        # mixes in the background, which would ring the avatar with a halo of it (face/matte.py)
        mask = np.asarray(obs.refine_mask(), np.float32)
        fields = None
        if opts.fit_silhouette:  # the silhouette fit's distance fields (it runs alone, at the end)
            fields = MatteFields(mask, SilhouetteOptions())
            fields.pull_fields()
        photo = padding_continued(photo512, obs, mask)
        return mask, foreground_colors(photo, mask), fields, photo

    # a second thread makes what needs only the topology or only the photo: the head sampling's
    # edges, regions and Laplacians per LOD while the face is detected (they need the head model
    # alone; made after the fit, they were a wait of their own before the sampling), then, while
    # the head model is fitted (one core, Python-bound: torch's small operations), the portrait
    # matte (GrabCut and the guided filter: OpenCV and numpy, which release the GIL) and the
    # person's colours
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="omg-prep") as prep:
        topology_job = prep.submit(head_topology, model, levels) if opts.method == "analytic" else None
        if opts.method == "analytic" and opts.detail.enabled:  # the landmark detail's sparse factor
            prep.submit(prepared_spread, model, opts.detail)
        if prepared is None:
            with progress.stage("detect"):
                progress.report(0.03, "finding the face")
                with shared_analyzer() as analyzer:
                    # the matte is refined below, beside the fit (it needs only the photo)
                    obs = analyzer.analyze(image, refine_mask=False)
        photo512 = to_float(obs.image512)
        person_job = prep.submit(matte_and_person)
        # the photo crop as the tracker reads a clip (None without a face there: the detail then
        # takes the photo's own landmarks)
        reading_job = (prep.submit(FaceAnalyzer.tracker_landmarks, np.asarray(obs.image512), opts.detail.readings)
                       if opts.method == "analytic" and opts.detail.enabled and opts.detail.readings > 0 else None)
        if prepared is None:
            with progress.stage("fit"):
                progress.report(0.1, "fitting the head model")
                fit = fit_image(model, obs)
                # the stage holds the wait for the matte (and the tracker's reading) made beside the
                # fit: no time falls between rows
                mask, person, matte_fields, photo512 = person_job.result()
                seen = reading_job.result() if reading_job is not None else None
        else:
            mask, person, matte_fields, photo512 = person_job.result()
            seen = reading_job.result() if reading_job is not None else None
        topology = topology_job.result() if topology_job is not None else None
    params, camera = fit.params, fit.camera

    sides: dict[int, tuple[np.ndarray, np.ndarray]] = {}   # analytic_head's side colours
    part_sides: dict[str, tuple[np.ndarray, np.ndarray]] = {}   # analytic_parts'
    if opts.method == "learned":
        with progress.stage("reconstruct"):
            progress.report(0.2, "running the learned network")
            avatar = _learned_avatar(reconstruct, model, obs, fit, levels, opts, progress)
        with progress.stage("parts"):
            progress.report(0.4, "building hair, body, mouth and eyes")
            with_portrait_parts(avatar, analytic_parts(model, params, camera, person, mask, obs.landmarks, opts,
                                                       sides=part_sides))
    else:
        # the parts need nothing the head sampling computes: they are built on a second thread
        # meanwhile, from their own copies of the images (numpy, torch and the depth-buffer kernel
        # release the GIL; neither side runs a parallel numba kernel, which must not be launched
        # from two threads at once: the previews' kernel preload, started here, is the only thread
        # that does while they run)
        if preview_kernels is not None:
            preview_preload = preview_kernels()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="omg-parts") as pool:
            with progress.stage("sampling"):
                progress.report(0.2, "sampling colours per LOD")
                # the head mesh onto the photo's landmarks first: the head and the parts are made on it
                offsets = np.zeros((model.n_verts, 3), np.float32)
                if opts.detail.enabled:
                    offsets = landmark_detail(model, params, camera, obs.landmarks if seen is None else seen,
                                              opts.detail).offsets
                parts_job = pool.submit(analytic_parts, model, params, camera, person.copy(), mask.copy(),
                                        np.array(obs.landmarks, copy=True), opts, offsets, part_sides)
                heads = analytic_head(model, params, camera, person, mask, levels, opts, topology, offsets, sides)
            with progress.stage("parts"):
                progress.report(0.4, "building hair, body, mouth and eyes")
                parts = parts_job.result()
        avatar = GaussianAvatar(
            head_model_name=model.name,
            head_model_path=None if opts.head_model is None else str(Path(opts.head_model).resolve()),
            params=params, camera=camera,
            vertex_offsets=offsets,
            lods=heads, lod_offsets={l: np.zeros((len(g), 3), np.float32) for l, g in heads.items()},
            parts=parts, options=opts.to_json(), method="analytic")

    shrink: dict[int, np.ndarray] = {}
    if opts.fit_silhouette:
        # no Gaussian footprint beyond the person: the matte is a one-view visual hull
        # on both cores: it runs alone, after the sampling (each LOD's head and the parts apart)
        avatar.options["silhouette_fit"] = fit_avatar_to_matte(avatar, model, mask, levels, SilhouetteOptions(),
                                                               colors=person, fields=matte_fields, workers=2,
                                                               shrink=shrink)
    metrics: dict[int, dict[str, float]] = {l: {} for l in levels}
    render_secs: dict[int, float] = {}
    face_mask = None  # the source-view metrics' face region, made only when they are measured
    if opts.metrics or opts.refine is not False:
        face_mask = hull_mask(obs.landmarks, mask.shape[0], mask.shape[1])
        with progress.stage("metrics"):
            progress.report(0.45, "measuring the source view")
            raw, render_secs = _face_metrics(avatar, model, levels, photo512, face_mask, opts.render_backend)
        for l in levels:
            metrics[l] = {"psnr_face_raw": raw[l]["psnr_face"], "ssim_face_raw": raw[l]["ssim_face"],
                          **raw[l]}

    steps_run = {l: 0 for l in levels}
    do_refine = opts.refine
    if do_refine is None and opts.method == "learned":
        do_refine = False  # learned Gaussians carry feature vectors the colour refinement would desync
    if do_refine is None:
        # auto: one step ~ 3 renders (forward + backward). The first render pays for JIT compiles,
        # so the cost per Gaussian is the best over the LODs' metric renders.
        per_g = min((render_secs[l] / avatar.counts()[l]["total"] for l in render_secs), default=1e9)
        per_lod = opts.refine_seconds / len(levels)

        def fast_enough(per_g: float) -> bool:
            return all(per_lod / max(3.0 * per_g * avatar.counts()[l]["total"], 1e-9)
                       >= opts.min_refine_steps for l in levels)

        do_refine = fast_enough(per_g)
        if not do_refine and render_secs:
            # With one LOD, or a fresh install's empty numba cache, every timed render above may
            # hold the splatter's compile (16.9 s once in the eval): time one warm render of the
            # smallest LOD before turning refinement off.
            lod = min(render_secs, key=lambda l: avatar.counts()[l]["total"])
            t0 = time.perf_counter()
            render_source(avatar, model, lod, backend=opts.render_backend)
            per_g = min(per_g, (time.perf_counter() - t0) / avatar.counts()[lod]["total"])
            do_refine = fast_enough(per_g)
    unrefined: dict[int, np.ndarray] = {}
    unrefined_parts: dict[str, np.ndarray] = {}
    if do_refine and opts.refine_seconds > 0 and opts.refine_steps > 0:
        unrefined = {l: avatar.lods[l].colors.copy() for l in levels}
        unrefined_parts = {p.name: p.gaussians.colors.copy() for p in avatar.parts
                           if p.name in opts.turned_refined_parts}
        with progress.stage("refine"):
            steps_run = refine_avatar(avatar, model, photo512, mask, levels, opts, progress, face_mask)
        if opts.metrics:
            with progress.stage("metrics"):
                progress.report(0.96, "measuring the refined source view")
                ref, _ = _face_metrics(avatar, model, levels, photo512, face_mask, opts.render_backend)
            for l in levels:
                metrics[l].update(ref[l])
    avatar.options["refined"] = bool(any(steps_run.values()))
    # last: the side colours and sizes away from the source view, around the refined colours and places
    avatar.lod_views = source_views(avatar, model, sides, shrink, part_sides, unrefined, opts.turned_refined_share,
                                    unrefined_parts)
    if preview_preload is not None:
        # done long before in a warm install; in a fresh one it compiles them for the previews, which
        # must not launch their parallel kernels while it runs one (numba's workqueue layer)
        preview_preload.join()
    seconds = dict(progress.stage_seconds)
    seconds["total"] = time.perf_counter() - t_start
    progress.report(1.0, "done")
    return BuildResult(avatar, model, obs, fit, seconds, metrics, steps_run, name)


# a head Gaussian whose turned colour differs from its refined one by less than this (RGB, 0..1) in
# every channel keeps one colour: no view data for changes no one can see
TURNED_MIN_CHANGE = 0.02


def _take_back(colors: np.ndarray, before: np.ndarray, share: float) -> np.ndarray:
    """In place: each row of ``colors`` (n, 3) (refined) set to ``before + share * (colors - before)``
    where that differs from it by more than TURNED_MIN_CHANGE; ``before`` (n, 3) the colours before
    the refinement (share 1 sets none). Returns the (n,) bool rows set."""
    turned = before + share * (colors - before)
    moved = np.abs(turned - colors).max(1) > TURNED_MIN_CHANGE
    colors[moved] = turned[moved]
    return moved


def source_views(avatar: GaussianAvatar, model: "HeadModel", sides: dict[int, tuple[np.ndarray, np.ndarray]],
                 shrink: dict, part_sides: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 unrefined: dict[int, np.ndarray] | None = None, turned_share: float = 1.0,
                 unrefined_parts: dict[str, np.ndarray] | None = None) -> dict[int, ViewColors]:
    """{level: ViewColors}: the rows of analytic_head's ``sides`` (the skin the photo sees edge-on,
    with their side colours), of ``part_sides`` ({part name: (rows into that part, side colours)}:
    the torso's grazing columns and ring, analytic_parts; the rows whose colour it equals left out) and the Gaussians the silhouette fit shrank
    (``shrink``: {level: (N_l,) head factors, "parts": (n_parts,)}; they grow back by 1 / factor
    away from the source view and keep their own colour), each with its direction to the source
    camera in its view frame (the head's or the body's rotation), at the avatar's source frame as
    the renderers pose it (pose_torch). ``unrefined``: {level: (N_l, 3) head colours before the
    photo refinement}: the head Gaussians whose refined colour differs from ``before +
    turned_share * (refined - before)`` by more than TURNED_MIN_CHANGE take that as their side
    colour (the edge-on skin's fill wins where both apply); so do the Gaussians of the parts in
    ``unrefined_parts`` ({part name: (n, 3) its colours before the refinement})."""
    import torch

    from .pose_torch import TorchPoser

    out = {}
    p = avatar.params.frame(0)
    for l in avatar.levels:
        side = np.array(avatar.rest_set(l).colors, np.float32, copy=True)        # head, then parts
        n = len(avatar.lods[l])
        edge = np.zeros(len(side), bool)
        if l in (unrefined or {}):
            # the refinement fits one view through overlapping footprints: seen turned, its change
            # showed as streaks along the jaw, the cheeks' sides and the neck, so a turn takes back
            # all but its share (the face's refined detail too: with it kept, the hull's edge
            # still streaked and the clips' figures were a little lower, docs/figures/eval.md)
            edge[:n] = _take_back(side[:n], unrefined[l], turned_share)
        if l in sides:
            rows, fill = sides[l]
            edge[rows] = True
            side[rows] = fill
        slices = avatar.part_slices(l)
        for name, before in (unrefined_parts or {}).items():
            sl = slices.get(name)
            if sl is not None:
                edge[sl] |= _take_back(side[sl], before, turned_share)
        for name, (rows, fill) in (part_sides or {}).items():
            sl = slices.get(name)
            if sl is None:
                continue
            # only where the colour differs: the torso's ring keeps its built colour unless the
            # refinement repainted it (its outline; the rest of it no view saw)
            rows = sl.start + np.asarray(rows, np.int64)
            differs = np.any(side[rows] != fill, axis=1)
            edge[rows[differs]] = True
            side[rows[differs]] = fill[differs]
        factor = np.ones(len(side))
        factor[:n] = shrink.get(l, 1.0)
        factor[n:] = shrink.get("parts", 1.0)
        smaller = factor < 1.0
        rows = np.flatnonzero(edge | smaller)
        if not len(rows):
            continue
        poser = TorchPoser(avatar, model, l, "cpu", grow=False)
        with torch.no_grad():
            posed = poser.pose(p.expr, p.pose, p.transl)
            frames = view_frames_torch(posed.joints, poser.global_share(rows))[0].numpy()
        grow = (1.0 / np.maximum(factor[rows], 1.0 / MAX_GROW)) if smaller.any() else None
        toward = source_toward(frames, posed.means[0].numpy()[rows], avatar.camera.center)
        out[l] = ViewColors(rows, side[rows], toward, grow)
    return out


def hair_over_head(means: np.ndarray, verts: np.ndarray, faces: np.ndarray, camera: "Camera",
                   reach_m: float) -> np.ndarray:
    """(N,) bool: which of the hair Gaussians ``means`` (N, 3) world metres at the source pose lie
    over the head mesh (``verts`` (V, 3) at that pose) as ``camera`` sees it, at most ``reach_m`` in
    front of its surface: hair over the scalp and a fringe, which take the place of the mesh's paint."""
    from ..render.depth import rasterize_depth

    db = rasterize_depth(verts, faces, camera)
    uv, z = camera.project(np.asarray(means, np.float32))
    with np.errstate(invalid="ignore"):
        ok = (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height)
    j = np.clip(np.nan_to_num(uv[:, 0]).astype(int), 0, camera.width - 1)
    i = np.clip(np.nan_to_num(uv[:, 1]).astype(int), 0, camera.height - 1)
    hd = db.depth[i, j]
    return ok & np.isfinite(hd) & (z < hd) & (z > hd - reach_m)


def refine_avatar(avatar: GaussianAvatar, model: "HeadModel", photo: np.ndarray, mask: np.ndarray,
                  levels: list[int], opts: BuildOptions, progress: Progress,
                  face: np.ndarray | None = None) -> dict[int, int]:
    """Refine every LOD in place (colours, opacities, small offsets); the parts take the finest
    LOD's refined appearance (they stay where they are). Returns steps run per LOD."""
    verts, _, A = lbs_numpy(model, avatar.params)
    foreground = foreground_colors(photo, mask)
    steps: dict[int, int] = {}
    # the budget is split in proportion to the Gaussian counts (a step costs about that much)
    totals = {l: avatar.counts()[l]["total"] for l in levels}
    for i, l in enumerate(levels):
        budget = opts.refine_seconds * totals[l] / sum(totals.values())
        U = model_lods(model, [l])[l].upsample
        gs = posed_set(avatar, model, avatar.params, l)
        n_head = len(avatar.lods[l])
        movable = np.zeros(len(gs), bool)
        movable[:n_head] = True
        base = 0.5 + 0.45 * i / len(levels)

        def on_step(step: int, frac: float, base=base) -> None:
            progress.report(base + 0.45 / len(levels) * frac, f"refining LOD {l} (step {step})")

        ropts = photo_refine_options(budget, opts.refine_steps, opts.render_backend)
        # the whole portrait: colours learn the person's own colour (foreground) over the whole
        # image, opacities the matte (refine.py)
        # the lid skin a blink pulls over the eye keeps its sampled colour (refine.refine_views)
        keep = np.zeros(len(gs), bool)
        if opts.eyes.enabled:
            rest = np.asarray(U @ shaped_vertices(model, avatar.params.shape), np.float32)
            lids, _, around = eyelid_vertices(model, rest, U, opts.eyes)
            keep[:n_head] = lids | around
        # colours held by their visible share only behind the head's middle (the synthesized back,
        # the body's far side): the hair's inner layers and the soft edge fit the photo
        res = refine(gs, movable, photo, np.ones_like(mask), avatar.camera, ropts, on_step,
                     portrait=mask, foreground=foreground, keep_colors=keep, focus=face,
                     share_held=behind_head_middle(gs.means, avatar.camera, movable))
        head = avatar.lods[l]
        head.colors = res.colors[:n_head].astype(np.float32)
        head.opacities = res.opacities[:n_head].astype(np.float32)
        # world offsets at the source pose -> rest frame (inverse blended skinning rotation)
        W = np.asarray(U @ model.weights, np.float64)
        Rb = np.einsum("vj,jrc->vrc", W, A[0, :, :3, :3].astype(np.float64))
        rest_off = np.linalg.solve(Rb, res.offsets[:n_head, :, None].astype(np.float64))[..., 0]
        avatar.lod_offsets[l] = (avatar.lod_offsets[l] + rest_off).astype(np.float32)
        if l == levels[-1]:
            hair_opts = opts.portrait.hair
            for part, sl in zip(avatar.parts, avatar.part_slices(l).values()):
                before = part.gaussians.colors
                after = plausible_refined_colors(part.name, before, res.colors[sl])
                if part.name == "hair":
                    share = np.where(hair_over_head(gs.means[sl], verts[0], model.faces, avatar.camera,
                                                    hair_opts.over_head_m),
                                     hair_opts.scalp_refined_share, hair_opts.refined_share)[:, None]
                    after = (before + share * (after - before)).astype(np.float32)
                part.gaussians.colors = after
                part.gaussians.opacities = res.opacities[sl].astype(np.float32)
        steps[l] = res.steps
    return steps
