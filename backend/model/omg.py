"""The OMG network, top to bottom as the paper's figure.

    photo --frozen DINOv2--> tokens (1 + h*w, D), class token (identity), local map (256, 296, 296)
    V learnable vertex embeddings (+ identity) --2-layer transformer decoder over tokens--> global (V, 256)
    global --MLP--> vertex offsets (V, 3) added to the fitted mesh
    global --midpoint subdivision + MLP per level--> global at LOD 1, 2
    HPFS: project LOD vertices with the source camera, sample the local map bilinearly
    OAFF: visible from the mesh depth buffer; fused = global + visible * local
    heads: fused --MLPs--> 32 colour features (first 3 = RGB), opacity, scale, rotation
    shoulders: CNN on the local map -> attribute plane; points on an image-aligned plane behind the
               neck, inside (portrait mask below the neck - head depth-buffer mask), offset along rays
    render: splat the 32-channel features at the driving pose --UNet refiner--> RGB image

Everything except the frozen DINOv2 is trainable. Reenactment only moves Gaussian positions
(``pose_head`` / ``pose_shoulders``); all attributes are computed once per photo (``reconstruct``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..avatar.posing import NECK_FOLLOW
from ..avatar.shoulders import ShoulderOptions, shoulder_pixels
from ..head.lbs import HeadModelTensors, lbs
from ..head.lod import build_lods, subdivide_once
from ..render.camera import Camera
from .dinov2 import DinoConfig, DinoV2, preprocess


@dataclass
class OMGConfig:
    n_verts: int = 5023                 # LOD-0 vertex count of the head model (FLAME: 5,023)
    levels: tuple[int, ...] = (0, 1, 2)  # LODs the network produces
    dino_dim: int = 768                 # DINOv2 width (ViT-B/14: 768, ViT-S/14: 384)
    dino_input: int = 518               # DINOv2 input side: 518 / 14 = 37x37 tokens
    local_size: int = 296               # side of the upsampled local feature map
    dim: int = 256                      # global / local feature width
    decoder_layers: int = 2
    decoder_heads: int = 8
    self_attention: bool = True         # decoder self-attention among the V vertex queries (paper: yes)
    mlp_hidden: int = 256
    feat_channels: int = 32             # splatted colour features; the first 3 are RGB
    max_offset: float = 0.02            # metres: vertex offsets are tanh-bounded to this
    scale_range: float = 2.0            # log-scale range around the LOD's mean edge length
    shoulder_points: int = 9000         # about the paper's shoulder Gaussian count
    shoulder_plane: int = 96            # side of the shoulder attribute plane
    shoulder_hidden: int = 64
    shoulder_behind_neck: float = 0.03  # plane depth behind the neck joint (metres)
    shoulder_max_offset: float = 0.05   # metres along the ray
    unet_channels: tuple[int, ...] = (32, 64, 128, 256)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "OMGConfig":
        """The configuration a checkpoint stores (:meth:`to_dict`); ValueError/TypeError naming the
        field when a value is of the wrong kind or outside :data:`CONFIG_LIMITS` (a file's
        configuration sizes the network built for it: a crafted one must not make it enormous)."""
        if not isinstance(d, dict):
            raise TypeError(f"the configuration is a {type(d).__name__}, not a dict")
        known = {f for f in OMGConfig.__dataclass_fields__}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        for k, v in kw.items():
            _check_config_value(k, v)
        cfg = OMGConfig(**kw)
        # what the shapes alone do not show, and would fail at the first build instead of here:
        if cfg.dim % cfg.decoder_heads:     # the attention splits the width
            raise ValueError(f"config dim {cfg.dim} does not split into {cfg.decoder_heads} decoder heads")
        if cfg.dino_input % DinoConfig.patch:   # DINOv2 reads whole patches
            raise ValueError(f"config dino_input {cfg.dino_input} is not a multiple of {DinoConfig.patch} px")
        return cfg


#: (low, high) of each integer field of a checkpoint's OMGConfig (generous: 4-8x the paper's), and of
#: each entry of the tuple fields; levels are LODs 0-2
CONFIG_LIMITS: dict[str, tuple[int, int]] = {
    "n_verts": (3, 1_000_000), "levels": (0, 2), "dino_dim": (1, 4096), "dino_input": (14, 4096),
    "local_size": (1, 4096), "dim": (1, 4096), "decoder_layers": (0, 64), "decoder_heads": (1, 256),
    "mlp_hidden": (1, 16384), "feat_channels": (3, 1024), "shoulder_points": (0, 1_000_000),
    "shoulder_plane": (1, 1024), "shoulder_hidden": (1, 4096), "unet_channels": (1, 4096)}


def _check_config_value(name: str, value: Any) -> None:
    """ValueError/TypeError unless ``value`` fits field ``name`` of OMGConfig."""
    default = getattr(OMGConfig(), name)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError(f"config {name} is {value!r}, not true or false")
        return
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TypeError(f"config {name} is {value!r}, not a finite number")
        return
    items = value if isinstance(default, tuple) else (value,)
    if isinstance(default, tuple) and (not isinstance(value, tuple) or not 1 <= len(value) <= 8):
        raise ValueError(f"config {name} is not a list of 1 to 8 integers")
    lo, hi = CONFIG_LIMITS[name]
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"config {name} holds {v!r}, not an integer")
        if not lo <= v <= hi:
            raise ValueError(f"config {name} holds {v}, outside [{lo}, {hi}]")


# ------------------------------------------------------------------------------------------------
# small building blocks


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, d_out))


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        """x (B, N, C) queries, mem (B, M, C) keys/values -> (B, N, C)."""
        B, N, C = x.shape
        h = self.heads
        q = self.q(x).view(B, N, h, C // h).transpose(1, 2)                          # [B, h, N, d]
        k, v = self.kv(mem).view(B, -1, 2, h, C // h).permute(2, 0, 3, 1, 4)          # [B, h, M, d] x2
        y = F.scaled_dot_product_attention(q, k, v)                                   # [B, h, N, d]
        return self.proj(y.transpose(1, 2).reshape(B, N, C))


class DecoderLayer(nn.Module):
    """Pre-norm transformer decoder layer: self-attention among vertices, cross-attention to DINO
    tokens, MLP."""

    def __init__(self, dim: int, heads: int, self_attention: bool = True) -> None:
        super().__init__()
        # V x V attention dominates the CPU cost (5,023^2 scores per head); small test configs may drop it
        self.ln1 = nn.LayerNorm(dim) if self_attention else None
        self.self_attn = MultiHeadAttention(dim, heads) if self_attention else None
        self.ln2, self.cross_attn = nn.LayerNorm(dim), MultiHeadAttention(dim, heads)
        self.ln3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        if self.self_attn is not None:
            h = self.ln1(x)
            x = x + self.self_attn(h, h)
        x = x + self.cross_attn(self.ln2(x), mem)
        return x + self.mlp(self.ln3(x))


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(_groups(c_out), c_out), nn.GELU(),
                                  nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(_groups(c_out), c_out), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _groups(c: int) -> int:
    return math.gcd(c, 8)


class UNetRefiner(nn.Module):
    """(B, 32, H, W) splatted features -> (B, 3, H, W) RGB. Residual on the splatted RGB channels:
    the last convolution starts at zero, so an untrained refiner returns the coarse image."""

    def __init__(self, c_in: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.inc = ConvBlock(c_in, channels[0])
        self.down = nn.ModuleList([ConvBlock(a, b) for a, b in zip(channels[:-1], channels[1:])])
        self.up = nn.ModuleList([ConvBlock(b + a, a) for a, b in zip(channels[:-1], channels[1:])][::-1])
        self.out = nn.Conv2d(channels[0], 3, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        H, W = feats.shape[-2:]
        x = self.inc(feats)
        skips = [x]
        for blk in self.down:
            x = blk(F.avg_pool2d(x, 2, ceil_mode=True))
            skips.append(x)
        skips.pop()
        for blk in self.up:
            s = skips.pop()
            x = blk(torch.cat([F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False), s], 1))
        return (feats[:, :3] + self.out(x))[..., :H, :W]


# ------------------------------------------------------------------------------------------------
# geometry (torch, differentiable in the offsets)


def camera_tensors(camera: Camera, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.as_tensor(camera.K, dtype=torch.float32, device=device),
            torch.as_tensor(camera.viewmat, dtype=torch.float32, device=device))


def project(points: torch.Tensor, K: torch.Tensor, viewmat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3) world -> pixel coordinates (N, 2) (pixel-corner origin) and camera depth (N,)."""
    pc = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = pc[:, 2]
    uv = pc[:, :2] / z.clamp_min(1e-6)[:, None] * torch.stack([K[0, 0], K[1, 1]]) + torch.stack([K[0, 2], K[1, 2]])
    return uv, z


def blend_rotate(vectors: torch.Tensor, weights: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Rotate vectors (N, 3) by the skinning-weighted rotation of A (J, 4, 4); weights (N, J). Same as
    avatar.posing.rotate_blended (one frame)."""
    return torch.einsum("nj,jrc,nc->nr", weights, A[:, :3, :3], vectors)


def shoulder_transform(A: torch.Tensor) -> torch.Tensor:
    """(4, 4) shoulder transform from skinning transforms (5, 4, 4); avatar.posing.body_transforms."""
    return (1.0 - NECK_FOLLOW) * A[0] + NECK_FOLLOW * A[1]


def shoulder_transform_for(heads: HeadModelTensors, p: "HeadPose") -> torch.Tensor:
    """(4, 4) shoulder transform of one frame, joints from the neutral-expression mesh (as
    avatar.posing.body_transforms_for: expressions must not move the torso)."""
    out = lbs(heads, p.shape[None], torch.zeros_like(p.expr)[None], p.pose[None], p.transl[None])
    return shoulder_transform(out.transforms[0])


@dataclass
class HeadPose:
    """One frame of head-model parameters as torch tensors: shape (S,), expr (E,), pose (5, 3), transl (3,)."""

    shape: torch.Tensor
    expr: torch.Tensor
    pose: torch.Tensor
    transl: torch.Tensor

    @staticmethod
    def from_params(params, t: int = 0, device: str | torch.device = "cpu") -> "HeadPose":
        f = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=device)  # noqa: E731
        return HeadPose(f(params.shape), f(params.expr[t]), f(params.pose[t]), f(params.transl[t]))


@dataclass
class Reconstruction:
    """Everything the network computes once per photo, at one LOD (torch, differentiable).

    Head (N_l = V_l Gaussians, rest frame): rest_means (N_l, 3), offsets (V, 3) vertex offsets,
    features (N_l, 32), opacities (N_l,), scales (N_l, 3) metres, quats (N_l, 4) wxyz.
    Diagnostics: global_feats, local_feats, fused_feats (N_l, 256), visible (N_l,) bool.
    Shoulders (N_s Gaussians): rest means (N_s, 3) (source world mapped to rest by the inverse shoulder
    transform) and the same attributes.
    """

    level: int
    rest_means: torch.Tensor
    offsets: torch.Tensor
    features: torch.Tensor
    opacities: torch.Tensor
    scales: torch.Tensor
    quats: torch.Tensor
    global_feats: torch.Tensor
    local_feats: torch.Tensor
    fused_feats: torch.Tensor
    visible: torch.Tensor
    shoulders: dict[str, torch.Tensor] = field(default_factory=dict)
    identity: torch.Tensor | None = None


def _sparse(m) -> torch.Tensor:
    """scipy CSR -> torch sparse COO float32."""
    m = m.tocoo()
    idx = torch.as_tensor(np.stack([m.row, m.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.as_tensor(m.data, dtype=torch.float32), m.shape,
                                   check_invariants=False).coalesce()


def _spmm(S: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.sparse.mm(S, x)


# ------------------------------------------------------------------------------------------------
# the network


class OMG(nn.Module):
    """The OMG avatar network for one head-model topology (``faces``, ``weights``)."""

    def __init__(self, cfg: OMGConfig, faces: np.ndarray, skin_weights: np.ndarray, topology: bool = True) -> None:
        """topology=False: the learnable parts only, without the subdivision buffers (e.g. built on
        the meta device to check a checkpoint's shapes: model.state_check)."""
        super().__init__()
        if skin_weights.shape[0] != cfg.n_verts:
            raise ValueError(f"config has {cfg.n_verts} vertices, skinning weights {skin_weights.shape[0]}")
        self.cfg = cfg
        C, H = cfg.dim, cfg.mlp_hidden
        # DINO tokens -> model width; class token -> identity code added to every vertex query
        self.token_proj = nn.Linear(cfg.dino_dim, C)
        self.local_proj = nn.Conv2d(cfg.dino_dim, C, 1)
        self.identity_proj = nn.Linear(cfg.dino_dim, C)
        # global features: one learnable query per LOD-0 vertex, decoded over the DINO tokens
        self.vertex_embed = nn.Parameter(torch.randn(cfg.n_verts, C) * 0.02)
        self.decoder = nn.ModuleList([DecoderLayer(C, cfg.decoder_heads, cfg.self_attention)
                                      for _ in range(cfg.decoder_layers)])
        self.ln_global = nn.LayerNorm(C)
        self.offset_head = mlp(C, H, 3)
        # coarse to fine: one refinement MLP per subdivision level
        self.refine = nn.ModuleDict({str(l): mlp(C, H, C) for l in cfg.levels if l > 0})
        # attribute heads on the fused features
        self.color_head = mlp(C, H, cfg.feat_channels)
        self.opacity_head = mlp(C, H, 1)
        self.scale_head = mlp(C, H, 3)
        self.rotation_head = mlp(C, H, 4)
        # shoulders: CNN over the local map -> plane of Gaussian attributes
        n_attr = cfg.feat_channels + 1 + 3 + 4 + 1  # features, opacity, scale, rotation, ray offset
        S = cfg.shoulder_hidden
        self.shoulder_cnn = nn.Sequential(
            nn.Conv2d(C, S, 1), nn.GELU(),
            nn.Conv2d(S, S, 3, padding=1), nn.GELU(),
            nn.Conv2d(S, S, 3, padding=1), nn.GELU(),
            nn.Conv2d(S, n_attr, 1))
        self.refiner = UNetRefiner(cfg.feat_channels, cfg.unet_channels)
        for head in (self.offset_head, self.scale_head, self.rotation_head):
            nn.init.zeros_(head[-1].weight)   # start from the fitted mesh, mean-edge scales, identity rotation
            nn.init.zeros_(head[-1].bias)
        nn.init.constant_(self.opacity_head[-1].bias, 2.0)
        for l in cfg.levels:
            if l > 0:
                nn.init.zeros_(self.refine[str(l)][-1].weight)
                nn.init.zeros_(self.refine[str(l)][-1].bias)
        if topology:
            self._init_topology(faces, skin_weights)

    # -- topology: sparse subdivision matrices (not parameters; rebuilt from the head model) ------
    def _init_topology(self, faces: np.ndarray, skin_weights: np.ndarray) -> None:
        levels = tuple(range(max(self.cfg.levels) + 1))
        lods = build_lods(np.asarray(faces, np.int64), self.cfg.n_verts, levels)
        self.lod_faces = {l.level: l.faces for l in lods}
        for l in lods:
            self.register_buffer(f"up_{l.level}", _sparse(l.upsample), persistent=False)        # (V_l, V)
            self.register_buffer(f"skin_{l.level}", torch.as_tensor(np.asarray(l.upsample @ skin_weights, np.float32)),
                                 persistent=False)                                                  # (V_l, 5)
            pairs = np.concatenate([l.faces[:, [0, 1]], l.faces[:, [1, 2]], l.faces[:, [2, 0]]])
            edges = np.unique(np.sort(pairs, 1), axis=0)
            self.register_buffer(f"edges_{l.level}", torch.as_tensor(edges), persistent=False)
            if l.level > 0:  # level-1 -> level step (midpoint averaging), for the global features
                _, step = subdivide_once(self.lod_faces[l.level - 1], lods[l.level - 1].n_verts)
                self.register_buffer(f"step_{l.level}", _sparse(step), persistent=False)

    def upsample(self, level: int) -> torch.Tensor:
        return getattr(self, f"up_{level}")

    def n_gaussians(self, level: int) -> int:
        return int(self.upsample(level).shape[0])

    # -- 1. image encoding -------------------------------------------------------------------------
    def encode(self, dino: DinoV2, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image (3, H, W) in [0, 1] -> tokens (1, 1+h*w, C), identity (C,), local map (1, C, S, S)."""
        with torch.no_grad():  # the backbone is frozen
            f = dino(preprocess(image[None], self.cfg.dino_input))
        tokens = self.token_proj(f.tokens)
        identity = self.identity_proj(f.cls)[0]
        # project then upsample (a 1x1 conv commutes with bilinear upsampling; 37x37 is cheaper)
        local = F.interpolate(self.local_proj(f.patches), size=(self.cfg.local_size,) * 2, mode="bilinear",
                              align_corners=False)
        return tokens, identity, local

    # -- 2. global features and vertex offsets -----------------------------------------------------
    def global_features(self, tokens: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """(V, C) per-vertex global features."""
        x = (self.vertex_embed + identity)[None]
        for layer in self.decoder:
            x = layer(x, tokens)
        return self.ln_global(x)[0]

    # -- 3. coarse to fine ------------------------------------------------------------------------
    def subdivide_features(self, g: torch.Tensor, level: int) -> torch.Tensor:
        for l in range(1, level + 1):
            g = _spmm(getattr(self, f"step_{l}"), g)       # midpoint averaging
            g = g + self.refine[str(l)](g)                 # per-level refinement
        return g

    # -- 4. HPFS + OAFF -----------------------------------------------------------------------------
    def sample_local(self, local: torch.Tensor, uv: torch.Tensor, camera: Camera) -> torch.Tensor:
        """Bilinear sample of the local map (1, C, S, S) at pixel coords uv (N, 2) of ``camera``'s image."""
        grid = torch.stack([uv[:, 0] / camera.width, uv[:, 1] / camera.height], -1) * 2 - 1  # align_corners=False
        return F.grid_sample(local, grid[None, None], mode="bilinear", padding_mode="zeros",
                             align_corners=False)[0, :, 0].T

    @staticmethod
    def fuse(global_feats: torch.Tensor, local_feats: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """OAFF: fused = global + visible * local (occluded vertices keep only the global feature)."""
        return global_feats + visible[:, None].to(global_feats.dtype) * local_feats

    # -- 5. attribute heads --------------------------------------------------------------------------
    def head_attributes(self, fused: torch.Tensor, base_scale: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.color_head(fused)
        features = torch.cat([torch.sigmoid(c[:, :3]), c[:, 3:]], 1)   # first 3 channels = RGB in [0, 1]
        opacities = torch.sigmoid(self.opacity_head(fused)[:, 0])
        r = self.cfg.scale_range
        scales = base_scale * torch.exp(r * torch.tanh(self.scale_head(fused) / r))
        q = self.rotation_head(fused) + torch.tensor([1.0, 0, 0, 0], device=fused.device)
        return dict(features=features, opacities=opacities, scales=scales, quats=F.normalize(q, dim=-1))

    # -- the whole per-photo reconstruction ---------------------------------------------------------
    def reconstruct(self, dino: DinoV2, heads: HeadModelTensors, image: torch.Tensor, mask: torch.Tensor,
                    camera: Camera, src: HeadPose, level: int, shoulders: bool = True) -> Reconstruction:
        """One photo -> Gaussians at LOD ``level`` (see ``reconstruct_levels``)."""
        return self.reconstruct_levels(dino, heads, image, mask, camera, src, (level,), shoulders)[level]

    def reconstruct_levels(self, dino: DinoV2, heads: HeadModelTensors, image: torch.Tensor, mask: torch.Tensor,
                           camera: Camera, src: HeadPose, levels: tuple[int, ...],
                           shoulders: bool = True) -> dict[int, Reconstruction]:
        """One photo -> {level: Reconstruction}; the image encoding, global features and shoulders are
        computed once and shared by the levels.

        image (3, H, W) [0, 1] and mask (H, W) [0, 1] at the camera's resolution; src: the fitted
        head-model parameters of the photo; heads: the head model's tensors (same topology).
        """
        for level in levels:
            if level not in self.cfg.levels:
                raise ValueError(f"network was built for LODs {self.cfg.levels}, not {level}")
        dev = self.vertex_embed.device
        tokens, identity, local = self.encode(dino, image)
        g0 = self.global_features(tokens, identity)                                      # (V, C)
        offsets = self.cfg.max_offset * torch.tanh(self.offset_head(g0))                  # (V, 3)
        zero_pose = HeadPose(src.shape, torch.zeros_like(src.expr), torch.zeros_like(src.pose),
                             torch.zeros_like(src.transl))
        src_out = lbs(heads, src.shape[None], src.expr[None], src.pose[None], src.transl[None])
        K, Vm = camera_tensors(camera, dev)
        sh: dict[str, torch.Tensor] = {}
        out: dict[int, Reconstruction] = {}
        for level in sorted(levels):
            g = self.subdivide_features(g0, level)                                       # (V_l, C)
            # geometry at rest (neutral, zero pose) and at the source pose, with the offsets
            U, W = self.upsample(level), getattr(self, f"skin_{level}")
            rest = _posed_lod(heads, zero_pose, U, W, offsets)                             # (V_l, 3)
            posed = _spmm(U, src_out.vertices[0]) + blend_rotate(_spmm(U, offsets), W, src_out.transforms[0])
            # HPFS: project the subdivided vertices, sample the local feature map
            uv, _ = project(posed.detach(), K, Vm)
            local_feats = self.sample_local(local, uv, camera)                           # (V_l, C)
            # OAFF: visibility from the mesh depth buffer (no gradient: a discrete test)
            visible = torch.as_tensor(_visibility(posed.detach().cpu().numpy(), self.lod_faces[level], camera),
                                      device=dev)
            fused = self.fuse(g, local_feats, visible)
            edges = getattr(self, f"edges_{level}")
            base = (rest[edges[:, 0]] - rest[edges[:, 1]]).norm(dim=-1).mean().detach() * 0.5
            attrs = self.head_attributes(fused, base)
            if shoulders and not sh:
                sh = self.shoulders(local, mask, camera, src_out, shoulder_transform_for(heads, src), posed.detach())
            out[level] = Reconstruction(level=level, rest_means=rest, offsets=offsets, global_feats=g,
                                        local_feats=local_feats, fused_feats=fused, visible=visible,
                                        identity=identity, shoulders=sh, **attrs)
        return out

    # -- 6. shoulders ------------------------------------------------------------------------------
    def shoulders(self, local: torch.Tensor, mask: torch.Tensor, camera: Camera, src_out, M: torch.Tensor,
                  head_verts: torch.Tensor) -> dict[str, torch.Tensor]:
        """Shoulder Gaussians on an image-aligned plane behind the neck (rest frame), attributes from
        the CNN's plane sampled at a regular pixel grid over the shoulder region."""
        cfg, dev = self.cfg, local.device
        plane = self.shoulder_cnn(F.adaptive_avg_pool2d(local, cfg.shoulder_plane))       # (1, A, P, P)
        # region: portrait mask below the neck joint minus the head's depth-buffer mask
        # the LOD-0 mesh covers the same silhouette (the first V rows of every LOD are its vertices)
        head_mask = _head_mask(head_verts[: cfg.n_verts].cpu().numpy(), self.lod_faces[0], camera)
        K, Vm = camera_tensors(camera, dev)
        neck_uv, neck_z = project(src_out.joints[0, 1:2].detach(), K, Vm)
        region = shoulder_pixels(mask.detach().cpu().numpy(), head_mask, float(neck_uv[0, 1]),
                                 ShoulderOptions(head_erode_px=0))
        area = int(region.sum())
        if area == 0:
            return _empty_shoulders(cfg.feat_channels, dev)
        step = max(1.0, math.sqrt(area / cfg.shoulder_points))
        gx, gy = np.arange(step / 2, camera.width, step), np.arange(step / 2, camera.height, step)
        uu, vv = np.meshgrid(gx, gy)
        uv = np.stack([uu.ravel(), vv.ravel()], 1)
        rows = np.minimum(uv[:, 1].astype(int), camera.height - 1)
        cols = np.minimum(uv[:, 0].astype(int), camera.width - 1)
        uv = uv[region[rows, cols]]
        uv_t = torch.as_tensor(uv, dtype=torch.float32, device=dev)
        a = self.sample_local(plane, uv_t, camera)                                       # (N_s, A)
        C = cfg.feat_channels
        feats = torch.cat([torch.sigmoid(a[:, :3]), a[:, 3:C]], 1)
        opac = torch.sigmoid(a[:, C] + 2.0)
        # points: depth = plane + offset along the ray, unprojected, then camera -> world
        depth = neck_z[0] + cfg.shoulder_behind_neck + cfg.shoulder_max_offset * torch.tanh(a[:, C + 8])
        xn = (uv_t[:, 0] - K[0, 2]) / K[0, 0]
        yn = (uv_t[:, 1] - K[1, 2]) / K[1, 1]
        p_cam = torch.stack([xn, yn, torch.ones_like(xn)], 1) * depth[:, None]
        world = (p_cam - Vm[:3, 3]) @ Vm[:3, :3]
        # footprint of one grid cell at the plane depth (metres) sets the scale's unit
        base = (step * (neck_z[0] + cfg.shoulder_behind_neck) / K[0, 0]).detach() * 0.6
        scales = base * torch.exp(cfg.scale_range * torch.tanh(a[:, C + 1:C + 4] / cfg.scale_range))
        quats = F.normalize(a[:, C + 4:C + 8] + torch.tensor([1.0, 0, 0, 0], device=dev), dim=-1)
        # world (source pose) -> rest frame: the inverse of the source shoulder transform M
        rest = (world - M[:3, 3]) @ torch.linalg.inv(M[:3, :3]).T
        return dict(rest_means=rest, features=feats, opacities=opac, scales=scales, quats=quats,
                    uv=uv_t)

    # -- 7. posing (positions only) and rendering -----------------------------------------------------
    def pose_head(self, heads: HeadModelTensors, rec: Reconstruction, drv: HeadPose) -> torch.Tensor:
        """(N_l, 3) head Gaussian means at the driving parameters (identity from ``drv.shape``)."""
        return _posed_lod(heads, drv, self.upsample(rec.level), getattr(self, f"skin_{rec.level}"), rec.offsets)

    def pose_shoulders(self, heads: HeadModelTensors, rec: Reconstruction, drv: HeadPose) -> torch.Tensor:
        if not rec.shoulders:
            return rec.rest_means.new_zeros(0, 3)
        M = shoulder_transform_for(heads, drv)
        return rec.shoulders["rest_means"] @ M[:3, :3].T + M[:3, 3]

    def render(self, heads: HeadModelTensors, rec: Reconstruction, drv: HeadPose, camera: Camera,
               backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Splat at the driving pose -> (features (32, H, W), coarse RGB (3, H, W), alpha (H, W))."""
        from ..render import splat

        means = torch.cat([self.pose_head(heads, rec, drv), self.pose_shoulders(heads, rec, drv)])
        sh = rec.shoulders or _empty_shoulders(self.cfg.feat_channels, means.device)
        res = splat(means, torch.cat([rec.quats, sh["quats"]]), torch.cat([rec.scales, sh["scales"]]),
                    torch.cat([rec.opacities, sh["opacities"]]), torch.cat([rec.features, sh["features"]]),
                    camera, background=torch.zeros(self.cfg.feat_channels, device=means.device), backend=backend)
        img = res.image[0].to(means.device)
        return img, img[:3], res.alpha[0].to(means.device)


def _posed_lod(heads: HeadModelTensors, p: HeadPose, U: torch.Tensor, W: torch.Tensor,
               offsets: torch.Tensor) -> torch.Tensor:
    """LOD vertices posed like avatar.posing.pose: U @ lbs(p) + blended rotation of U @ offsets."""
    out = lbs(heads, p.shape[None], p.expr[None], p.pose[None], p.transl[None])
    return _spmm(U, out.vertices[0]) + blend_rotate(_spmm(U, offsets), W, out.transforms[0])


def _visibility(verts: np.ndarray, faces: np.ndarray, camera: Camera) -> np.ndarray:
    from ..render.depth import vertex_visibility

    return np.asarray(vertex_visibility(verts, faces, camera), bool)


def _head_mask(verts: np.ndarray, faces: np.ndarray, camera: Camera) -> np.ndarray:
    from ..render.depth import rasterize_depth

    return np.isfinite(rasterize_depth(verts, faces, camera).depth)


def _empty_shoulders(C: int, dev: torch.device) -> dict[str, torch.Tensor]:
    z = lambda *s: torch.zeros(*s, device=dev)  # noqa: E731
    return dict(rest_means=z(0, 3), features=z(0, C), opacities=z(0), scales=z(0, 3), quats=z(0, 4), uv=z(0, 2))


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
