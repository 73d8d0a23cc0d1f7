"""Colours and sizes that depend on the view: the skin the photo sees edge-on, and the Gaussians
the silhouette fit shrank for the source view.

The photo sees the sides of the face, the jaw's edge and the ears at a grazing angle: a disc there
covers a sliver of the source view's pixels, and those pixels mix the face's edge with the hair or
background beside it (and the refinement fits them through that sliver). Turned towards the
camera, the same disc covers skin, and the photo's edge colours showed as orange-brown streaks on
the cheek's side (the thirty-seventh session's diagnosis; every view-independent colour tried
there cost the source view ~0.5 dB or left the streaks).

So such a Gaussian carries two colours: its ordinary colour, seen from the source camera's
direction, and a *side* colour (the smooth fill of its neighbours, as if the photo had not seen
it, shaded by the photo's light at its normal: skin_shading.py), seen once the view has turned
away from that direction. Until the fill was shaded (the forty-third session) only the samples
the skin model does not explain had one (the jaw's shading seen edge-on was the only shading the
sides had); skin-coloured grazing samples smear a pixel over a strip just the same, which a turn
of 45-60 deg showed as streaks along the jaw and by the ear (``SamplingOptions.side_skin``).
``toward`` is the unit direction from the Gaussian to the source camera in its view frame: the
head's rotation (the body's, for the Gaussians skinned to the global joint), so a turned head or
a moved camera changes the view, and an opened jaw or a gaze does not (they turn the Gaussians,
not the view). A view whose direction to the Gaussian lies within ``NEAR_DEG`` of it shows the
ordinary colour, beyond ``FAR_DEG`` the side colour, a smoothstep between. Every other Gaussian
has one colour.

The same holds for size: the build shrinks the Gaussians (head and parts) whose footprint reaches
over the photo's silhouette (silhouette.py: the matte is a one-view hull), which is right for the source
view only. Turned, those shrunk discs left gaps in the surface by the ears and the jaw, through
which the hair behind and the background showed as dark and orange streaks (the thirty-ninth
session's diagnosis). ``grow`` (>= 1) is the shrink undone: a view away from the source direction
sees the Gaussian at its size before the fit, the same smoothstep between. A multi-view build
keeps the grow factors and takes each side colour from what the views other than the primary
show of its Gaussian (multiview.side_from_views; the single photo's fill where none saw it).

The hair the photo sees edge-on above the nose tip (the crown, the temples) has no side colour
(sampling.SamplingOptions.side_hair): its smear is the hair's own texture, and the fill was a
flat patch over the crown.

The photo refinement (refine.py) fits the source view through the head's overlapping footprints,
which a turn pulls apart: its colour change, right from the source direction, drew grey and white
streaks along the jaw, the cheeks' sides and the neck at 45 deg. So every head Gaussian it changed
(by more than build.TURNED_MIN_CHANGE) is view data too, whose side colour is its colour before
the refinement (``BuildOptions.turned_refined_share`` of the change kept, 0 by default; the skin
seen edge-on keeps its fill), and so is every such Gaussian of the parts in
``BuildOptions.turned_refined_parts`` (the hair, which keeps half the change at the source view). A
multi-view build then takes those side colours from its other views, as every other row's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEAR_DEG = 10.0   # within this angle of the source direction: the photo's colour alone
FAR_DEG = 30.0    # beyond it: the side colour alone
MAX_GROW = 1e3    # the largest grow factor a file may hold (the fit's min_sigma_px floor keeps real ones far below)


@dataclass
class ViewColors:
    """The view-dependent Gaussians of one LOD (head and parts).

    rows: (K,) int64 strictly increasing indices into the LOD's Gaussians (its head, then the
        parts in list order, as ``GaussianAvatar.rest_set``).
    side: (K, 3) float32 RGB in [0, 1], the colour seen away from the source direction (a row's
        own colour where only its size depends on the view).
    toward: (K, 3) float32 unit vectors, the direction to the source camera in each row's view
        frame (view_frames_torch: the head's rotation, or the body's for the Gaussians skinned to
        the global joint), so it turns as the head or the body turns, not as the jaw opens.
    grow: (K,) float32 >= 1, the factor its scales take away from the source direction (1 where
        only its colour depends on the view); None: 1 everywhere.
    """

    rows: np.ndarray
    side: np.ndarray
    toward: np.ndarray
    grow: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.rows = np.ascontiguousarray(self.rows, dtype=np.int64).reshape(-1)
        k = len(self.rows)
        self.side = np.ascontiguousarray(self.side, dtype=np.float32).reshape(k, 3)
        self.toward = np.ascontiguousarray(self.toward, dtype=np.float32).reshape(k, 3)
        if self.grow is not None:
            self.grow = np.ascontiguousarray(self.grow, dtype=np.float32).reshape(k)
            if not np.isfinite(self.grow).all() or (k and (self.grow.min() < 1.0 or self.grow.max() > MAX_GROW)):
                raise ValueError(f"view colours: grow factors must lie in [1, {MAX_GROW:g}]")
        if k and np.any(np.diff(self.rows) <= 0):
            raise ValueError("view colours: rows must be strictly increasing")
        if not (np.isfinite(self.side).all() and np.isfinite(self.toward).all()):
            raise ValueError("view colours: non-finite values")
        if k and (self.side.min() < 0.0 or self.side.max() > 1.0):
            raise ValueError("view colours: side colours must lie in [0, 1]")
        if k and np.abs(np.linalg.norm(self.toward, axis=1) - 1.0).max() > 1e-3:
            raise ValueError("view colours: toward must be unit vectors")

    def __len__(self) -> int:
        return int(len(self.rows))

    def renumbered(self, new_index: np.ndarray) -> "ViewColors":
        """The same data with row r moved to ``new_index[r]`` ((N,) int64 over the LOD's Gaussians,
        increasing where >= 0; -1: that Gaussian is gone, and its row with it)."""
        new_index = np.asarray(new_index, np.int64)
        to = new_index[self.rows]
        keep = to >= 0
        return ViewColors(to[keep], self.side[keep], self.toward[keep],
                          None if self.grow is None else self.grow[keep])

    def fits(self, n: int) -> bool:
        """Whether every row indexes one of ``n`` Gaussians (a LOD's head and parts)."""
        return not len(self.rows) or (self.rows[0] >= 0 and self.rows[-1] < n)


def _smoothstep(x):
    return x * x * (3.0 - 2.0 * x)


def view_frames_torch(joints, share):
    """(B, K, 4) torch unit w,x,y,z: each row's view frame, the blend of the global joint's and the
    neck's world rotations (``joints`` (B, J, 4), PosedBatch.joints) with its global ``share`` (K,)
    (TorchPoser.global_share; the jaw and the eyes count as the neck: opening the jaw or looking
    aside is no change of view)."""
    import torch

    s = torch.as_tensor(np.asarray(share, np.float32), device=joints.device)[None, :, None]   # (1, K, 1)
    q = s * joints[:, None, 0] + (1.0 - s) * joints[:, None, 1]
    return q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def source_weights_torch(view: ViewColors, means, joints, share, centers):
    """(B, K) torch float32 in [0, 1]: how much each row's source-view colour and size a frame
    shows. means (B, N, 3) metres (all the LOD's Gaussians, head first), joints (B, J, 4) and
    share (K,) as view_frames_torch's; centers (B, 3) the frames' camera centres, metres."""
    import torch

    dev = means.device
    rows = torch.as_tensor(view.rows, device=dev)
    q = view_frames_torch(joints, share)                                       # (B, K, 4)
    u, w = q[..., 1:], q[..., :1]
    t = torch.as_tensor(view.toward, device=dev).expand_as(u)
    c = torch.linalg.cross(u, t)
    tw = t + 2.0 * (w * c + torch.linalg.cross(u, c))   # q t q*: no (B, K, 3, 3) matrices per frame
    d = torch.as_tensor(np.asarray(centers, np.float32), device=dev)[:, None, :] - means[:, rows]
    cos = (d * tw).sum(-1) / d.norm(dim=-1).clamp_min(1e-12)
    lo, hi = float(np.cos(np.radians(FAR_DEG))), float(np.cos(np.radians(NEAR_DEG)))
    return _smoothstep(((cos - lo) / (hi - lo)).clamp(0.0, 1.0))


def blend_views_(colors_out, scales_out, view: ViewColors, colors, scales, means, joints, share, centers) -> None:
    """In place: the view's rows of ``colors_out`` (B, N, 3) and, where it has grow factors, of
    ``scales_out`` (B, N, 3) set to what each frame's camera sees, from the view-independent
    ``colors`` (N, 3) and ``scales`` ((N, 3) or (B, N, 3), metres; it may be ``scales_out``
    itself); every other row is left as it is, so buffers reused from frame to frame stay right.
    means, joints, share and centers as source_weights_torch's."""
    import torch

    dev = colors_out.device
    rows = torch.as_tensor(view.rows, device=dev)
    w = source_weights_torch(view, means, joints, share, centers)[..., None]   # (B, K, 1)
    colors_out[:, rows] = torch.lerp(torch.as_tensor(view.side, device=dev), colors[rows], w)
    if view.grow is not None:
        g = torch.as_tensor(view.grow, device=dev)[None, :, None]
        scales_out[:, rows] = scales[..., rows, :] * torch.lerp(g, torch.ones_like(g), w)


def for_views(colors, scales, view: ViewColors | None, means, joints, share, centers):
    """Per-frame (colours, scales) of a LOD's Gaussians (head first, then anything after it) seen
    from each frame's camera: torch (B, N, 3) each, or ``colors`` / ``scales`` themselves when
    ``view`` is None or empty (or has no grow factors, for the scales).

    colors (N, 3) torch float32; scales (N, 3) or (B, N, 3) torch metres (a frame's grown sizes);
    means (B, N, 3) metres, joints (B, J, 4) (PosedBatch's) and share (K,) (TorchPoser.global_share
    of the view's rows); centers (B, 3) the cameras' centres, metres."""
    if view is None or not len(view):
        return colors, scales
    B = means.shape[0]
    out = colors.expand(B, -1, -1).clone()
    big = scales if view.grow is None else scales.expand(B, -1, -1).clone()
    blend_views_(out, big, view, colors, scales, means, joints, share, centers)
    return out, big


def source_toward(frames: np.ndarray, posed_means: np.ndarray, center: np.ndarray) -> np.ndarray:
    """(K, 3) float32 unit: the direction from each Gaussian to the source camera ``center`` (3,)
    metres, in its view frame; frames (K, 4) unit w,x,y,z the rows' view frames (view_frames_torch)
    and posed_means (K, 3) metres at the source frame (so toward = R^T (center - mean) / |...|)."""
    from ..rotations import quat_to_matrix

    R = quat_to_matrix(np.asarray(frames, np.float64))                      # (K, 3, 3) view frame -> world
    d = np.asarray(center, np.float64)[None] - np.asarray(posed_means, np.float64)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    t = np.einsum("kji,kj->ki", R, d)
    return (t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)).astype(np.float32)
