"""``python -m backend train --data DIR --dinov2 dinov2_vitb14_pretrain.pth``: train the OMG network.

Multi-GPU: ``torchrun --nproc_per_node=N -m backend train ...`` (DDP starts when WORLD_SIZE > 1).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "train the learned OMG network on a prepared dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="prepared dataset folder (python -m backend prepare-data)")
    parser.add_argument("--dinov2", required=True, help="official DINOv2 weights (dinov2_vitb14_pretrain.pth)")
    parser.add_argument("--out", default="omg_run", help="output folder: omg_last.pt, log.jsonl (default omg_run)")
    parser.add_argument("--steps", type=int, default=None, help="total iterations (default 100000)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per step and GPU (default 4)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-4), linear decay to 0")
    parser.add_argument("--resume", default=None, help="checkpoint to resume (weights, optimizer, step, RNG)")
    parser.add_argument("--preset", choices=("paper", "tiny"), default="paper",
                        help="network size: paper (default) or tiny (CPU smoke runs)")
    parser.add_argument("--levels", default="0,1,2", help="LODs the network produces (default 0,1,2)")
    parser.add_argument("--head-model", default=None, help="FLAME model file (default: the bundled stand-in)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--json", default=None, help="write figures (losses, timing) to this JSON file")


def _network_config(preset: str, n_verts: int, dino_dim: int, levels: tuple[int, ...]):
    from ..model.omg import OMGConfig

    if preset == "tiny":
        return OMGConfig(n_verts=n_verts, levels=levels, dino_dim=dino_dim, dino_input=112, local_size=48, dim=32,
                         decoder_heads=4, mlp_hidden=32, self_attention=False, shoulder_points=400,
                         shoulder_plane=24, shoulder_hidden=16, unet_channels=(8, 16))
    return OMGConfig(n_verts=n_verts, levels=levels, dino_dim=dino_dim)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..head.loader import load_head_model
    from ..model.data import FrameDataset
    from ..model.dinov2 import load_dinov2
    from ..model.omg import OMGConfig, count_parameters
    from ..model.train import Trainer, TrainConfig, build_network, load_checkpoint, train
    from ..progress import tqdm_progress
    from ..stats import write_json

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_head_model(args.head_model)
    dataset = FrameDataset(args.data)
    dino = load_dinov2(args.dinov2, device)
    if args.resume:
        ck = load_checkpoint(args.resume)
        cfg = OMGConfig.from_dict(ck["config"])
        tcfg = TrainConfig.from_dict(ck["train"])
    else:
        levels = tuple(int(x) for x in args.levels.split(","))
        cfg = _network_config(args.preset, model.n_verts, dino.cfg.dim, levels)
        tcfg = TrainConfig(seed=args.seed)
        if args.preset == "tiny":
            tcfg.perceptual_size = 56
    for name, attr in (("steps", "steps"), ("batch_size", "batch_size"), ("lr", "lr"), ("log_every", "log_every"),
                       ("checkpoint_every", "checkpoint_every")):
        if getattr(args, name) is not None:
            setattr(tcfg, attr, getattr(args, name))
    net = build_network(cfg, model)
    trainer = Trainer(net, dino, model, dataset, tcfg, device)
    if args.resume:
        trainer.load(args.resume)
    n_params = count_parameters(net)
    if trainer.rank == 0:
        print(f"OMG network: {n_params / 1e6:.2f}M trainable parameters, LODs {list(cfg.levels)}, "
              f"{len(dataset.clips)} clips / {len(dataset)} frames, device {trainer.device}, "
              f"world size {trainer.world}")
    progress, close = tqdm_progress("train", enabled=False)
    t0 = time.perf_counter()
    start = trainer.step_count
    try:
        history = train(trainer, args.out, progress)
    finally:
        close()
    seconds = time.perf_counter() - t0
    if trainer.rank == 0:
        k = max(1, min(10, len(history) // 2))
        first = [h["loss"] for h in history[:k]]
        last = [h["loss"] for h in history[-k:]]
        figures = {"steps_run": len(history), "start_step": start, "final_step": trainer.step_count,
                   "seconds": seconds, "seconds_per_step": seconds / max(1, len(history)),
                   "trainable_parameters": n_params, "loss_first": sum(first) / len(first) if first else None,
                   "loss_last": sum(last) / len(last) if last else None,
                   "checkpoint": str(Path(args.out) / "omg_last.pt"), "device": str(trainer.device),
                   "world_size": trainer.world}
        print(f"done: {len(history)} steps in {seconds:.1f}s; loss {figures['loss_first']} -> {figures['loss_last']}; "
              f"checkpoint {figures['checkpoint']}")
        write_json(args.json, figures)
    if trainer.world > 1:
        torch.distributed.destroy_process_group()
    return 0
