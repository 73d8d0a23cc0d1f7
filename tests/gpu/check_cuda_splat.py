"""GPU check (run by hand on a CUDA machine; not collected by pytest): cuda vs cpu splat backends.

    python tests/gpu/check_cuda_splat.py /tmp/cuda_splat.json [--quick]

Needs: torch with CUDA, gsplat==1.5.3 (JIT-compiles its CUDA extension on first use: CUDA toolkit
+ ninja; the first call is timed separately), numba, numpy, pillow. Run from the repository root.

1. Agreement: the same random scenes (3 and 32 feature channels, shared and per-frame Gaussians,
   2 cameras, background) rendered by backend="cuda" (gsplat.rasterization, "RGB+ED") and
   backend="cpu" (our numba splatter): max / mean / 99.9th-percentile abs difference of image,
   alpha and depth (depth where alpha > 0.5), and per-input gradient agreement (cosine similarity
   and max abs difference relative to the largest gradient) for a random linear loss.
2. Speed: cuda frames per second at 512x512 for 5K / 20K / 30K / 90K Gaussians (head-like scene,
   forward and backward, C = 3 and C = 32), peak CUDA memory.
Writes everything as JSON to the given path and prints a summary. About a minute after compiling.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.render import Camera, splat  # noqa: E402
from backend.render.bench import bench_one  # noqa: E402
from backend.render.scenes import GaussianScene, head_scene, random_scene  # noqa: E402

# agreement thresholds (float32 on both sides; gsplat uses __expf and float32 transmittance)
TOL_MEAN = 1e-4
TOL_P999 = 2e-3
TOL_GRAD_COS = 0.999


def _stats(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a.detach().float().cpu() - b.detach().float().cpu()).abs().flatten()
    if d.numel() == 0:
        return {"max": 0.0, "mean": 0.0, "p999": 0.0}
    return {
        "max": float(d.max()),
        "mean": float(d.mean()),
        "p999": float(torch.quantile(d[:: max(1, d.numel() // 1_000_000)], 0.999)),
    }


def _grad_stats(a: torch.Tensor, b: torch.Tensor) -> dict:
    a, b = a.detach().double().cpu().flatten(), b.detach().double().cpu().flatten()
    scale = float(b.abs().max())
    cos = float(torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-30))
    return {"cosine": cos, "max_rel": float((a - b).abs().max()) / max(scale, 1e-30), "scale": scale}


def _cameras(width: int, height: int) -> list[Camera]:
    base = Camera.look_at((0.0, 0.0, 0.6), (0.0, 0.0, 0.0), width=width, height=height, fov_y_deg=25.0)
    return [base, base.orbit_yaw(40.0)]


def agreement_case(name: str, scene: GaussianScene, cams: list[Camera], per_frame: bool, seed: int) -> dict:
    C = scene.features.shape[1]
    g = torch.Generator().manual_seed(seed)
    bg = torch.rand(C, generator=g)
    H, W = cams[0].height, cams[0].width
    w_img = torch.randn(len(cams), C, H, W, generator=g)
    w_alpha = torch.randn(len(cams), H, W, generator=g)
    w_depth = torch.randn(len(cams), H, W, generator=g)
    results, grads = {}, {}
    for backend in ("cpu", "cuda"):
        dev = "cuda" if backend == "cuda" else "cpu"
        ins = [t.to(dev).clone() for t in (scene.means, scene.quats, scene.scales, scene.opacities, scene.features)]
        if per_frame:  # (B, N, 3) means: second frame shifted
            ins[0] = torch.stack([ins[0], ins[0] + torch.tensor([0.01, 0.0, 0.0], device=dev)])
        for t in ins:
            t.requires_grad_(True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        r = splat(*ins, cams, background=bg.to(dev), backend=backend)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        drawn = (r.alpha > 0.5).detach()
        loss = (r.image * w_img.to(dev)).sum() + (r.alpha * w_alpha.to(dev)).sum()
        loss = loss + (torch.where(drawn, r.depth, torch.zeros_like(r.depth)) * w_depth.to(dev)).sum()
        loss.backward()
        assert r.backend == backend, (r.backend, backend)
        results[backend] = (r, seconds)
        grads[backend] = [t.grad for t in ins]
    (rc, tc), (rg, tg) = results["cpu"], results["cuda"]
    both = ((rc.alpha > 0.5) & (rg.alpha.cpu() > 0.5)).cpu()
    out = {
        "case": name,
        "gaussians": int(scene.means.shape[0]),
        "channels": C,
        "size": [W, H],
        "per_frame_means": per_frame,
        "image": _stats(rc.image, rg.image),
        "alpha": _stats(rc.alpha, rg.alpha),
        "depth_where_alpha_gt_0.5": _stats(rc.depth[both], rg.depth.cpu()[both]),
        "radii_equal_fraction": float((rc.radii == rg.radii.cpu().to(rc.radii.dtype)).float().mean()),
        "grads": {
            n: _grad_stats(a, b)
            for n, a, b in zip(["means", "quats", "scales", "opacities", "features"], grads["cpu"], grads["cuda"])
        },
        "seconds": {"cpu": tc, "cuda": tg},
    }
    ok = all(out[k]["mean"] < TOL_MEAN and out[k]["p999"] < TOL_P999 for k in ("image", "alpha"))
    ok &= all(v["cosine"] > TOL_GRAD_COS for v in out["grads"].values())
    out["pass"] = bool(ok)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", type=Path, help="where to write the results")
    ap.add_argument("--quick", action="store_true", help="fewer sizes, one repeat")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("CUDA is not available: nothing to check", file=sys.stderr)
        return 2
    import gsplat

    report: dict = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "gsplat": gsplat.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    print(f"device {report['device']}, torch {report['torch']}, gsplat {report['gsplat']}", flush=True)

    # first call compiles gsplat's CUDA extension: time it apart from everything else
    t0 = time.perf_counter()
    tiny = random_scene(10, 3, seed=0)
    splat(tiny.means, tiny.quats, tiny.scales, tiny.opacities, tiny.features, _cameras(32, 32)[0], backend="cuda")
    torch.cuda.synchronize()
    report["first_cuda_call_s"] = time.perf_counter() - t0
    print(f"first cuda call (JIT compile / load): {report['first_cuda_call_s']:.1f} s", flush=True)

    cams = _cameras(256, 192)
    cases = [
        ("random_rgb", random_scene(3000, 3, seed=1, scale_range=(0.001, 0.03)), False),
        ("random_32ch", random_scene(3000, 32, seed=2, scale_range=(0.001, 0.03)), False),
        ("random_32ch_per_frame", random_scene(2000, 32, seed=3, scale_range=(0.001, 0.03)), True),
        ("head_rgb_dense", head_scene(20000, 3, seed=4), False),
    ]
    report["agreement"] = []
    for i, (name, sc, per_frame) in enumerate(cases):
        res = agreement_case(name, sc, cams, per_frame, seed=i)
        report["agreement"].append(res)
        gmin = min(v["cosine"] for v in res["grads"].values())
        print(f"{name:24s} image max {res['image']['max']:.2e} mean {res['image']['mean']:.2e} | "
              f"alpha max {res['alpha']['max']:.2e} | depth max {res['depth_where_alpha_gt_0.5']['max']:.2e} | "
              f"grad cos min {gmin:.6f} | {'PASS' if res['pass'] else 'FAIL'}", flush=True)  # fmt: skip

    counts = [5000, 90000] if args.quick else [5000, 20000, 30000, 90000]
    repeats = 2 if args.quick else 10
    report["speed"] = []
    for C in (3, 32):
        for n in counts:
            r = bench_one(n, 512, 512, "cuda", channels=C, repeats=repeats, warmup=2)
            report["speed"].append(r)
            print(f"cuda N={n:>6d} 512x512 C={C:>2d}: forward {r['forward_ms']:7.2f} ms ({r['fps_forward']:7.1f} fps) "
                  f"backward {r['backward_ms']:7.2f} ms ({r['fps_backward']:7.1f} fps) peak {r['peak_mb']:.0f} MB",
                  flush=True)  # fmt: skip
    report["all_pass"] = all(c["pass"] for c in report["agreement"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"{'ALL PASS' if report['all_pass'] else 'SOME FAILED'}; wrote {args.json}")
    return 0 if report["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
