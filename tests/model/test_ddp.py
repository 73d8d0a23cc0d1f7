"""Multi-process training (DDP, gloo on CPU, 2 ranks): gradients are averaged, so the ranks stay identical."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp


def _rank_main(rank: int, world: int, data: str, dino_path: str, out: str, port: int) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from omg_helpers import small_config

    from backend.head.loader import load_head_model
    from backend.model.data import FrameDataset
    from backend.model.dinov2 import load_dinov2
    from backend.model.train import Trainer, TrainConfig, build_network

    model = load_head_model(None)
    torch.manual_seed(0)
    net = build_network(small_config(model.n_verts, levels=(0,), self_attention=False), model)
    cfg = TrainConfig(steps=2, batch_size=1, lr=1e-3, perceptual_size=56, checkpoint_every=0, splat_backend="cpu")
    tr = Trainer(net, load_dinov2(dino_path), model, FrameDataset(data), cfg, "cpu")
    assert tr.world == world and torch.distributed.is_initialized()
    parts = tr.step()
    torch.save({"params": [p.detach().clone() for p in net.parameters()], "loss": parts["loss"]},
               os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_ddp_two_ranks_stay_in_sync(tmp_path, head_model, small_dino):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed not available")
    from backend.model.synthetic import make_synthetic_dataset

    data = tmp_path / "data"
    make_synthetic_dataset(data, head_model, n_clips=2, n_frames=3, size=64, seed=3)
    dino_path = tmp_path / "dino.pth"
    torch.save(small_dino.state_dict(), dino_path)
    port = 29500 + os.getpid() % 1000
    mp.spawn(_rank_main, args=(2, str(data), str(dino_path), str(tmp_path), port), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["loss"] != r1["loss"]  # each rank drew its own pair...
    moved = 0
    for a, b in zip(r0["params"], r1["params"]):
        assert torch.equal(a, b)     # ...but the averaged gradients keep the weights identical
        moved += 1
    assert moved > 10
