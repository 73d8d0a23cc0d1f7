"""Training the OMG network: self-reenactment pairs, the paper's LOD schedule, Adam with linear decay,
resumable checkpoints (weights, optimizer, schedule, RNG states), multi-GPU with torchrun (DDP).

    torchrun --nproc_per_node=8 -m backend train --data DIR --dinov2 dinov2_vitb14_pretrain.pth
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import InputError
from ..head.lbs import HeadModelTensors
from ..head.model import HeadModel
from ..progress import Progress
from .data import Frame, FrameDataset
from .dinov2 import DinoV2
from .losses import LossWeights, total_loss
from .omg import OMG, HeadPose, OMGConfig

CHECKPOINT_FORMAT = "omg-checkpoint-v1"


@dataclass
class TrainConfig:
    steps: int = 100_000
    batch_size: int = 4           # pairs per step and per process
    lr: float = 1e-4
    lr_end_factor: float = 0.0    # linear decay from lr to lr * this at the last step
    perceptual_size: int = 224    # DINOv2 input side for the perceptual term (multiple of 14)
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 1000
    splat_backend: str = "auto"
    weights: LossWeights = field(default_factory=LossWeights)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        w = LossWeights(**d.pop("weights", {}))
        known = set(TrainConfig.__dataclass_fields__)
        return TrainConfig(weights=w, **{k: v for k, v in d.items() if k in known})


def lod_for_step(step: int, total_steps: int, seed: int, levels: tuple[int, ...] = (0, 1, 2)) -> int:
    """The paper's schedule: LOD 0 for the first 10 % of iterations, LOD 1 until 30 %, then random
    with P(2, 1, 0) = (0.7, 0.2, 0.1). Deterministic in (seed, step), so every DDP rank agrees.
    Levels the network lacks fall back to the highest one it has."""
    f = step / max(1, total_steps)
    if f < 0.1:
        lvl = 0
    elif f < 0.3:
        lvl = 1
    else:
        u = np.random.default_rng([seed, step, 7]).random()
        lvl = 2 if u < 0.7 else (1 if u < 0.9 else 0)
    return max(l for l in levels if l <= lvl) if any(l <= lvl for l in levels) else min(levels)


def _pose(frame: Frame, device: torch.device) -> HeadPose:
    return HeadPose.from_params(frame.params, 0, device)


class TrainModule(nn.Module):
    """Wraps the network for one training step so DDP sees a single ``forward`` (DINOv2 inside, frozen)."""

    def __init__(self, net: OMG, dino: DinoV2, heads: HeadModelTensors, cfg: TrainConfig) -> None:
        super().__init__()
        self.net, self.dino, self.heads, self.cfg = net, dino, heads, cfg

    def forward(self, pairs: list[tuple[Frame, Frame]], level: int) -> tuple[torch.Tensor, dict[str, float]]:
        dev = self.net.vertex_embed.device
        feats, targets, offsets = [], [], []
        for src, drv in pairs:
            rec = self.net.reconstruct(self.dino, self.heads, src.image.to(dev), src.mask.to(dev), src.camera,
                                       _pose(src, dev), level)
            f, _, _ = self.net.render(self.heads, rec, _pose(drv, dev), drv.camera, backend=self.cfg.splat_backend)
            feats.append(f)
            targets.append((drv.image * drv.mask[None]).to(dev))  # the avatar renders on black
            offsets.append(rec.offsets)
        feats_t = torch.stack(feats)
        coarse = feats_t[:, :3]
        refined = self.net.refiner(feats_t)
        return total_loss(coarse, refined, torch.stack(targets), torch.stack(offsets), self.dino,
                          self.cfg.weights, self.cfg.perceptual_size)


def _dist_info() -> tuple[int, int, int]:
    env = os.environ
    return int(env.get("WORLD_SIZE", "1")), int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))


class Trainer:
    """Holds network, optimizer, schedule and RNG state; ``step()`` runs one iteration."""

    def __init__(self, net: OMG, dino: DinoV2, head_model: HeadModel, dataset: FrameDataset, cfg: TrainConfig,
                 device: str | torch.device = "cpu") -> None:
        self.world, self.rank, local_rank = _dist_info()
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
            if torch.cuda.is_available():
                device = f"cuda:{local_rank}"
                torch.cuda.set_device(local_rank)
        self.device = torch.device(device)
        self.cfg, self.dataset, self.head_model = cfg, dataset, head_model
        self.net = net.to(self.device)
        self.dino = dino.to(self.device).eval().requires_grad_(False)
        heads = HeadModelTensors.from_model(head_model, self.device)
        self.module: nn.Module = TrainModule(self.net, self.dino, heads, cfg)
        if self.world > 1:
            ignore = [f"net.{n}" for n, _ in self.net.named_buffers()]  # sparse topology, identical on all ranks
            nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.module, ignore)
            self.module = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)  # LOD 0 steps leave the level-1/2 refiners unused
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr)
        end = cfg.lr_end_factor
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: 1.0 - (1.0 - end) * min(s, cfg.steps) / max(1, cfg.steps))
        self.step_count = 0
        # per-rank pair sampling; the LOD schedule is shared (seeded by step)
        self.rng = np.random.default_rng([cfg.seed, self.rank])
        torch.manual_seed(cfg.seed + self.rank)
        random.seed(cfg.seed + self.rank)

    # -- one iteration -----------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        level = lod_for_step(self.step_count, self.cfg.steps, self.cfg.seed, self.net.cfg.levels)
        pairs = [self.dataset.pair(self.rng) for _ in range(self.cfg.batch_size)]
        self.net.train()
        loss, parts = self.module(pairs, level)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.step_count += 1
        parts.update(loss=float(loss.detach()), level=level, lr=self.scheduler.get_last_lr()[0],
                     seconds=time.perf_counter() - t0, step=self.step_count)
        return parts

    # -- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        rng = {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.net.cfg.to_dict(),
            "train": self.cfg.to_dict(),
            "head_model": head_model_signature(self.head_model),
            "dino": {"dim": self.dino.cfg.dim, "depth": self.dino.cfg.depth},
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step_count,
            "rng": rng,
        }

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint (rank 0 only under DDP); atomic rename so a crash never leaves half a file."""
        path = Path(path)
        if self.rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            torch.save(self.state(), tmp)
            os.replace(tmp, path)
        return path

    def load(self, path: str | Path) -> None:
        """Resume: weights, optimizer, LR schedule, step and RNG states (next steps are identical)."""
        ck = load_checkpoint(path)
        check_head_model(ck, self.head_model, path)
        _, state = checkpoint_network(ck, self.head_model, path)
        self.net.load_state_dict(state)
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.step_count = int(ck["step"])
        rng = ck["rng"]
        if self.rank == 0:  # other ranks keep their own streams (re-seeded from the step)
            self.rng.bit_generator.state = rng["numpy"]
            torch.set_rng_state(rng["torch"])
            random.setstate(_as_tuple(rng["python"]))
        else:
            self.rng = np.random.default_rng([self.cfg.seed, self.rank, self.step_count])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def head_model_signature(model: HeadModel) -> dict[str, Any]:
    import hashlib

    return {"name": model.name, "n_verts": int(model.n_verts),
            "faces_sha1": hashlib.sha1(np.ascontiguousarray(model.faces, np.int64).tobytes()).hexdigest()}


def check_head_model(ck: dict[str, Any], model: HeadModel, path: str | Path) -> None:
    sig = ck.get("head_model", {})
    sig = sig if isinstance(sig, dict) else {}
    if sig.get("n_verts") != model.n_verts or sig.get("faces_sha1") != head_model_signature(model)["faces_sha1"]:
        name, n = (" ".join(str(sig.get(k)).split())[:60] for k in ("name", "n_verts"))
        raise InputError(path, f"checkpoint was trained on head model '{name}' ({n} "
                               f"vertices), not '{model.name}' ({model.n_verts} vertices)")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read an OMG checkpoint with ``weights_only=True`` (no code runs); InputError on a wrong file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "OMG checkpoint not found")
    from .state_check import load_weights_file

    ck = load_weights_file(path, "checkpoint")
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, f"not an OMG checkpoint (expected format {CHECKPOINT_FORMAT}); "
                               "a DINOv2 file goes to --dinov2")
    return ck


def checkpoint_network(ck: dict[str, Any], model: HeadModel, path: str | Path) -> tuple[OMGConfig, dict]:
    """The configuration and network weights of a checkpoint read by :func:`load_checkpoint`,
    checked before any network is built: the configuration's values in bounds
    (OMGConfig.from_dict), the weights exactly the tensors the network for ``model`` has
    (model.state_check, built on the meta device). InputError naming ``path`` otherwise."""
    from .state_check import check_state_fits, first_line

    try:
        cfg = OMGConfig.from_dict(ck["config"])
        state = ck["model"]
        if not isinstance(state, dict):
            raise TypeError(f"its weights are a {type(state).__name__}, not a dict of tensors")
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(path, f"checkpoint configuration unusable ({type(exc).__name__}: {first_line(exc)})") from None
    check_state_fits(lambda: OMG(cfg, model.faces, model.weights, topology=False), state, path, "OMG weights")
    return cfg, state


def build_network(cfg: OMGConfig, head_model: HeadModel) -> OMG:
    return OMG(cfg, head_model.faces, head_model.weights)


@torch.no_grad()
def evaluate(net: OMG, dino: DinoV2, head_model: HeadModel, dataset: FrameDataset, pairs: list[tuple[int, int, int]],
             level: int, backend: str = "auto") -> dict[str, float]:
    """Mean L2 / PSNR of the coarse and refined images on fixed (clip, source, driving) pairs."""
    dev = net.vertex_embed.device
    heads = HeadModelTensors.from_model(head_model, dev)
    net.eval()
    l2c, l2r = [], []
    for ci, s, d in pairs:
        src, drv = dataset.frame(ci, s), dataset.frame(ci, d)
        rec = net.reconstruct(dino, heads, src.image.to(dev), src.mask.to(dev), src.camera, _pose(src, dev), level)
        f, coarse, _ = net.render(heads, rec, _pose(drv, dev), drv.camera, backend=backend)
        refined = net.refiner(f[None])[0]
        target = (drv.image * drv.mask[None]).to(dev)
        l2c.append(float(((coarse - target) ** 2).mean()))
        l2r.append(float(((refined.clamp(0, 1) - target) ** 2).mean()))
    psnr = lambda m: float(-10 * np.log10(max(m, 1e-12)))  # noqa: E731
    return {"l2_coarse": float(np.mean(l2c)), "l2_refined": float(np.mean(l2r)),
            "psnr_coarse": psnr(float(np.mean(l2c))), "psnr_refined": psnr(float(np.mean(l2r)))}


def train(trainer: Trainer, out_dir: str | Path, progress: Progress | None = None,
          log=print) -> list[dict[str, float]]:
    """Run until ``cfg.steps``; logs every ``log_every`` steps (stdout + out_dir/log.jsonl),
    checkpoints every ``checkpoint_every`` steps and at the end (out_dir/omg_last.pt)."""
    cfg = trainer.cfg
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    log_file = (out / "log.jsonl").open("a") if trainer.rank == 0 else None
    try:
        while trainer.step_count < cfg.steps:
            parts = trainer.step()
            history.append(parts)
            s = trainer.step_count
            if log_file is not None:
                log_file.write(json.dumps(parts) + "\n")
            if trainer.rank == 0 and (s % cfg.log_every == 0 or s == 1 or s == cfg.steps):
                log(f"step {s}/{cfg.steps} lod {parts['level']} loss {parts['loss']:.4f} "
                    f"(coarse l2 {parts['coarse_l2']:.4f}, refined l2 {parts['refined_l2']:.4f}, "
                    f"offset {parts['offset']:.2e}) lr {parts['lr']:.2e} {parts['seconds']:.2f}s/step")
            if progress is not None:
                progress.report(s / cfg.steps, f"step {s}/{cfg.steps} loss {parts['loss']:.4f}")
            if cfg.checkpoint_every > 0 and s % cfg.checkpoint_every == 0:
                trainer.save(out / "omg_last.pt")
        trainer.save(out / "omg_last.pt")
    finally:
        if log_file is not None:
            log_file.close()
    return history
