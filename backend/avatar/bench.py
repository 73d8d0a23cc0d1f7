"""Avatar build figures: source-view face PSNR/SSIM per LOD with and without refinement, and the
build time per stage, on the bundled astronaut and (when present) the internal test photos.

    python -m backend bench build [--photos DIR] [--refine-seconds 30] [--json PATH]

It prints a summary; the docs page (docs/figures/avatar.md) is rendered from a figure record:
``python -m backend figures record avatar_build_cpu -- python -m backend bench build --json {json}``.

The internal photos are only read (never copied); photos whose face cannot be used are listed with
the reason. A first, unrecorded LOD-0 build warms the JIT-compiled kernels. Figures are measured,
never gated on.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_PHOTOS = Path("/work/shared/media/photos")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
STAGES = ("detect", "fit", "sampling", "parts", "refine")


def bench_photo(photo, refine_seconds: float, lods=(0, 1, 2)) -> dict[str, Any]:
    from ..errors import InputError
    from .build import BuildOptions, build_avatar

    opts = BuildOptions(lods=tuple(lods), refine=refine_seconds > 0, refine_seconds=refine_seconds)
    try:
        r = build_avatar(photo, opts)
    except InputError as exc:
        return {"error": str(exc)}
    return {
        "construct_cpu_s": construct_cpu_seconds(r, lods),
        "gaussians": {l: c for l, c in r.avatar.counts().items()},
        "metrics": r.metrics,
        "seconds": r.seconds,
        "refine_steps": r.refine_steps,
        "fit_rmse_px": float(r.fit.rmse_px),
    }


def construct_cpu_seconds(r, lods, repeats: int = 3) -> float:
    """Best-of-``repeats`` process CPU time of sampling + parts (hair, body) for ``lods``: the wall time of an
    idle machine (these stages run on one thread), robust to other jobs sharing the CPU."""
    from .build import BuildOptions, analytic_head, analytic_parts
    from .imageops import to_float

    obs, fit = r.observation, r.fit
    photo, mask = to_float(obs.image512), obs.mask.astype("float32")
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        analytic_head(r.model, fit.params, fit.camera, photo, mask, list(lods), BuildOptions())
        analytic_parts(r.model, fit.params, fit.camera, photo, mask, obs.landmarks, BuildOptions())
        best = min(best, time.process_time() - t0)
    return best


def markdown(rows: dict[str, dict[str, Any]], refine_seconds: float, lods) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out = [
        "# Avatar build figures (analytic method, stand-in head model)",
        "",
        f"Measured {now} with `python -m backend.avatar.bench --refine-seconds {refine_seconds:g}` on "
        f"this machine's CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
        f"1-minute load average {load:.1f} when the run ended: the machine is shared, so times are "
        "upper bounds). Splatting backend: CPU (numba).",
        "",
        "Face region: convex hull of the photo's 478 mediapipe landmarks in the 512x512 crop. "
        "PSNR/SSIM compare the render at the fitted source camera with the crop. *raw* = analytic "
        "build (HPFS + OAFF sampling, no optimisation); *refined* = after the photometric refinement "
        f"(budget {refine_seconds:g} s split over the LODs).",
        "",
        "## Source-view quality per LOD",
        "",
        "When the load average above exceeds the core count, the wall-clock stage times below are "
        "several times the idle-machine times. The CPU-time column "
        "(process CPU seconds, best of 3) is the idle-machine figure for the single-threaded "
        "construction stages. Refinement, bounded by its wall-time budget, then runs fewer steps "
        "than it would on an idle machine (see the steps column).",
        "",
        "| photo | LOD | Gaussians (head + parts) | PSNR raw | PSNR refined | SSIM raw | SSIM refined | refine steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        if "error" in r:
            out.append(f"| {name} | - | skipped: {r['error']} | | | | | |")
            continue
        for l in lods:
            m, c = r["metrics"][l], r["gaussians"][l]
            out.append(f"| {name} | {l} | {c['head']} + {c['parts']} | {m['psnr_face_raw']:.2f} | "
                       f"{m.get('psnr_face', float('nan')):.2f} | {m['ssim_face_raw']:.3f} | "
                       f"{m.get('ssim_face', float('nan')):.3f} | {r['refine_steps'][l]} |")
    out += ["", "## Build time per stage (seconds)", "",
            "| photo | " + " | ".join(STAGES) + " | sampling + parts | same, CPU time | total (incl. metrics) |",
            "|---|" + "---|" * (len(STAGES) + 3)]
    for name, r in rows.items():
        if "error" in r:
            continue
        s = r["seconds"]
        out.append(f"| {name} | " + " | ".join(f"{s.get(k, 0.0):.2f}" for k in STAGES)
                   + f" | {s.get('sampling', 0) + s.get('parts', 0):.2f} | {r['construct_cpu_s']:.2f}"
                   f" | {s['total']:.2f} |")
    ok = [r for r in rows.values() if "error" not in r]
    if ok:
        top = max(lods)
        mean_raw = sum(r["metrics"][top]["psnr_face_raw"] for r in ok) / len(ok)
        mean_ref = sum(r["metrics"][top].get("psnr_face", float("nan")) for r in ok) / len(ok)
        build = [r["seconds"].get("sampling", 0) + r["seconds"].get("parts", 0) for r in ok]
        cpu = sorted(r["construct_cpu_s"] for r in ok)
        out += ["", "## Summary", "",
                f"- LOD {top} face PSNR, mean over {len(ok)} photos: {mean_raw:.2f} dB raw, "
                f"{mean_ref:.2f} dB refined (target: >= 30 dB refined).",
                f"- Avatar construction to LOD {top} without refinement (sampling + parts, all "
                f"LODs {list(lods)}): median {sorted(build)[len(build) // 2]:.2f} s wall on the shared "
                f"machine, {cpu[len(cpu) // 2]:.2f} s CPU time (best of 3; = wall time when idle) "
                "(target < 2 s); face detection and fitting are listed separately above."]
    out += ["", "## How the analytic build works (what these figures measure)", "",
            "- LODs: the head mesh midpoint-subdivided 0/1/2 times; one Gaussian per vertex, plus the "
            "shoulder set (about 9K) shared by all LODs.",
            "- Colours (HPFS + OAFF without weights): LOD vertices projected with the fitted source "
            "camera; visible (mesh depth buffer), camera-facing vertices inside the portrait mask take "
            "the bilinear colour of the photo prefiltered to the LOD's vertex spacing; hidden ones "
            "copy their mirror vertex when it was seen, the rest is filled by harmonic diffusion over "
            "the mesh (eye-skin edges cut; the mouth band gets soft data pulled to a mouth colour).",
            "- Geometry attributes: flat Gaussians in the local tangent frame, in-plane size 0.55 x "
            "the mean incident edge, enlarged where opening the jaw stretches the surface.",
            "- Refinement: Adam on colours, opacities and <= 3 mm offsets against the photo (L1 + SSIM "
            "inside the portrait mask) with the differentiable CPU splatter, within the time budget.",
            "", "Record: `python -m backend figures record avatar_build_cpu --replace -- python -m backend bench "
            "build --json {json}`, then `python -m backend figures` renders docs/figures/avatar.md.", ""]
    return "\n".join(out)


HELP = "avatar build time per stage and source-view face PSNR/SSIM per LOD"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of portraits (skipped if absent)")
    p.add_argument("--refine-seconds", type=float, default=30.0)
    p.add_argument("--lods", default="0,1,2")
    p.add_argument("--limit", type=int, default=0, help="at most this many photos from --photos (0 = all)")
    p.add_argument("--json", type=Path, default=None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend.avatar.bench", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    from ..stats import write_json
    from .build import BuildOptions, build_avatar
    from .sample_portrait import SAMPLE_NAME

    lods = tuple(int(x) for x in args.lods.split(","))
    build_avatar(None, BuildOptions(lods=(0,), refine=False, metrics=False))  # JIT warm-up
    photos: list[tuple[str, Any]] = [(SAMPLE_NAME, None)]
    if args.photos.is_dir():
        files = sorted(f for f in args.photos.iterdir() if f.suffix.lower() in PHOTO_SUFFIXES)
        photos += [(f.name, f) for f in (files[: args.limit] if args.limit else files)]
    else:
        print(f"{args.photos}: not found, benchmarking the sample only", file=sys.stderr)
    rows: dict[str, dict[str, Any]] = {}
    for name, path in photos:
        t0 = time.perf_counter()
        rows[name] = bench_photo(path, args.refine_seconds, lods)
        print(f"{name}: {time.perf_counter() - t0:.1f} s "
              f"{rows[name].get('error', '')}", file=sys.stderr, flush=True)
    print(markdown(rows, args.refine_seconds, lods))
    write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
