"""``python -m backend bench preview``: the preview render loop end to end (pose, splat, watermark,
PNG, mp4), today's path and the new one in the same run, so their ratio is measured under the same
load.

    python -m backend bench preview --lod 2 --frames 100 --size 512 --json out.json

The avatar is the bundled astronaut built without refinement at the chosen LOD (or ``--avatar``: a
built .omgavatar, so a machine without the face detector can run it); the motion is a
deterministic head turn + nod with the jaw opening and expressions moving (every frame differs).

Paths:
  reference  the loop as it was when issue 19 was filed (main at 93f1557), run from
             ``preview.legacy``: numpy posing, 2 frames per splat call, the
             old splatter path (boolean-tensor input checks, serial projection, tile lists sorted
             per tile, exact compositing without a transmittance stop, torch background/uint8
             steps) and the old synchronous writer on the render thread (whole-frame watermark,
             Pillow PNG at level 6, x264 preset medium). The Gaussians' rotations are posed too
             (numpy twin; the old loop left them at rest), so both paths draw the same frames
             within one 8-bit level but for a few pixels where Gaussians of exactly equal depth
             swap order (tests/preview/test_legacy.py).
             (Until 2026-12-02 this path shared the new splatter, watermark, PNG encoder and x264
             preset, so its ratio understated the gain: 1.54x on 2026-12-01.)
  batched    ``preview.render_preview``: batched torch posing (positions and rotations) on the
             splatter's device, B frames per splat call, PNG (zlib level 1) and mp4 written on a
             background thread.

Each path runs ``--repeats`` times (after one unrecorded warm-up of 4 frames that loads the JIT
kernels and ffmpeg) and the best run is reported: the machine is shared, so the best run is the
least disturbed one. The 1-minute load average is recorded with the figures. Prints, never gates.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HELP = "preview render loop: fps and per-stage ms, reference vs batched path in one run"
PATHS = ("reference", "batched")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lod", type=int, default=2, help="level of detail (default 2)")
    p.add_argument("--frames", type=int, default=100, help="frames per run (default 100)")
    p.add_argument("--size", type=int, default=512, help="square frame size in pixels (default 512)")
    p.add_argument("--batch", type=int, default=None, help="frames per batch of the batched path "
                                                           "(default: PreviewOptions.batch)")
    p.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto", help="splatting backend")
    p.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {','.join(PATHS)}")
    p.add_argument("--repeats", type=int, default=2, help="runs per path; the best is reported (default 2)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--photo", default=None, help="portrait photo (default: the bundled astronaut)")
    src.add_argument("--avatar", default=None, metavar="FILE.omgavatar",
                     help="a built avatar instead of a photo (needs its --lod; no detection or build)")
    p.add_argument("--no-video", action="store_true",
                   help="batched path: PNG frames only, no mp4 (a machine without ffmpeg)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the figures")


def bench_motion(avatar, model, n_frames: int):
    """HeadParams of ``n_frames``: yaw +/-0.35 rad, pitch +/-0.1 rad, jaw 0..0.25 rad, the first
    expressions on slow sines, around the avatar's source pose (deterministic)."""
    from ..head.params import HeadParams

    t = np.arange(n_frames, dtype=np.float32) / 25.0
    p0 = avatar.params.frame(0)
    pose = np.repeat(p0.pose, n_frames, 0).copy()
    pose[:, 0, 1] += 0.35 * np.sin(2 * math.pi * 0.4 * t)
    pose[:, 1, 0] += 0.10 * np.sin(2 * math.pi * 0.7 * t)
    pose[:, 2, 0] = 0.125 * (1 - np.cos(2 * math.pi * 0.9 * t))
    expr = np.zeros((n_frames, model.n_expr), np.float32)
    k = min(6, model.n_expr)
    expr[:, :k] = 0.6 * np.sin(2 * math.pi * (0.3 + 0.1 * np.arange(k))[None] * t[:, None])
    return HeadParams(avatar.params.shape, expr, pose, np.repeat(p0.transl, n_frames, 0))


def run_reference(avatar, model, params, lod: int, size: int, backend: str, out_dir: Path) -> dict[str, Any]:
    """The loop as it was when issue 19 was filed (``preview.legacy.render_legacy``: numpy posing,
    the old splatter path, the old synchronous writer); CPU only (``backend`` must resolve to cpu)."""
    from ..render.splat import select_backend
    from .legacy import render_legacy

    if select_backend(backend) != "cpu":
        raise SystemExit("the reference path is the old CPU loop: run it with --backend cpu "
                         "(or --paths batched on a GPU)")
    return render_legacy(avatar, model, params, lod, size, out_dir)


def run_batched(avatar, model, params, lod: int, size: int, backend: str, batch: int | None,
                out_dir: Path, video: bool = True) -> dict[str, Any]:
    """``render_preview`` as the add-on and the CLIs run it."""
    from .renderer import PreviewOptions, render_preview

    opts = PreviewOptions(lod=lod, width=size, height=size, backend=backend)
    if batch is not None:
        opts.batch = int(batch)
    r = render_preview(avatar, params, out_dir / "png", opts, fps=25.0,
                       video=out_dir / "preview.mp4" if video else None, model=model)
    return {"seconds": r.seconds, "stage_seconds": dict(r.stage_seconds), "n_gaussians": r.n_gaussians,
            "backend": r.backend, "batch": opts.batch}


def per_frame(run: dict[str, Any], n_frames: int) -> dict[str, Any]:
    s = run["stage_seconds"]
    return {"fps": n_frames / run["seconds"], "seconds": run["seconds"],
            **{f"{k}_ms": 1000.0 * v / n_frames for k, v in s.items()},
            **{k: v for k, v in run.items() if k not in ("seconds", "stage_seconds")}}


def _load_built(path: str, lod: int):
    """(avatar, head model) of a saved .omgavatar, checked to hold ``lod``."""
    from ..errors import InputError
    from .renderer import load_avatar_and_model

    avatar, model = load_avatar_and_model(path)
    if lod not in avatar.lods:
        raise InputError(path, f"has no LOD {lod} (it holds {sorted(avatar.lods)}): pass one with --lod")
    return avatar, model


def run(args: argparse.Namespace) -> int:
    from ..avatar.build import BuildOptions, build_avatar
    from ..machine import load_average, machine_info
    from ..stats import write_json

    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    bad = [p for p in paths if p not in PATHS]
    if bad or not paths:
        raise SystemExit(f"--paths: unknown {bad}; choose from {','.join(PATHS)}")
    if args.frames < 1 or args.repeats < 1:
        raise SystemExit("--frames and --repeats must be >= 1")
    if args.avatar is not None:
        avatar, model = _load_built(args.avatar, args.lod)
    else:
        built = build_avatar(args.photo, BuildOptions(lods=(args.lod,), refine=False, metrics=False))
        avatar, model = built.avatar, built.model
    params = bench_motion(avatar, model, args.frames)
    warm = bench_motion(avatar, model, 4)
    results: dict[str, Any] = {}
    runners = {
        "reference": lambda p, d: run_reference(avatar, model, p, args.lod, args.size, args.backend, d),
        "batched": lambda p, d: run_batched(avatar, model, p, args.lod, args.size, args.backend, args.batch, d,
                                             video=not args.no_video),
    }
    loads = []
    with tempfile.TemporaryDirectory(prefix="omg-bench-preview-") as tmp:
        for name in paths:
            runners[name](warm, Path(tmp) / f"warm-{name}")
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in paths}
        for i in range(args.repeats):  # interleaved, so both paths see the same load drift
            for name in paths:
                loads.append(load_average()[0] if load_average() else float("nan"))
                c0 = time.process_time()
                r = runners[name](params, Path(tmp) / f"{name}-{i}")
                r["cpu_seconds"] = time.process_time() - c0  # this process's threads (not ffmpeg's)
                runs[name].append(per_frame(r, args.frames))
        for name in paths:
            best = max(runs[name], key=lambda r: r["fps"])
            results[name] = {**best, "fps_all": [r["fps"] for r in runs[name]]}
    figures: dict[str, Any] = {
        "command": "python -m backend bench preview " + " ".join(
            f"--{k} {v}" for k, v in (("lod", args.lod), ("frames", args.frames), ("size", args.size),
                                      ("repeats", args.repeats), ("paths", args.paths),
                                      ("backend", args.backend), ("avatar", args.avatar))
            if v is not None) + (" --no-video" if args.no_video else ""),
        "avatar": args.avatar, "backend": args.backend, "video": not args.no_video, "lod": args.lod, "frames": args.frames, "size": args.size, "repeats": args.repeats,
        "best_of": args.repeats, "paths": results, "load_average_1min": loads,
        "machine": machine_info().as_dict(),
        "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    main = results.get("batched") or results[paths[0]]
    for k in ("fps", "pose_ms", "pose_thread_ms", "splat_ms", "write_ms"):  # pose_ms: what the loop waited
        figures[k] = main.get(k)
    if "reference" in results and "batched" in results:
        figures["ratio"] = results["batched"]["fps"] / results["reference"]["fps"]
    write_json(args.json, figures)
    for name, r in results.items():
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r.items() if k.endswith("_ms"))
        print(f"{name:>9}: {r['fps']:6.2f} fps (best of {args.repeats}: "
              f"{', '.join(f'{f:.2f}' for f in r['fps_all'])}); ms/frame: {stages}")
    if "ratio" in figures:
        print(f"batched / reference: {figures['ratio']:.2f}x  (LOD {args.lod}, {args.size}^2, "
              f"{args.frames} frames, load average {', '.join(f'{l:.1f}' for l in loads)})")
    return 0
