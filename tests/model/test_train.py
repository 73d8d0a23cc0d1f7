"""Training pipeline: LOD schedule, a CPU run that learns on synthetic renders, resumable checkpoints,
the learned build from the trained checkpoint, the train CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omg_helpers import small_config

from backend.avatar.posing import pose
from backend.errors import InputError
from backend.head.lbs import HeadModelTensors
from backend.model.data import FrameDataset
from backend.model.infer import load_learned, reconstruct_avatar
from backend.preview.refiner import load_refiner
from backend.model.omg import HeadPose
from backend.model.synthetic import make_synthetic_dataset
from backend.model.train import (Trainer, TrainConfig, build_network, evaluate, load_checkpoint, lod_for_step,
                                 train)

SIZE = 96
TRAIN_CLIPS = ["clip000", "clip001", "clip002"]
HELD_OUT = ["clip003"]  # an identity (shape, texture, clothes, background) never seen in training
HELD_PAIRS = [(0, 0, 1), (0, 2, 3), (0, 4, 1), (0, 3, 0)]


def test_lod_schedule_follows_the_paper():
    total = 20000
    levels = [lod_for_step(s, total, seed=3) for s in range(total)]
    assert set(levels[:2000]) == {0}                 # first 10 %: LOD 0
    assert set(levels[2000:6000]) == {1}             # 10-30 %: LOD 1
    rest = np.array(levels[6000:])
    freq = [np.mean(rest == l) for l in (2, 1, 0)]
    np.testing.assert_allclose(freq, [0.7, 0.2, 0.1], atol=0.015)  # 14,000 draws: 3 sigma ~ 0.012
    # deterministic in (seed, step): every DDP rank picks the same LOD
    assert [lod_for_step(s, total, 3) for s in range(6000, 6100)] == levels[6000:6100]
    assert [lod_for_step(s, total, 4) for s in range(6000, 6100)] != levels[6000:6100]
    # a network without LOD 2 falls back to its highest level
    assert max(lod_for_step(s, total, 3, levels=(0, 1)) for s in range(total)) == 1


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory, head_model):
    root = tmp_path_factory.mktemp("omg_data")
    make_synthetic_dataset(root, head_model, n_clips=4, n_frames=5, size=SIZE, seed=7)
    return root


@pytest.fixture(scope="module")
def dino_file(tmp_path_factory, small_dino):
    path = tmp_path_factory.mktemp("dino") / "dinov2_small.pth"
    torch.save(small_dino.state_dict(), path)
    return path


def _trainer(head_model, small_dino, root, steps, levels=(0, 1), lr=3e-3, seed=0, init_seed=None):
    torch.manual_seed(seed if init_seed is None else init_seed)
    net = build_network(small_config(head_model.n_verts, levels=levels, self_attention=False), head_model)
    cfg = TrainConfig(steps=steps, batch_size=1, lr=lr, perceptual_size=56, log_every=10, checkpoint_every=0,
                      splat_backend="cpu", seed=seed)
    return Trainer(net, small_dino, head_model, FrameDataset(root, clips=TRAIN_CLIPS), cfg)


def test_dataset_format(dataset_dir):
    meta = json.loads((dataset_dir / "dataset.json").read_text())
    assert meta["format"] == "omg-train-v1" and meta["image_size"] == SIZE and len(meta["clips"]) == 4
    ds = FrameDataset(dataset_dir)
    f = ds.frame(1, 2)
    assert f.image.shape == (3, SIZE, SIZE) and f.mask.shape == (SIZE, SIZE)
    assert 0.2 < float(f.mask.mean()) < 0.95            # a portrait, not empty, not everything
    assert f.params.n_frames == 1 and f.camera.width == SIZE
    ci, s, d = ds.pair_indices(np.random.default_rng(0))
    assert s != d
    with pytest.raises(InputError, match="dataset.json"):
        FrameDataset(dataset_dir / "clip000")


def test_training_learns_and_beats_untrained_on_held_out(head_model, small_dino, dataset_dir, dino_file, tmp_path):
    steps = 40
    tr = _trainer(head_model, small_dino, dataset_dir, steps)
    held = FrameDataset(dataset_dir, clips=HELD_OUT)
    before = evaluate(tr.net, small_dino, head_model, held, HELD_PAIRS, level=1, backend="cpu")
    history = train(tr, tmp_path / "run", log=lambda s: None)
    after = evaluate(tr.net, small_dino, head_model, held, HELD_PAIRS, level=1, backend="cpu")
    losses = [h["loss"] for h in history]
    assert len(losses) == steps and [h["level"] for h in history[:4]] == [0, 0, 0, 0]
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    print(f"loss {first:.4f} -> {last:.4f}; held-out refined L2 {before['l2_refined']:.4f} -> "
          f"{after['l2_refined']:.4f} (PSNR {before['psnr_refined']:.2f} -> {after['psnr_refined']:.2f} dB)")
    assert last < 0.8 * first                                     # the loss falls clearly
    # held-out identity: clearly lower L2 than the untrained network. Measured 63 % lower on the
    # 24-expression stand-in, 27 % on the ARKit-52 stand-in (8208fb0: its synthetic clips hold
    # larger, bounded expressions; 60 steps give no more), so the floor is 20 %.
    assert after["l2_refined"] < 0.8 * before["l2_refined"]
    assert after["l2_coarse"] < before["l2_coarse"]

    # the learned build from this checkpoint gives an avatar that poses like the network renders
    ckpt = tmp_path / "run" / "omg_last.pt"
    learned = load_learned(ckpt, dino_file, head_model, device="cpu")
    frame = held.frame(0, 0)
    obs = type("Obs", (), {"image512": np.rint(frame.image.permute(1, 2, 0).numpy() * 255).astype(np.uint8),
                           "mask": frame.mask.numpy()})()
    fit = type("Fit", (), {"params": frame.params, "camera": frame.camera})()
    avatar = reconstruct_avatar(head_model, obs, fit, lods=(0, 1), learned=learned)
    assert avatar.method == "learned" and avatar.levels == [0, 1]
    counts = avatar.counts()
    n1 = learned.net.n_gaussians(1)
    assert counts[0]["head"] == head_model.n_verts and counts[1]["head"] == n1 and counts[0]["parts"] > 50 and avatar.part_counts() == {"body": counts[0]["parts"]}
    assert avatar.lods[1].features.shape == (n1, 32)
    heads = HeadModelTensors.from_model(head_model)
    drv = held.clips[0].params.frame(3)
    with torch.no_grad():
        rec = learned.net.reconstruct(learned.dino, heads, frame.image, frame.mask, frame.camera,
                                      HeadPose.from_params(frame.params), 1)
        ours = torch.cat([learned.net.pose_head(heads, rec, HeadPose.from_params(drv)),
                          learned.net.pose_shoulders(heads, rec, HeadPose.from_params(drv))]).numpy()
    np.testing.assert_allclose(pose(avatar, head_model, drv, 1)[0], ours, atol=2e-5)
    np.testing.assert_allclose(avatar.lods[1].colors, rec.features[:, :3].numpy(), atol=1e-6)
    # the learned avatar survives the .omgavatar file (features included)
    from backend.avatar.fileformat import load_avatar, save_avatar

    back = load_avatar(save_avatar(avatar, tmp_path / "learned.omgavatar"))
    assert back.method == "learned" and back.levels == [0, 1]
    np.testing.assert_array_equal(back.lods[1].features, avatar.lods[1].features)
    np.testing.assert_array_equal(back.vertex_offsets, avatar.vertex_offsets)
    ref = load_refiner(ckpt, "cpu")
    torch.testing.assert_close(ref.net.out.weight, learned.net.refiner.out.weight)
    with pytest.raises(InputError, match="not an OMG checkpoint"):
        load_learned(dino_file, dino_file, head_model)


def test_resume_gives_identical_next_steps(head_model, small_dino, dataset_dir, tmp_path):
    a = _trainer(head_model, small_dino, dataset_dir, steps=10, levels=(0, 1), seed=5)
    for _ in range(2):
        a.step()
    ckpt = a.save(tmp_path / "mid.pt")
    ref = [a.step() for _ in range(2)]
    # a fresh process-like trainer: different init seed, restored from the checkpoint
    b = _trainer(head_model, small_dino, dataset_dir, steps=10, levels=(0, 1), seed=5, init_seed=99)
    torch.manual_seed(12345)
    np.random.seed(1)
    b.load(ckpt)
    got = [b.step() for _ in range(2)]
    for r, g in zip(ref, got):
        assert r["step"] == g["step"] and r["level"] == g["level"] and r["lr"] == g["lr"]
        assert r["loss"] == g["loss"], (r["loss"], g["loss"])
    for (n, pa), pb in zip(a.net.named_parameters(), b.net.parameters()):
        assert torch.equal(pa, pb), n
    ck = load_checkpoint(ckpt)
    assert ck["step"] == 2 and ck["config"]["levels"] == [0, 1] and ck["train"]["steps"] == 10


def test_train_cli(dataset_dir, dino_file, tmp_path):
    from backend.cli import main

    out = tmp_path / "cli_run"
    js = tmp_path / "train.json"
    rc = main(["train", "--data", str(dataset_dir), "--dinov2", str(dino_file), "--preset", "tiny", "--levels", "0",
               "--steps", "2", "--batch-size", "1", "--out", str(out), "--json", str(js), "--device", "cpu"])
    assert rc == 0
    fig = json.loads(js.read_text())
    assert fig["steps_run"] == 2 and fig["final_step"] == 2 and fig["trainable_parameters"] > 100_000
    assert (out / "omg_last.pt").is_file() and len((out / "log.jsonl").read_text().splitlines()) == 2
    rc = main(["train", "--data", str(dataset_dir), "--dinov2", str(dino_file), "--resume", str(out / "omg_last.pt"),
               "--steps", "3", "--out", str(out), "--json", str(js), "--device", "cpu"])
    assert rc == 0 and json.loads(js.read_text())["start_step"] == 2
    # not a dataset: a one-line error, exit code 1, no traceback
    assert main(["train", "--data", str(tmp_path), "--dinov2", str(dino_file)]) == 1
