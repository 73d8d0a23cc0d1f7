"""``python -m backend bench model``: speed of the OMG network with the paper's configuration.

Random-init weights (the speed does not depend on them): frozen ViT-B/14 at 518 px, the OMG network on
the head model (stand-in by default). Measures per photo the reconstruction time at each LOD (DINOv2 +
network + visibility + shoulders), and per frame the render + refiner time at 512x512 (posing,
32-channel splat, UNet) -> frames per second. Works on CPU and CUDA; prints and writes --json figures,
never gates on timing.
"""

from __future__ import annotations

import argparse
import time

HELP = "OMG network speed: reconstruction per LOD, render + refiner FPS at 512"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--lods", default="0,1,2", help="LODs to measure (default 0,1,2)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions after one warm-up (default 3)")
    parser.add_argument("--frames", type=int, default=10, help="rendered frames per LOD for the FPS (default 10)")
    parser.add_argument("--size", type=int, default=512, help="image side (default 512)")
    parser.add_argument("--dinov2", default=None, help="DINOv2 weights (default: random-init ViT-B/14)")
    parser.add_argument("--head-model", default=None, help="FLAME model file (default: the bundled stand-in)")
    parser.add_argument("--no-render", action="store_true", help="only the reconstruction")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..face.crop import crop_intrinsics, crop_viewmat
    from ..head.lbs import HeadModelTensors
    from ..head.loader import load_head_model
    from ..head.params import HeadParams
    from ..render import Camera, select_backend
    from ..stats import write_json
    from .dinov2 import DinoConfig, DinoV2, load_dinov2
    from .omg import OMG, HeadPose, OMGConfig, count_parameters

    if args.device not in ("auto", "cpu", "cuda") and not args.device.startswith("cuda:"):
        raise SystemExit(f"--device: {args.device!r} is not auto, cpu or cuda")
    if args.device != "auto" and args.device != "cpu" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch.cuda is not available on this machine")
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    levels = tuple(int(x) for x in args.lods.split(","))
    model = load_head_model(args.head_model)
    torch.manual_seed(0)
    if args.dinov2:
        dino = load_dinov2(args.dinov2, dev)
    else:
        dino = DinoV2(DinoConfig.vitb14()).to(dev).eval().requires_grad_(False)
    cfg = OMGConfig(n_verts=model.n_verts, levels=tuple(sorted(set(levels) | {0})), dino_dim=dino.cfg.dim)
    net = OMG(cfg, model.faces, model.weights).to(dev).eval()
    heads = HeadModelTensors.from_model(model, dev)
    S = args.size
    cam = Camera(crop_intrinsics(S), crop_viewmat(), S, S)
    params = HeadParams.zeros(model)
    src = HeadPose.from_params(params, 0, dev)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, S, S, generator=g).to(dev)
    yy = torch.arange(S, device=dev)[:, None].expand(S, S)
    mask = (yy > S * 0.55).float()  # a portrait-like mask: body at the bottom
    backend = select_backend("auto") if dev.type == "cuda" else "cpu"
    figures = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
               "threads": torch.get_num_threads(), "image_size": S, "head_model": model.name,
               "omg_parameters": count_parameters(net), "dinov2_parameters": count_parameters(dino, False),
               "reconstruct_seconds": {}, "reconstruct_cpu_seconds": {}, "render_refine_fps": {},
               "render_seconds": {}, "refiner_seconds": {},
               "gaussians": {}, "splat_backend": backend}
    print(f"device {figures['device']}; OMG {figures['omg_parameters'] / 1e6:.2f}M trainable parameters, "
          f"DINOv2 ViT-B/14 {figures['dinov2_parameters'] / 1e6:.1f}M frozen; head model {model.name} "
          f"({model.n_verts} vertices)")
    with torch.no_grad():
        for lvl in levels:
            times, cpu = [], []
            for i in range(args.repeat + 1):  # the first run pays for JIT compiles and allocations
                _sync(dev)
                t0, c0 = time.perf_counter(), time.process_time()
                rec = net.reconstruct(dino, heads, image, mask, cam, src, lvl)
                _sync(dev)
                if i > 0:
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
            figures["reconstruct_seconds"][str(lvl)] = float(np.median(times))
            # process CPU time (all threads): what the work costs on an idle machine, whatever the load
            figures["reconstruct_cpu_seconds"][str(lvl)] = float(np.median(cpu))
            n = net.n_gaussians(lvl) + rec.shoulders["rest_means"].shape[0]
            figures["gaussians"][str(lvl)] = int(n)
            line = (f"LOD {lvl}: {n} Gaussians; reconstruction {np.median(times):.3f} s/photo "
                    f"(process CPU {np.median(cpu):.3f} s)")
            if not args.no_render:
                rng = np.random.default_rng(1)
                drv = [HeadPose.from_params(HeadParams(params.shape, rng.uniform(0, 0.5, (1, model.n_expr)),
                                                       rng.uniform(-0.1, 0.1, (1, 5, 3)), np.zeros((1, 3))), 0, dev)
                       for _ in range(args.frames + 1)]
                t_render, t_ref = [], []
                for i, d in enumerate(drv):
                    _sync(dev)
                    t0 = time.perf_counter()
                    feats, _, _ = net.render(heads, rec, d, cam, backend=backend)
                    _sync(dev)
                    t1 = time.perf_counter()
                    net.refiner(feats[None])
                    _sync(dev)
                    if i > 0:
                        t_render.append(t1 - t0)
                        t_ref.append(time.perf_counter() - t1)
                per = float(np.median(np.array(t_render) + np.array(t_ref)))
                figures["render_seconds"][str(lvl)] = float(np.median(t_render))
                figures["refiner_seconds"][str(lvl)] = float(np.median(t_ref))
                figures["render_refine_fps"][str(lvl)] = 1.0 / per
                line += (f"; render {np.median(t_render) * 1e3:.1f} ms + refiner {np.median(t_ref) * 1e3:.1f} ms "
                         f"= {1.0 / per:.3g} FPS at {S}x{S} ({backend})")
            print(line)
    write_json(args.json, figures)
    return 0
