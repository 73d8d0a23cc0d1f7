"""``python -m backend bench refine``: refinement steps per second at each LOD and where a step's
time goes (forward splat, loss, backward, Adam update), on the bundled astronaut; with
``--converge``, the convergence of the colour-solve refinement against the long run.

    python -m backend bench refine --steps 20 --json refine.json
    python -m backend bench refine --converge --lods 2 --photos astronaut,PHOTO --json conv.json

``--converge``: per photo and LOD, the reference (Adam alone, as before the colour solve, for
``--reference-steps`` steps with no time limit, the build's refinement) and the colour-solve path
(``refine.photo_refine_options``: the colour solve, then Adam with less momentum, larger decaying
colour and opacity steps, an offset penalty easing off over the run, and three focus steps on the
crop around the face, the build's landmark hull, after every full step, within
``--seconds``, or for exactly ``--fast-steps`` steps), each scored
along the way: face PSNR (the build's: the landmark hull against the photo) and full-portrait PSNR
(the eval's psnr_full: against the photo cut out by the portrait segmenter over black, over the
crop's real pixels) of the render at the source camera, against refinement seconds (snapshot
time excluded).

The avatar is built without refinement; each LOD is then refined for ``--steps`` steps exactly as
the build does (avatar.build.refine_avatar's inputs: source pose, the whole image, the portrait
matte as alpha target and the person's foreground colour), after one unrecorded warm-up step.
Wall and process CPU time are both recorded (the machine is shared: CPU time is the steadier
figure). Prints, never gates.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

HELP = "refinement steps/s per LOD and the time of a step's phases"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lods", default="0,1,2", help="levels of detail (default 0,1,2)")
    p.add_argument("--steps", type=int, default=20, help="steps per LOD (default 20)")
    p.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto", help="splatting backend")
    p.add_argument("--json", default=None, metavar="PATH", help="write the figures")
    p.add_argument("--converge", action="store_true",
                   help="convergence: the long Adam reference against the colour-solve path in --seconds")
    p.add_argument("--photos", default="astronaut",
                   help="--converge: comma-separated photo paths ('astronaut': the bundled sample)")
    p.add_argument("--reference-steps", type=int, default=300, help="--converge: the reference's steps")
    p.add_argument("--seconds", type=float, default=10.0, help="--converge: the fast path's budget per LOD")
    p.add_argument("--fast-steps", type=int, default=0,
                   help="--converge: run the fast path for exactly this many steps (its rates decaying over them) "
                        "instead of --seconds: figures that do not depend on the machine's load")


def run(args: argparse.Namespace) -> int:
    if args.converge:
        return run_convergence(args)
    from ..machine import load_average, machine_info
    from ..stats import write_json
    from ..face.matte import foreground_colors
    from ..avatar.build import BuildOptions, build_avatar
    from ..avatar.imageops import to_float
    from ..avatar.posed import posed_set
    from ..avatar.refine import RefineOptions, refine

    lods = tuple(sorted({int(t) for t in args.lods.split(",") if t.strip()}))
    built = build_avatar(None, BuildOptions(lods=lods, refine=False, metrics=False))
    avatar, model = built.avatar, built.model
    photo = to_float(built.observation.image512)
    mask = np.asarray(built.observation.mask, np.float32)
    person = foreground_colors(photo, mask)
    weights = np.ones_like(mask)
    rows: list[dict[str, Any]] = []
    for l in lods:
        gs = posed_set(avatar, model, avatar.params, l)
        movable = np.zeros(len(gs), bool)
        movable[: len(avatar.lods[l])] = True
        refine(gs, movable, photo, weights, avatar.camera,
               RefineOptions(seconds=1e9, max_steps=1, backend=args.backend), portrait=mask,
               foreground=person)  # warm-up
        la = load_average()
        c0 = time.process_time()
        res = refine(gs, movable, photo, weights, avatar.camera,
                     RefineOptions(seconds=1e9, max_steps=args.steps, backend=args.backend), portrait=mask,
                     foreground=person)
        cpu = time.process_time() - c0
        rows.append({"lod": l, "gaussians": len(gs), "steps": res.steps, "seconds": res.seconds,
                     "steps_per_s": res.steps / res.seconds, "cpu_seconds": cpu,
                     "cpu_ms_per_step": 1000 * cpu / res.steps,
                     "ms_per_step": {k: 1000 * v / res.steps for k, v in res.stage_seconds.items()},
                     "load_average_1min": la[0] if la else None})
        r = rows[-1]
        print(f"LOD {l}: {r['gaussians']} Gaussians, {r['steps_per_s']:.2f} steps/s "
              f"({1000 * res.seconds / res.steps:.0f} ms/step wall, {r['cpu_ms_per_step']:.0f} ms CPU); "
              + ", ".join(f"{k} {v:.0f} ms" for k, v in r["ms_per_step"].items()))
    write_json(args.json, {"command": f"python -m backend bench refine --lods {args.lods} --steps {args.steps}",
                           "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "machine": machine_info().as_dict(), "lods": rows})
    return 0


def _case(photo: str | None, lod: int, backend: str) -> dict[str, Any]:
    """Build ``photo`` (None: the astronaut) at ``lod`` without refinement -> the refinement's
    inputs and the two scoring targets."""
    from ..face.crop import source_coverage
    from ..face.matte import foreground_colors
    from ..image_metrics import hull_mask
    from .protocols.scoring import FrameScorer
    from ..avatar.build import BuildOptions, build_avatar
    from ..avatar.imageops import to_float
    from ..avatar.eyes import EyeOptions, eyelid_vertices
    from ..avatar.posing import model_lods, shaped_vertices
    from ..avatar.posed import posed_set
    from ..avatar.refine import behind_head_middle

    built = build_avatar(photo, BuildOptions(lods=(lod,), refine=False, metrics=False, render_backend=backend))
    avatar, obs = built.avatar, built.observation
    photo512 = to_float(obs.image512)
    mask = np.asarray(obs.mask, np.float32)
    gs = posed_set(avatar, built.model, avatar.params, lod)
    movable = np.zeros(len(gs), bool)
    movable[: len(avatar.lods[lod])] = True
    # as the build: the lid skin a blink pulls over the eye keeps its colour (build.refine_avatar)
    U = model_lods(built.model, [lod])[lod].upsample
    lids, _, around = eyelid_vertices(built.model, np.asarray(U @ shaped_vertices(built.model, avatar.params.shape),
                                                              np.float32), U, EyeOptions())
    keep = np.zeros(len(gs), bool)
    keep[: len(avatar.lods[lod])] = lids | around
    with FrameScorer(identity=False) as scorer:
        target = scorer.target(obs.image512, source_coverage(obs.crop))
    return {"gs": gs, "movable": movable, "keep": keep, "share_held": behind_head_middle(gs.means, avatar.camera, movable),
            "photo": photo512, "mask": mask,
            "person": foreground_colors(photo512, mask), "camera": avatar.camera,
            "face": hull_mask(obs.landmarks, mask.shape[0], mask.shape[1]), "target": target}


def _scores(case: dict[str, Any], colors, opacities, offsets, backend: str) -> tuple[float, float]:
    """(face PSNR, full-portrait PSNR) in dB of the source-view render with these appearances."""
    from ..image_metrics import psnr
    from ..render.splat import splat

    gs, t = case["gs"], case["target"]
    res = splat(gs.means + offsets, gs.quats, gs.scales, opacities, colors, case["camera"],
                background=np.zeros(3, np.float32), backend=backend)
    img = np.clip(res.image[0].detach().cpu().numpy().transpose(1, 2, 0), 0.0, 1.0)
    full = psnr(img, t.full) if t.valid is None else psnr(img, t.full, t.valid)
    return float(psnr(img, case["photo"], case["face"])), float(full)


def _curve(case: dict[str, Any], opts, backend: str) -> dict[str, Any]:
    """Refine ``case`` with ``opts`` (trace on) -> steps, seconds, stage seconds, final and curve."""
    from ..avatar.refine import refine

    c0 = time.process_time()
    res = refine(case["gs"], case["movable"], case["photo"], np.ones_like(case["mask"]), case["camera"], opts,
                 portrait=case["mask"], foreground=case["person"], keep_colors=case["keep"], focus=case["face"],
                 share_held=case["share_held"])
    cpu = time.process_time() - c0
    curve = []
    for step, secs, colors, opac, off in res.trace:
        face, full = _scores(case, colors, opac, off, backend)
        curve.append({"step": step, "seconds": secs, "psnr_face": face, "psnr_full": full})
    return {"steps": res.steps, "seconds": res.seconds, "process_cpu_seconds": cpu,
            "stage_seconds": res.stage_seconds, "psnr_face": curve[-1]["psnr_face"],
            "psnr_full": curve[-1]["psnr_full"], "curve": curve}


def run_convergence(args: argparse.Namespace) -> int:
    """``--converge``: see the module docstring."""
    from dataclasses import replace

    from ..machine import load_average, machine_info
    from ..stats import write_json
    from ..avatar.refine import RefineOptions, photo_refine_options

    lods = tuple(sorted({int(t) for t in args.lods.split(",") if t.strip()}))
    photos = [p.strip() for p in args.photos.split(",") if p.strip()]
    rows: list[dict[str, Any]] = []
    for photo in photos:
        for l in lods:
            case = _case(None if photo == "astronaut" else photo, l, args.backend)
            fast_opts = replace(photo_refine_options(1e9, args.fast_steps, args.backend) if args.fast_steps > 0
                                else photo_refine_options(args.seconds, 300, args.backend), trace_every=1)
            ref_opts = replace(RefineOptions(backend=args.backend), seconds=1e9, max_steps=args.reference_steps,
                               color_solve_iters=0, trace_every=max(1, args.reference_steps // 30))
            from ..avatar.refine import refine

            refine(case["gs"], case["movable"], case["photo"], np.ones_like(case["mask"]), case["camera"],
                   replace(fast_opts, max_steps=1, trace_every=0), portrait=case["mask"],
                   foreground=case["person"])  # warm-up: kernel compilation
            start = _scores(case, case["gs"].colors, case["gs"].opacities, np.zeros_like(case["gs"].means),
                            args.backend)
            la0 = load_average()
            fast = _curve(case, fast_opts, args.backend)
            ref = _curve(case, ref_opts, args.backend)
            la1 = load_average()
            # the first time the reference's curve reaches the fast path's final figures
            for key in ("psnr_face", "psnr_full"):
                hit = next((c for c in ref["curve"] if c[key] >= fast[key]), None)
                fast[f"{key}_reference_step"] = None if hit is None else hit["step"]
                fast[f"{key}_reference_seconds"] = None if hit is None else hit["seconds"]
            name = "astronaut" if photo == "astronaut" else Path(photo).name
            rows.append({"photo": name, "lod": l, "gaussians": len(case["gs"]),
                         "unrefined": {"psnr_face": start[0], "psnr_full": start[1]},
                         "fast": fast, "reference": ref,
                         "load_average_1min": [la0[0] if la0 else None, la1[0] if la1 else None]})
            print(f"{name} LOD {l}: unrefined face {start[0]:.2f} / full {start[1]:.2f} dB; "
                  f"fast {fast['steps']} steps in {fast['seconds']:.1f} s: {fast['psnr_face']:.2f} / "
                  f"{fast['psnr_full']:.2f} dB; reference {ref['steps']} steps in {ref['seconds']:.1f} s: "
                  f"{ref['psnr_face']:.2f} / {ref['psnr_full']:.2f} dB", flush=True)
    write_json(args.json, {"command": "python -m backend bench refine --converge --lods "
                                      f"{args.lods} --photos {args.photos} --reference-steps {args.reference_steps}"
                                      + (f" --fast-steps {args.fast_steps}" if args.fast_steps > 0
                                         else f" --seconds {args.seconds:g}"),
                           "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "machine": machine_info().as_dict(), "rows": rows})
    return 0
