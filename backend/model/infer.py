"""Inference: a trained OMG checkpoint + DINOv2 weights turn one analysed photo into a GaussianAvatar,
the same structure the analytic path builds (backend/avatar), so posing, files and Blender import
work unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..avatar.gaussians import GaussianAvatar, GaussianSet, SkinnedPart
from ..avatar.posing import body_weights
from ..errors import InputError
from ..head.lbs import HeadModelTensors
from ..head.model import HeadModel
from ..progress import Progress
from .dinov2 import DinoV2, load_dinov2
from .omg import OMG, HeadPose, OMGConfig
from .train import check_head_model, checkpoint_network, load_checkpoint


@dataclass
class LearnedModel:
    """A loaded network and backbone on one device."""

    net: OMG
    dino: DinoV2
    device: torch.device
    checkpoint: str
    dinov2: str


def _device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_learned(checkpoint: str | Path, dinov2: str | Path | None, model: HeadModel,
                 device: str | torch.device | None = "auto") -> LearnedModel:
    """Load an OMG checkpoint (weights_only) for ``model``'s topology and the DINOv2 backbone it needs."""
    if dinov2 is None:
        raise InputError(checkpoint, "the learned method needs the DINOv2 weights too "
                                     "(--dinov2 dinov2_vitb14_pretrain.pth)")
    dev = _device(device)
    ck = load_checkpoint(checkpoint)
    check_head_model(ck, model, checkpoint)
    cfg, state = checkpoint_network(ck, model, checkpoint)
    dino = load_dinov2(dinov2, dev)
    if dino.cfg.dim != cfg.dino_dim:
        raise InputError(dinov2, f"DINOv2 width {dino.cfg.dim} does not match the checkpoint's {cfg.dino_dim} "
                                 f"(trained with {'ViT-B/14' if cfg.dino_dim == 768 else 'another DINOv2'})")
    net = OMG(cfg, model.faces, model.weights)
    net.load_state_dict(state)
    return LearnedModel(net.to(dev).eval(), dino, dev, str(checkpoint), str(dinov2))


def _gaussian_set(means: torch.Tensor, attrs: dict[str, torch.Tensor] | Any) -> GaussianSet:
    get = (lambda k: attrs[k]) if isinstance(attrs, dict) else (lambda k: getattr(attrs, k))  # noqa: E731
    f = get("features").detach().cpu().numpy()
    return GaussianSet(means=means.detach().cpu().numpy(), quats=get("quats").detach().cpu().numpy(),
                       scales=get("scales").detach().cpu().numpy(), opacities=get("opacities").detach().cpu().numpy(),
                       colors=np.clip(f[:, :3], 0, 1), features=f)


@torch.no_grad()
def reconstruct_avatar(model: HeadModel, observation, fit, lods=(0, 1, 2), checkpoint: str | Path | None = None,
                       dinov2: str | Path | None = None, progress: Progress | None = None,
                       learned: LearnedModel | None = None, device: str | torch.device | None = "auto",
                       head_model_path: str | None = None) -> GaussianAvatar:
    """The learned build: (FaceObservation, FitResult) -> GaussianAvatar at ``lods``.

    observation: needs ``image512`` (S, S, 3) uint8 and ``mask`` (S, S) float [0, 1];
    fit: needs ``params`` (HeadParams, T=1) and ``camera`` (the source Camera, S x S).
    Pass ``learned`` (from ``load_learned``) to reuse a loaded network; otherwise ``checkpoint`` and
    ``dinov2`` are loaded here. Head Gaussians are at rest with the predicted vertex offsets in
    ``vertex_offsets`` (avatar.posing applies them); the shoulders are mapped to rest by the inverse
    source body transform and become the part "body", as in the analytic path.
    """
    progress = progress or Progress()
    if learned is None:
        if checkpoint is None:
            raise InputError(None, "the learned method needs --checkpoint (trained OMG weights)")
        with progress.stage("load network"):
            learned = load_learned(checkpoint, dinov2, model, device)
    net, dev = learned.net, learned.device
    levels = tuple(sorted({int(l) for l in lods}))
    missing = [l for l in levels if l not in net.cfg.levels]
    if missing:
        raise InputError(learned.checkpoint, f"checkpoint has no LOD {missing} (it has {list(net.cfg.levels)})")
    camera = fit.camera
    image = torch.as_tensor(np.asarray(observation.image512), dtype=torch.float32, device=dev).permute(2, 0, 1) / 255.0
    mask = torch.as_tensor(np.asarray(observation.mask, np.float32), device=dev)
    if image.shape[1:] != (camera.height, camera.width):
        raise ValueError(f"photo crop {tuple(image.shape[1:])} does not match the camera "
                         f"{camera.width}x{camera.height}")
    heads = HeadModelTensors.from_model(model, dev)
    src = HeadPose.from_params(fit.params, 0, dev)
    progress.report(0.1, "learned reconstruction")
    with progress.stage("network"):
        recs = net.reconstruct_levels(learned.dino, heads, image, mask, camera, src, levels)
    first = recs[levels[0]]
    sh = first.shoulders
    body = _gaussian_set(sh["rest_means"], sh)
    avatar = GaussianAvatar(
        head_model_name=model.name, head_model_path=head_model_path, params=fit.params, camera=camera,
        vertex_offsets=first.offsets.cpu().numpy().astype(np.float32),
        lods={l: _gaussian_set(r.rest_means, r) for l, r in recs.items()},
        lod_offsets={l: np.zeros((net.n_gaussians(l), 3), np.float32) for l in levels},
        parts=[SkinnedPart("body", body, body_weights(len(body), model.weights.shape[1]))],
        options={"method": "learned", "checkpoint": learned.checkpoint, "dinov2": learned.dinov2,
                 "lods": list(levels), "config": net.cfg.to_dict()},
        method="learned",
    )
    progress.report(1.0, "learned reconstruction done")
    return avatar

