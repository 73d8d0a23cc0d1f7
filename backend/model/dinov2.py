"""A minimal DINOv2 vision transformer (ViT-S/14, ViT-B/14) that loads the official checkpoints.

The official checkpoint files (``dinov2_vits14_pretrain.pth``, ``dinov2_vitb14_pretrain.pth``) are plain
state dicts; this module uses the same parameter names so ``load_state_dict`` takes them as they are:

    cls_token (1,1,D)  pos_embed (1,1+37*37,D)  mask_token (1,D)  patch_embed.proj.{weight,bias}
    blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}  norm

Register-free variants only (the "_reg" checkpoints add ``register_tokens`` and are refused with a
clear message). The backbone is frozen: OMG only reads its patch tokens (local features) and its
class token (identity feature).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError
from .state_check import check_state_fits, first_line, load_weights_file

#: the deepest DINOv2 a weights file may describe (the largest official one, ViT-g/14, has 40 blocks)
MAX_DEPTH = 64

# ImageNet statistics DINOv2 was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DinoConfig:
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    patch: int = 14
    pretrain_grid: int = 37          # official checkpoints: pos_embed for 518/14 = 37x37 patches
    layer_norm_eps: float = 1e-6

    @staticmethod
    def vits14() -> "DinoConfig":
        return DinoConfig(dim=384, depth=12, heads=6)

    @staticmethod
    def vitb14() -> "DinoConfig":
        return DinoConfig(dim=768, depth=12, heads=12)


ARCHS = {"vits14": DinoConfig.vits14, "vitb14": DinoConfig.vitb14}


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # [3, B, h, N, d]
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])                          # [B, h, N, d]
        return self.proj(y.transpose(1, 2).reshape(B, N, D))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as DINOv2's nn.GELU


class Block(nn.Module):
    def __init__(self, cfg: DinoConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg.dim, cfg.heads)
        self.ls1 = LayerScale(cfg.dim)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(cfg.dim, int(cfg.dim * cfg.mlp_ratio))
        self.ls2 = LayerScale(cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: DinoConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.dim, kernel_size=cfg.patch, stride=cfg.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, h*w, D]


@dataclass
class DinoFeatures:
    tokens: torch.Tensor      # (B, 1 + h*w, D) normalized output tokens (class token first)
    cls: torch.Tensor         # (B, D) class token: the identity feature
    patches: torch.Tensor     # (B, D, h, w) patch tokens as a feature grid


class DinoV2(nn.Module):
    """ViT with DINOv2's parameter names. Input: (B, 3, H, W) ImageNet-normalized, H, W multiples of 14."""

    def __init__(self, cfg: DinoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.pretrain_grid**2, cfg.dim))
        self.mask_token = nn.Parameter(torch.zeros(1, cfg.dim))  # unused at inference; kept for key parity
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=1e-6)

    def interpolate_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """(1, 1 + h*w, D) position embeddings for an h x w patch grid (bicubic, in float32)."""
        n = self.pos_embed.shape[1] - 1
        if n == h * w and h == w:
            return self.pos_embed
        side = int(math.sqrt(n))
        grid = self.pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
        # size= (not DINOv2's scale_factor with a 0.1 offset): identical at the pretraining grid,
        # and matches transformers' Dinov2Model, which the parity test checks against.
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        grid = grid.to(self.pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat([self.pos_embed[:, :1], grid], dim=1)

    def forward(self, x: torch.Tensor) -> DinoFeatures:
        B, _, H, W = x.shape
        p = self.cfg.patch
        if H % p or W % p:
            raise ValueError(f"DINOv2 input {H}x{W} is not a multiple of the patch size {p}")
        h, w = H // p, W // p
        t = self.patch_embed(x)                                               # [B, h*w, D]
        t = torch.cat([self.cls_token.expand(B, -1, -1), t], dim=1)           # [B, 1+h*w, D]
        t = t + self.interpolate_pos_embed(h, w)
        for blk in self.blocks:
            t = blk(t)
        t = self.norm(t)
        patches = t[:, 1:].transpose(1, 2).reshape(B, -1, h, w)
        return DinoFeatures(tokens=t, cls=t[:, 0], patches=patches)


def preprocess(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 3, size, size) resized (bilinear) and ImageNet-normalized."""
    x = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def _arch_of(state: dict[str, torch.Tensor]) -> DinoConfig:
    """Infer the architecture from a state dict's shapes (depth from the block count, width from cls_token)."""
    dim = state["cls_token"].shape[-1]
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("blocks.")}
    depth = 1 + max(blocks)
    if depth > MAX_DEPTH:                # ViT-g/14 has 40 blocks; even empty ones would take minutes to build
        raise ValueError(f"{depth} blocks, more than any DINOv2 ({MAX_DEPTH} at most)")
    if blocks != set(range(depth)):      # a crafted index must not name a deeper network than the file holds
        raise ValueError(f"blocks {sorted(set(range(depth)) - blocks)[:3]} ... are missing")
    heads = {384: 6, 768: 12, 1024: 16, 1536: 24}.get(dim, max(1, dim // 64))
    if dim < 1 or dim % heads:
        raise ValueError(f"width {dim} does not split into {heads} heads")
    grid = int(round(math.sqrt(state["pos_embed"].shape[1] - 1)))
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    return DinoConfig(dim=dim, depth=depth, heads=heads, mlp_ratio=hidden / dim, pretrain_grid=grid)


def load_dinov2(path: str | Path, device: str | torch.device = "cpu") -> DinoV2:
    """Load an official DINOv2 checkpoint (register-free ViT-S/14, ViT-B/14, ...) frozen in eval mode.

    Read by model.state_check.load_weights_file (``weights_only``: a malicious pickle cannot run code;
    no compressed records, no tensors beyond the file's size). Raises InputError
    naming the file when it is missing, not a tensor state dict, or not a DINOv2 ViT.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "DINOv2 checkpoint not found")
    state = load_weights_file(path, "weights file")
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # some training checkpoints nest the weights
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise InputError(path, "expected a state dict of tensors (the official DINOv2 *_pretrain.pth file)")
    if any(k.startswith("register_tokens") for k in state):
        raise InputError(path, "DINOv2 with registers (*_reg4_*) is not supported; use the register-free checkpoint")
    needed = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "norm.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise InputError(path, f"not a DINOv2 ViT checkpoint (missing {', '.join(missing)})")
    if "blocks.0.mlp.w12.weight" in state:
        raise InputError(path, "the SwiGLU ViT-g/14 checkpoint is not supported; use ViT-S/14 or ViT-B/14")
    try:
        cfg = _arch_of(state)
    except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError) as exc:
        raise InputError(path, f"not a DINOv2 ViT checkpoint (its shapes name no architecture: "
                               f"{type(exc).__name__}: {first_line(exc)})") from None
    if "mask_token" not in state:
        state = dict(state, mask_token=torch.zeros(1, cfg.dim))
    # built on the meta device first: a crafted width or depth would allocate without bound
    check_state_fits(lambda: DinoV2(cfg), state, path, "DINOv2 weights")
    model = DinoV2(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(path, f"DINOv2 weights do not match the architecture: {first_line(exc)}") from None
    model.requires_grad_(False)
    return model.eval().to(device)
