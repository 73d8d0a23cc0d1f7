"""``python -m backend bench splat``: forward/backward speed and peak memory of ``splat``.

Scene: ``scenes.head_scene`` (N surface Gaussians on a head-sized ellipsoid) seen by a camera at
0.8 m with a 20 deg vertical field of view, so the head fills about 70% of the frame height as in
the 512x512 portrait crop. Forward = one ``splat`` call (projection + binning + compositing);
backward = ``loss.backward()`` of a loss on image and depth. Best-of-``--repeats`` timings after
``--warmup`` calls (the first call also JIT-loads the numba kernels). Prints and plots, never
gates on timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

HELP = "splat: frames per second of the Gaussian splatter (forward, backward) and peak memory"


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        w, h = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be S or WxH, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def _counts(text: str) -> list[int]:
    try:
        counts = [int(float(t)) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gaussians must be integers separated by commas, got {text!r}") from None
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError(f"--gaussians must be >= 0, got {text!r}")
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gaussians", type=_counts, default=[5000, 20000, 30000, 90000],
                        help="Gaussian count, or comma-separated counts to sweep (default: the LOD sizes)")
    parser.add_argument("--size", type=_size, default=(512, 512), help="image size S or WxH (default 512)")
    parser.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--channels", type=int, default=3, help="feature channels (3 = RGB, 32 = learned)")
    parser.add_argument("--cameras", type=int, default=1, help="cameras rendered per call (batch)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (best is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    parser.add_argument("--no-backward", action="store_true", help="time the forward pass only")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--plot", type=Path, default=None,
                        help="plot PNG (sweeps only; default: next to --json, else bench_splat.png)")  # fmt: skip


def _rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


class _PeakRSS:
    """Samples RSS every 2 ms in a thread: CPU tensors come from numpy, torch and numba alike."""

    def __enter__(self) -> "_PeakRSS":
        self.base = _rss_mb()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def bench_one(n: int, width: int, height: int, backend: str, channels: int = 3, cameras: int = 1,
              repeats: int = 5, warmup: int = 1, backward: bool = True) -> dict[str, Any]:  # fmt: skip
    """Time ``splat`` on a head-like scene; returns the figures for one Gaussian count."""
    import torch

    from .scenes import default_camera, head_scene
    from .splat import select_backend, splat

    name = select_backend(backend)
    device = "cuda" if name == "cuda" else "cpu"
    cam = default_camera(width, height, distance=0.8)
    cams = [cam.orbit_yaw(10.0 * i) for i in range(cameras)]
    sc = head_scene(n, channels, seed=0)
    tensors = [t.to(device).requires_grad_(backward) for t in (sc.means, sc.quats, sc.scales, sc.opacities, sc.features)]

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def forward():
        return splat(*tensors, cams, backend=name)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fwd, bwd, fwd_cpu, bwd_cpu = [], [], [], []
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with _PeakRSS() as mem:
        for i in range(warmup + repeats):
            for t in tensors:
                t.grad = None
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.set_grad_enabled(backward):
                res = forward()
            sync()
            t1, c1 = time.perf_counter(), time.process_time()
            if backward:
                loss = res.image.square().mean() + res.depth.mean()
                sync()
                t2, c2 = time.perf_counter(), time.process_time()
                loss.backward()
                sync()
                t3, c3 = time.perf_counter(), time.process_time()
            if i >= warmup:
                fwd.append(t1 - t0)
                fwd_cpu.append(c1 - c0)
                if backward:
                    bwd.append(t3 - t2)
                    bwd_cpu.append(c3 - c2)
    out: dict[str, Any] = {
        "gaussians": n,
        "width": width,
        "height": height,
        "channels": channels,
        "cameras": cameras,
        "backend": res.backend,
        "forward_ms": 1e3 * min(fwd),
        "fps_forward": cameras / min(fwd),
        "backward_ms": 1e3 * min(bwd) if bwd else None,
        "fps_backward": cameras / min(bwd) if bwd else None,
        "backward_over_forward": min(bwd) / min(fwd) if bwd else None,
        # process CPU seconds (all threads) of the best runs: less sensitive to other processes
        # than wall time on a shared machine; with 2 threads, wall >= cpu / 2
        "forward_cpu_ms": 1e3 * min(fwd_cpu),
        "backward_cpu_ms": 1e3 * min(bwd_cpu) if bwd_cpu else None,
        "load_average_1min": [load_before, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
        "n_intersections": res.n_intersections,
        "coverage": float(res.alpha.detach().mean()),
    }
    if device == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_kind"] = "cuda max_memory_allocated"
    else:
        out["peak_mb"] = mem.peak
        out["peak_above_start_mb"] = mem.peak - mem.base
        out["peak_kind"] = "process RSS"
        import numba

        out["threads"] = {"numba": numba.get_num_threads(), "torch": torch.get_num_threads()}
    return out


def plot(runs: list[dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["gaussians"] for r in runs]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(n, [r["fps_forward"] for r in runs], "o-", label="forward")
    if runs[0]["fps_backward"] is not None:
        ax.plot(n, [r["fps_backward"] for r in runs], "s-", label="backward")
    ax.axhline(10.0, color="grey", ls="--", lw=1, label="10 fps target")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Gaussians")
    ax.set_ylabel("frames per second")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    from ..stats import write_json

    from .splat import select_backend

    width, height = args.size
    try:
        select_backend(args.backend)
    except RuntimeError as exc:  # e.g. --backend cuda without CUDA / gsplat
        print(f"bench splat: {exc}", file=sys.stderr)
        return 2
    if args.channels < 1 or args.cameras < 1 or args.repeats < 1 or args.warmup < 0:
        print("bench splat: --channels, --cameras and --repeats must be >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    runs = []
    for n in args.gaussians:
        r = bench_one(n, width, height, args.backend, args.channels, args.cameras, args.repeats, args.warmup,
                      backward=not args.no_backward)  # fmt: skip
        runs.append(r)
        bwd = f"  backward {r['backward_ms']:8.1f} ms ({r['fps_backward']:6.1f} fps)" if r["backward_ms"] else ""
        print(f"{r['backend']:4s} N={n:>7d} {width}x{height} C={args.channels}: forward {r['forward_ms']:8.1f} ms "
              f"({r['fps_forward']:6.1f} fps){bwd}  peak {r['peak_mb']:.0f} MB", flush=True)  # fmt: skip
    figures: dict[str, Any] = dict(runs[-1])  # top level: the last (largest) count
    figures["runs"] = runs
    if len(runs) > 1:
        path = args.plot or (args.json.with_suffix(".png") if args.json else Path("bench_splat.png"))
        figures["plot"] = str(plot(runs, path, f"splat {runs[0]['backend']} {width}x{height} C={args.channels}"))
        print(f"plot: {figures['plot']}")
    write_json(args.json, figures)
    return 0
