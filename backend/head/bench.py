"""``bench lbs``: head-model load time, LBS per frame at each LOD, sparse LOD update (CPU/CUDA).

Hook: ``add_arguments(parser)`` and ``run(args) -> int`` (the lead wires it into ``bench``).
Measures and prints; never asserts on timing.
"""

from __future__ import annotations

import argparse
import pickle
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from ..stats import write_json
from .lbs import HeadModelTensors, lbs
from .loader import load_head_model
from .lod import build_lods
from .standin import build_standin

HELP = "head model: load time, LBS per frame at LOD 0/1/2, sparse LOD update"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="head model file (default: bundled stand-in)")
    parser.add_argument("--device", default="cpu", help="torch device for LBS (cpu, cuda)")
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 16],
                        help="batch sizes (frames per LBS call) to time")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")


_CPU_TIMES: list[float] = []  # thread CPU seconds of the last _median_s call (median)


def _median_s(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    """Median wall seconds of ``fn``; also records the median CPU seconds of this thread, which
    with ``--threads 1`` is the op's cost even when other processes crowd the CPU."""
    fn()  # warm-up (allocations, caches)
    sync()
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    _CPU_TIMES[:] = [statistics.median(cpu)]
    return statistics.median(times)


def _flame_sized_pickle(path: Path) -> None:
    """A synthetic file in FLAME 2023's layout and size (5,023 vertices, 400 components)."""
    rng = np.random.default_rng(0)
    V = 5023
    J = sp.random(5, V, density=0.01, random_state=0, format="csc")
    pickle.dump({"v_template": rng.normal(size=(V, 3)), "f": rng.integers(0, V, (9976, 3)).astype(np.uint32),
                 "shapedirs": rng.normal(size=(V, 3, 400)), "posedirs": rng.normal(size=(V, 3, 36)),
                 "J_regressor": J, "weights": np.full((V, 5), 0.2),
                 "kintree_table": np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]])},
                path.open("wb"), protocol=2)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    fig: dict[str, object] = {"device": str(dev), "torch_threads": torch.get_num_threads(),
                              "cpu": platform.processor() or platform.machine()}

    load_head_model(args.model)  # first use may generate and cache the stand-in: not timed
    t0 = time.perf_counter()
    model = load_head_model(args.model)
    fig["load_model_s"] = time.perf_counter() - t0
    fig["model"] = model.name
    if args.model is None:
        t0 = time.perf_counter()
        build_standin()
        fig["generate_standin_s"] = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "flame2023_synthetic.pkl"
            _flame_sized_pickle(p)
            t0 = time.perf_counter()
            load_head_model(p)
            fig["load_flame_sized_pickle_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lods = build_lods(model.faces, model.n_verts)
    fig["build_lods_s"] = time.perf_counter() - t0
    fig["lod_vertices"] = [l.n_verts for l in lods]
    T = HeadModelTensors.from_model(model, dev)
    rng = np.random.default_rng(0)
    per_frame: dict[str, dict[str, float]] = {}
    for B in args.frames:
        shape = torch.tensor(rng.normal(size=(B, model.n_shape)), dtype=torch.float32, device=dev)
        expr = torch.tensor(rng.normal(0, 0.3, (B, model.n_expr)), dtype=torch.float32, device=dev)
        pose = torch.tensor(rng.normal(0, 0.2, (B, 5, 3)), dtype=torch.float32, device=dev)
        transl = torch.zeros(B, 3, device=dev)
        with torch.no_grad():
            v0 = lbs(T, shape, expr, pose, transl).vertices
            row: dict[str, float] = {}
            for lod in lods:
                def posed(lod=lod):
                    return lod.pose(lbs(T, shape, expr, pose, transl).vertices)
                row[f"lbs_lod{lod.level}_ms"] = 1e3 * _median_s(posed, args.repeats, sync) / B
                row[f"lbs_lod{lod.level}_cpu_ms"] = 1e3 * _CPU_TIMES[0] / B
                if lod.level > 0:
                    row[f"upsample_lod{lod.level}_ms"] = 1e3 * _median_s(
                        lambda lod=lod: lod.pose(v0), args.repeats, sync) / B
                    row[f"upsample_lod{lod.level}_cpu_ms"] = 1e3 * _CPU_TIMES[0] / B
        per_frame[f"batch_{B}"] = row
    fig["per_frame"] = per_frame
    # scipy reference for the LOD-2 update (one frame, numpy in / out)
    v_np = v0[0].cpu().numpy()
    fig["upsample_lod2_scipy_ms"] = 1e3 * _median_s(lambda: lods[2].upsample @ v_np, args.repeats,
                                                   lambda: None)
    fig["upsample_lod2_scipy_cpu_ms"] = 1e3 * _CPU_TIMES[0]

    print(f"head model '{fig['model']}' ({model.n_verts} vertices; LODs {fig['lod_vertices']}) "
          f"on {dev}, {fig['torch_threads']} torch threads")
    print(f"  load model: {fig['load_model_s'] * 1e3:.1f} ms", end="")
    if "generate_standin_s" in fig:
        print(f"   generate stand-in: {fig['generate_standin_s']:.2f} s   "
              f"FLAME-sized pickle load: {fig['load_flame_sized_pickle_s'] * 1e3:.0f} ms", end="")
    print(f"   build LODs 0-2: {fig['build_lods_s'] * 1e3:.0f} ms")
    for key, row in per_frame.items():
        cells = "  ".join(f"{k[:-3]} {v:.2f}" for k, v in row.items() if not k.endswith("cpu_ms"))
        cpu = "  ".join(f"{k[:-7]} {v:.2f}" for k, v in row.items() if k.endswith("cpu_ms"))
        print(f"  per frame, {key.replace('_', ' ')} (ms wall): {cells}")
        print(f"  per frame, {key.replace('_', ' ')} (ms CPU of this thread): {cpu}")
    print(f"  LOD-2 update with scipy (1 frame): {fig['upsample_lod2_scipy_ms']:.2f} ms wall, "
          f"{fig['upsample_lod2_scipy_cpu_ms']:.2f} ms CPU")
    write_json(args.json, fig)
    return 0


if __name__ == "__main__":  # python -m backend.head.bench
    p = argparse.ArgumentParser(description=__doc__)
    add_arguments(p)
    raise SystemExit(run(p.parse_args()))
