"""``python -m backend bench refine``: refinement steps per second at each LOD and where a step's
time goes (forward splat, loss, backward, Adam update), on the bundled astronaut.

    python -m backend bench refine --steps 20 --json refine.json

The avatar is built without refinement; each LOD is then refined for ``--steps`` steps exactly as
the build does (avatar.build.refine_avatar's inputs: source pose, the whole image, the portrait
matte as alpha target and the person's foreground colour), after one unrecorded warm-up step.
Wall and process CPU time are both recorded (the machine is shared: CPU time is the steadier
figure). Prints, never gates.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

HELP = "refinement steps/s per LOD and the time of a step's phases"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lods", default="0,1,2", help="levels of detail (default 0,1,2)")
    p.add_argument("--steps", type=int, default=20, help="steps per LOD (default 20)")
    p.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto", help="splatting backend")
    p.add_argument("--json", default=None, metavar="PATH", help="write the figures")


def run(args: argparse.Namespace) -> int:
    from ..machine import load_average, machine_info
    from ..stats import write_json
    from ..face.matte import foreground_colors
    from .build import BuildOptions, build_avatar
    from .imageops import to_float
    from .posing import posed_set
    from .refine import RefineOptions, refine

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
