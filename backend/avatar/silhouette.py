"""Hold the avatar inside the portrait's silhouette at the source view (issue 14).

The photo's matte is a one-view visual hull: along a ray through a background pixel there is
nothing. Two rules follow, applied to every Gaussian (head and parts) at the source pose:

- a Gaussian whose centre projects onto background (matte < ``carve_below``) inside the image gets
  opacity 0: it would be seen against the background there (seen at the source view or peeking out
  at the silhouette from behind);
- a Gaussian whose centre lies inside but whose footprint reaches over the silhouette is shrunk
  (all three axes by one factor, so its shape is kept) until ``reach_sigmas`` projected standard
  deviations fit within its centre's distance to the silhouette (never below ``min_sigma_px``).

Head-mesh Gaussians are a closed surface, and the stand-in's neck and jaw are often a little wider
than the person's: seen from the source view those sides are a sliver a few pixels wide beyond the
matte, but turned by 60 degrees they are a whole band of the neck. Carving them opened a hole there
through which the dark inside of the body shell showed (issue 14). So a head Gaussian whose centre
is outside the matte but within ``pull_band_px`` of it is *pulled* inside instead: moved parallel to
the image plane, at its depth, along its image row (else to the nearest pixel) to a pixel
``pull_inset_px`` inside the silhouette, shrunk only as far as its projected extent along the pull
must fit (not its largest axis: seen edge-on, the neck's sides would shrink to rows of dots), and,
where it faces the camera, coloured from the photo where it lands (the build passes the person's
colours). The source view then shows it inside the person with the person's colour; other views
see a neck a few millimetres narrower, closed. Most of the sliver is seen edge-on or from behind
(the jaw's and neck's sides): it keeps its own colour, else a head turned 60 deg showed the hair
or collar colour it landed on as a patch down the side of the jaw. Head Gaussians farther out,
and parts, are carved as before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .gaussians import GaussianSet

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..render.camera import Camera
    from .gaussians import GaussianAvatar


@dataclass(frozen=True)
class SilhouetteOptions:
    carve_below: float = 0.5     # matte value under which a pixel is background
    reach_sigmas: float = 2.0    # this many projected std-devs must fit inside the silhouette
    min_sigma_px: float = 0.5    # shrinking stops at this projected std-dev (px)
    carve_head: bool = True      # head-mesh Gaussians are carved too (else only shrunk to min_sigma_px)
    pull_band_px: float = 16.0   # head Gaussians this close outside the matte are pulled inside, not carved
    pull_inset_px: float = 3.0   # ... to a pixel this far inside the silhouette (its colour shows there)
    pull_color_facing: float = 0.3  # ... and take that colour where they face the camera (cosine above this)
    # Gaussians inside are shrunk only as far as their projected ellipse of ``ellipse_sigmas``
    # std-devs must to lie on the person (marched along ``ellipse_rays`` of its radii), not as far
    # as their largest axis must to fit ``reach_sigmas`` times into the distance to the silhouette:
    # LOD 0's flat neck Gaussians seen edge-on are ~6 px long along the outline and ~1 px across
    # it, and shrinking them to fit their length left the matte's soft edge at alpha 0.65 before
    # refinement. 2.5 (not 2) std-devs: their tails then spill less beyond the matte than the
    # largest-axis rule's did (docs/figures/loop.md). ellipse_rays 0: the largest-axis rule.
    ellipse_sigmas: float = 2.5
    ellipse_rays: int = 16


@dataclass
class SilhouetteFit:
    """scale_factor (N,) float32 in (0, 1]; carved (N,) bool (opacity to 0); offsets (N, 3) float32
    metres, world frame of the fitted pose: the pulled Gaussians' moves (zero elsewhere), or None."""

    scale_factor: np.ndarray
    carved: np.ndarray
    offsets: np.ndarray | None = None

    @property
    def pulled(self) -> np.ndarray:
        """(N,) bool: Gaussians moved inside the silhouette."""
        if self.offsets is None:
            return np.zeros(len(self.carved), bool)
        return np.any(self.offsets != 0.0, axis=1)


class MatteFields:
    """The matte's own distance fields, made on first use and kept, so fitting several Gaussian
    sets against one matte (every LOD of an avatar) computes them once. matte (H, W) float in [0, 1]."""

    def __init__(self, matte: np.ndarray, opts: SilhouetteOptions) -> None:
        from scipy.ndimage import distance_transform_edt

        self._edt = distance_transform_edt
        self.opts = opts
        self.person = np.asarray(matte) >= opts.carve_below
        # distance (px) from each person pixel's centre to the nearest background pixel's centre,
        # minus half a pixel: the silhouette runs between them
        self.d_in = distance_transform_edt(self.person) - 0.5
        self._pull: tuple | None = None

    def pull_fields(self) -> tuple:
        """(d_out, core, ti, tj, left, right), all (H, W): px from a background pixel to the person;
        the pixels ``pull_inset_px`` inside; the nearest core pixel's row/column; the nearest core
        column at or left of / right of each pixel in its row (-10 W / 10 W where none)."""
        if self._pull is None:
            W = self.person.shape[1]
            d_out = self._edt(~self.person)
            core = self.d_in >= self.opts.pull_inset_px
            ti = tj = left = right = None
            if core.any():
                _, (ti, tj) = self._edt(~core, return_indices=True)
                cols = np.arange(W)
                left = np.maximum.accumulate(np.where(core, cols, -10 * W), axis=1)
                right = np.minimum.accumulate(np.where(core, cols, 10 * W)[:, ::-1], axis=1)[:, ::-1]
            self._pull = (d_out, core, ti, tj, left, right)
        return self._pull


def fit_to_matte(gs: GaussianSet, camera: "Camera", matte: np.ndarray,
                 opts: SilhouetteOptions | None = None, n_head: int = 0,
                 fields: MatteFields | None = None) -> SilhouetteFit:
    """Per-Gaussian shrink factors, carving and pulls for ``gs`` (world frame, source pose) against
    ``matte`` (H, W) float in [0, 1] at ``camera``'s resolution. The first ``n_head`` Gaussians are
    the head mesh's: those just outside the matte are pulled inside instead of carved. Each
    Gaussian's result depends on it and the matte alone. ``fields``: the matte's MatteFields made
    with the same options, when several sets are fitted against one matte."""
    o = opts or SilhouetteOptions()
    fields = fields or MatteFields(matte, o)
    H, W = matte.shape
    uv, z = camera.project(np.asarray(gs.means, np.float32))          # (N, 2) px, (N,) metres
    uv, z = np.nan_to_num(np.asarray(uv, np.float64), nan=-1.0), np.asarray(z, np.float64)
    inside_img = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H) & (z > 0)
    iu = np.clip(uv[:, 0].astype(int), 0, W - 1)
    iv = np.clip(uv[:, 1].astype(int), 0, H - 1)
    person, d_in = fields.person, fields.d_in
    carved = inside_img & ~person[iv, iu]
    offsets = None
    head = np.arange(len(carved)) < n_head
    if n_head and o.pull_band_px > 0 and (carved & head).any():
        d_out, core, ti, tj, left_all, right_all = fields.pull_fields()
        if core.any():
            pull = carved & head & (d_out[iv, iu] <= o.pull_band_px)
            # along the image row to the nearer core pixel's centre when one is within the band
            # (rows keep their heights: moves to the nearest pixel in 2D bunch the rows of a slanted
            # outline into the same pixel rows, leaving stripes of gaps), else to the nearest one
            left = left_all[iv, iu] + 0.5
            right = right_all[iv, iu] + 0.5
            row_u = np.where(uv[:, 0] - left <= right - uv[:, 0], left, right)
            in_row = np.abs(row_u - uv[:, 0]) <= o.pull_band_px + o.pull_inset_px + 1.0
            # to the target at the same depth: a move parallel to the image plane
            du = np.where(pull, np.where(in_row, row_u, tj[iv, iu] + 0.5) - uv[:, 0], 0.0)
            dv = np.where(pull & ~in_row, ti[iv, iu] + 0.5 - uv[:, 1], 0.0)
            cam_move = np.stack([du * z / camera.fx, dv * z / camera.fy, np.zeros_like(z)], 1)
            R = np.asarray(camera.viewmat, np.float64)[:3, :3]     # world -> camera rotation
            offsets = (cam_move @ R).astype(np.float32)           # camera -> world: R^T v
            carved = carved & ~pull
            uv = uv + np.stack([du, dv], 1)
            iu = np.clip(uv[:, 0].astype(int), 0, W - 1)
            iv = np.clip(uv[:, 1].astype(int), 0, H - 1)
    sigma_px = np.asarray(gs.scales, np.float64).max(1) * camera.fx / np.maximum(z, 1e-6)
    allowed = np.maximum(d_in[iv, iu] / o.reach_sigmas, o.min_sigma_px)
    factor = np.where(inside_img & ~carved, np.minimum(1.0, allowed / np.maximum(sigma_px, 1e-9)), 1.0)
    if o.ellipse_rays > 0:
        need = np.flatnonzero(factor < 1.0)
        if len(need):
            fit_ellipse = _ellipse_inside(gs, camera, need, uv[need], person, o.ellipse_sigmas, o.ellipse_rays)
            floor = o.min_sigma_px / np.maximum(sigma_px[need], 1e-9)
            factor[need] = np.minimum(1.0, np.maximum(fit_ellipse, floor))
    if offsets is not None:
        # a pulled Gaussian must not reach back over the silhouette it was pulled across: its
        # projected extent along the pull (not its largest axis: the neck's sides are seen edge-on,
        # and shrinking them whole left rows of dots with the body shell showing between them)
        # (of the moved ones only: each Gaussian's reach is its own)
        moved = np.flatnonzero(np.any(offsets != 0.0, axis=1))
        back = -np.stack([du[moved], dv[moved]], 1)
        reach = _sigma_towards(gs, camera, back, sigma_px[moved], moved)
        factor[moved] = np.minimum(1.0, allowed[moved] / np.maximum(reach, 1e-9))
    return SilhouetteFit(factor.astype(np.float32), carved, offsets)


def _cov2d(gs: GaussianSet, camera: "Camera", idx: np.ndarray) -> np.ndarray:
    """(M, 2, 2) px^2: the projected 2D covariances ``J W R diag(s)^2 R^T W^T J^T`` (no low-pass)
    of the Gaussians ``idx`` (M,)."""
    from ..rotations import quat_to_matrix

    V = np.asarray(camera.viewmat, np.float64)
    pc = np.asarray(gs.means, np.float64)[idx] @ V[:3, :3].T + V[:3, 3]       # (M, 3) camera frame
    z = np.maximum(pc[:, 2], 1e-6)
    J = np.zeros((len(idx), 2, 3))
    J[:, 0, 0] = camera.fx / z
    J[:, 0, 2] = -camera.fx * pc[:, 0] / (z * z)
    J[:, 1, 1] = camera.fy / z
    J[:, 1, 2] = -camera.fy * pc[:, 1] / (z * z)
    R = quat_to_matrix(np.asarray(gs.quats, np.float64)[idx])                 # (M, 3, 3) local -> world
    A = J @ V[:3, :3] @ R * np.asarray(gs.scales, np.float64)[idx][:, None, :]  # (M, 2, 3) = J W R diag(s)
    return A @ A.transpose(0, 2, 1)


def _ellipse_inside(gs: GaussianSet, camera: "Camera", idx: np.ndarray, uv: np.ndarray, person: np.ndarray,
                    reach_sigmas: float, rays: int, step_px: float = 0.5) -> np.ndarray:
    """(M,) in [0, 1]: for the Gaussians ``idx`` (M,) centred at ``uv`` (M, 2) px, the largest
    factor their scales may keep so that the ellipse of ``reach_sigmas`` projected standard
    deviations lies on ``person`` (H, W) bool pixels, found by marching ``rays`` radii of the
    ellipse from the centre in steps of at most ``step_px`` (beyond the image counts as person:
    the photo shows no background there). The march is one numba kernel
    (silhouette_kernels.march, with a plain numpy twin)."""
    from .silhouette_kernels import march

    cov = _cov2d(gs, camera, idx) + 1e-6 * np.eye(2)
    L = np.linalg.cholesky(cov)                                                # (M, 2, 2)
    t = np.linspace(0.0, 2 * np.pi, rays, endpoint=False)
    radii = reach_sigmas * np.einsum("mij,kj->mki", L, np.stack([np.cos(t), np.sin(t)], 1))  # (M, K, 2) px
    longest = np.linalg.norm(radii, axis=2).max(1)                             # (M,) px
    # each Gaussian marched in the steps its own longest radius needs (its result is its own,
    # whatever else is fitted with it)
    n_steps = np.maximum(2, np.ceil(longest / step_px)).astype(np.int64)       # (M,)
    out = np.empty(len(idx))
    march(np.ascontiguousarray(uv, np.float32), np.ascontiguousarray(radii, np.float32), n_steps,
          np.ascontiguousarray(person, bool), out)
    return out


def _sigma_towards(gs: GaussianSet, camera: "Camera", towards: np.ndarray, fallback: np.ndarray,
                   idx: np.ndarray | None = None) -> np.ndarray:
    """(M,) px: the projected standard deviation of the Gaussians ``idx`` (M,) (default: all) along
    ``towards`` (M, 2) px (image direction, any length; ``fallback`` (M,) px where it is zero):
    sqrt(n^T cov2d n) with the 2D covariance of :func:`_cov2d`."""
    n = np.asarray(towards, np.float64)
    length = np.linalg.norm(n, axis=1)
    n = n / np.maximum(length, 1e-9)[:, None]
    cov = _cov2d(gs, camera, np.arange(len(gs.means)) if idx is None else idx)
    sigma = np.sqrt(np.maximum(np.einsum("ni,nij,nj->n", n, cov, n), 0.0))
    return np.where(length > 0, sigma, fallback)


def apply_fit(gs: GaussianSet, fit: SilhouetteFit) -> GaussianSet:
    """``gs`` with shrunk scales, carved opacities and pulled means (a new set; everything else
    kept). ``gs`` must be at the pose the fit was made at when the fit has offsets."""
    means = gs.means if fit.offsets is None else (gs.means + fit.offsets).astype(np.float32)
    return replace(gs, means=means, scales=(gs.scales * fit.scale_factor[:, None]).astype(np.float32),
                   opacities=np.where(fit.carved, 0.0, gs.opacities).astype(np.float32))


def fit_avatar_to_matte(avatar: "GaussianAvatar", model: "HeadModel", matte: np.ndarray, levels: list[int],
                        opts: SilhouetteOptions | None = None, colors: np.ndarray | None = None,
                        fields: MatteFields | None = None, workers: int = 1,
                        shrink: dict[int, np.ndarray] | None = None) -> dict[str, int]:
    """Apply :func:`fit_to_matte` in place to every LOD's head Gaussians and (once, at the finest
    LOD: parts are shared by the LODs) to the parts, at the avatar's source pose. Scales and
    opacities are pose-independent, so the rest-frame sets take them as they are.
    Pulled head Gaussians move through their rest offsets (``avatar.lod_offsets``: the world move
    at the source pose turned back by the inverse blended skinning rotation), so they follow the rig.
    With ``colors`` ((H, W, 3) float [0, 1], the person's colour image at the matte's resolution)
    they take the colour of the pixel they land on: the source view sees them at the person's edge,
    where the colour sampled at their old place (beyond the person) would show as a seam.
    ``fields``: ``MatteFields(matte, opts)`` made beforehand (a build makes them on another
    thread while the head model is fitted); made here when None.
    Each Gaussian's fit is its own, so every LOD's head and the parts are fitted apart; with
    ``workers`` > 1 that many of those fits run at once (numpy, which releases the GIL, and a
    numba kernel without it: a build runs this alone, after the sampling, on its two cores); the
    result is the same for any ``workers`` (tests/avatar/test_build_stages.py).
    ``shrink``: when given, filled with {level: (N_l,) float32 in (0, 1]}, the factor each head
    Gaussian's scales took (1 where unchanged; view_colors.ViewColors.grow undoes it away from the
    source view), and with "parts": (n_parts,) the same for every part's Gaussians (list order).
    Returns counts {"carved": ..., "shrunk": ..., "pulled": ...} over everything changed."""
    from concurrent.futures import ThreadPoolExecutor

    from .posing import lbs_numpy, pose_parts

    o = opts or SilhouetteOptions()
    A = lbs_numpy(model, avatar.params.frame(0))[2][0]                  # (J, 4, 4) source pose
    if fields is None:
        fields = MatteFields(matte, o)   # one matte for every LOD: its distance fields once
    elif fields.opts != o:
        raise ValueError("fields were made with other SilhouetteOptions than opts")
    def parts_fit() -> SilhouetteFit:
        # the parts alone, posed as pose() poses them (each Gaussian's fit is its own: the same as
        # their rows of the whole finest set's fit; parts are never pulled)
        means = pose_parts(avatar, model, avatar.params.frame(0))[0][0]
        return fit_to_matte(avatar.parts_set().with_means(means), avatar.camera, matte, o, n_head=0, fields=fields)

    levels = sorted(levels)
    jobs = [lambda l=l: _fit_head(avatar, model, matte, l, o, colors, fields, A) for l in levels]
    sizes = [len(avatar.lods[l]) for l in levels]
    if avatar.parts:
        jobs.append(parts_fit)
        sizes.append(avatar.n_parts)
    if workers > 1 and len(jobs) > 1:
        if o.pull_band_px > 0:
            fields.pull_fields()   # made once, here, not by two fits at once
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omg-silhouette") as pool:
            # the largest first (the finest head, then the parts): the smaller ones fill the other core
            futures = {i: pool.submit(jobs[i]) for i in sorted(range(len(jobs)), key=lambda i: -sizes[i])}
            results = [futures[i].result() for i in range(len(jobs))]
    else:
        results = [job() for job in jobs]
    carved = shrunk = pulled = 0
    for l, (head, offsets, counts, factor) in zip(levels, results):
        if shrink is not None:
            shrink[l] = factor
        avatar.lods[l] = head
        if offsets is not None:
            avatar.lod_offsets[l] = offsets
        carved, shrunk, pulled = carved + counts[0], shrunk + counts[1], pulled + counts[2]
    if avatar.parts:
        fit = results[-1]
        if shrink is not None:
            shrink["parts"] = fit.scale_factor
        for part, sl in zip(avatar.parts, _part_rows(avatar)):
            part.gaussians = apply_fit(part.gaussians, SilhouetteFit(fit.scale_factor[sl], fit.carved[sl]))
            carved += int(fit.carved[sl].sum())
            shrunk += int((fit.scale_factor[sl] < 1).sum())
    return {"carved": carved, "shrunk": shrunk, "pulled": pulled}


def _part_rows(avatar: "GaussianAvatar") -> list[slice]:
    """Each part's rows in ``avatar.parts_set()``."""
    out, i = [], 0
    for p in avatar.parts:
        out.append(slice(i, i + len(p)))
        i += len(p)
    return out


def _fit_head(avatar: "GaussianAvatar", model: "HeadModel", matte: np.ndarray, l: int, o: SilhouetteOptions,
              colors: np.ndarray | None, fields: MatteFields, A: np.ndarray
              ) -> tuple[GaussianSet, np.ndarray | None, tuple[int, int, int], np.ndarray]:
    """fit_avatar_to_matte of LOD ``l``'s head alone (``A`` (J, 4, 4): the source pose's joint
    transforms) -> (the fitted head set, the LOD's new rest offsets or None when none was
    pulled, (carved, shrunk, pulled) counts, the (N_l,) scale factors applied). Reads ``avatar``,
    changes nothing in it."""
    from .posing import model_lods
    from .posed import posed_set

    n = len(avatar.lods[l])
    # the head alone (a head's posing never reads the parts)
    gs = posed_set(replace(avatar, parts=[]), model, avatar.params, l)
    fit = fit_to_matte(gs, avatar.camera, matte, o, n_head=n if o.carve_head else 0, fields=fields)
    head_fit = SilhouetteFit(fit.scale_factor[:n], fit.carved[:n])
    if not o.carve_head:
        head_fit = _shrink_instead(gs.means[:n], gs.scales[:n], head_fit, avatar.camera, o)
    head = apply_fit(avatar.lods[l], head_fit)
    pulled_head = fit.pulled[:n]
    if colors is not None and head.features is None and pulled_head.any():
        uv, _ = avatar.camera.project((gs.means[:n] + fit.offsets[:n]).astype(np.float32))
        H, W = matte.shape
        iu = np.clip(np.asarray(uv[:, 0]).astype(int), 0, W - 1)
        iv = np.clip(np.asarray(uv[:, 1]).astype(int), 0, H - 1)
        # only where the source view sees the surface (the module's docstring)
        seen = pulled_head & _facing_camera(gs.means[:n], model_lods(model, [l])[l].faces, avatar.camera,
                                            o.pull_color_facing)
        head_colors = head.colors.copy()
        head_colors[seen] = np.asarray(colors, np.float32)[iv[seen], iu[seen]]
        head.colors = head_colors
    offsets = None
    if pulled_head.any():
        # the pulled rows only (a few per cent): the others' offsets are zero and stay so
        rows = np.flatnonzero(pulled_head)
        W = np.asarray(model_lods(model, [l])[l].upsample[rows] @ model.weights, np.float64)   # (m, J)
        Rb = np.einsum("vj,jrc->vrc", W, A[:, :3, :3].astype(np.float64))
        rest = np.zeros((n, 3))
        rest[rows] = np.linalg.solve(Rb, fit.offsets[rows, :, None].astype(np.float64))[..., 0]
        offsets = (avatar.lod_offsets[l] + rest).astype(np.float32)
    counts = (int(fit.carved[:n].sum()), int((fit.scale_factor[:n] < 1).sum()), int(pulled_head.sum()))
    return head, offsets, counts, head_fit.scale_factor


def _facing_camera(verts: np.ndarray, faces: np.ndarray, camera: "Camera", cos_min: float) -> np.ndarray:
    """(V,) bool: the posed surface ``verts`` (V, 3) metres with ``faces`` (F, 3) faces the camera
    at each vertex: the cosine between its normal and the direction to the camera exceeds ``cos_min``."""
    from .attributes import vertex_normals

    n = vertex_normals(np.asarray(verts, np.float32), faces)
    d = camera.center[None] - verts
    return (d * n).sum(1) > cos_min * np.linalg.norm(d, axis=1)


def _shrink_instead(means: np.ndarray, scales: np.ndarray, fit: SilhouetteFit, camera: "Camera",
                    o: SilhouetteOptions) -> SilhouetteFit:
    """Carved Gaussians (posed ``means`` (n, 3), ``scales`` (n, 3)) kept, shrunk to
    ``min_sigma_px`` instead (a closed surface keeps its points)."""
    _, z = camera.project(np.asarray(means, np.float32))
    sigma_px = np.asarray(scales, np.float64).max(1) * camera.fx / np.maximum(np.asarray(z, np.float64), 1e-6)
    f = np.where(fit.carved, np.minimum(1.0, o.min_sigma_px / np.maximum(sigma_px, 1e-9)), fit.scale_factor)
    return SilhouetteFit(f.astype(np.float32), np.zeros_like(fit.carved))
