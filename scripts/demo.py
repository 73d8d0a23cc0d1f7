"""The main demo: one photo -> an avatar in a Blender scene (.blend) + a headless render of it (PNG).

    .venv/bin/python scripts/demo.py [--photo P] [--out out/demo] [--no-refine] [--samples N]

Runs Blender as a module (bpy) with this checkout imported as the extension package
(build_addon.load_tree; the installed zip runs the same code), builds the avatar from the bundled sample
photo (skimage's public-domain astronaut) through ``bpy.ops.omg_avatar.build_from_photo``, saves
``<out>/avatar.blend``, poses the rig like the photo, renders the finest LOD through the photo's
fitted camera with the add-on's splat renderer (*Render Splats*, the viewport display's GLSL splats,
offscreen; ``--engine cycles``: the Geometry Nodes display through Cycles on the CPU) and writes
``<out>/render_lod<l>.png``, then opens the jaw and keys a smile and
renders a three-quarter view (``render_lod<l>_threequarter_animated.png``), then the backend splatter's turntable
strip (``turntable_lod<l>.png``: yaw -60..+60 and an open-mouth, blinking frame) and the back of the head
(``back_lod<l>.png``); all are stamped "AI-generated" (backend.render.save_png). Prints the build time, the import
time per LOD and the .blend size, and writes them to ``<out>/figures.json``. Refuses to start (exit 2) when one of
those outputs is the photo itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


BACKGROUND = (0.02, 0.02, 0.025)  # dark grey behind the avatar (display values)


def demo_outputs(out: Path, lod: int, engine: str) -> list[Path]:
    """The files the demo writes into ``out`` (besides the sample photo it saves there when given none)."""
    names = ["avatar.omgavatar", "avatar.blend", "figures.json", f"turntable_lod{lod}.png", f"back_lod{lod}.png"]
    for tag in (f"lod{lod}", f"lod{lod}_threequarter_animated"):
        names.append(f"render_{tag}.png")
        if engine == "cycles":
            names.append(f"render_{tag}_raw.png")
    return [out / n for n in names]


def check_demo_outputs(out: Path, photo: Path | None, lod: int, engine: str) -> None:
    """Before any work: every output can be written and none of them is the photo (OutputError)."""
    from backend.output_safety import check_output_file

    for path in demo_outputs(out, lod, engine):
        check_output_file(path, [photo])


def render(bpy, scene, path: Path, samples: int) -> float:
    """Render the scene's camera with Cycles (CPU) to ``path``; returns seconds."""
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.transparent_max_bounces = 32
    scene.cycles.max_bounces = 4
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"  # show the Gaussians' photo colours as they are
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(path)
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.color = BACKGROUND
    if world.node_tree is not None and world.node_tree.nodes.get("Background") is not None:
        world.node_tree.nodes["Background"].inputs["Color"].default_value = (*BACKGROUND, 1.0)
    t0 = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=None, help="portrait photo (default: the bundled sample)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    parser.add_argument("--name", default="Avatar")
    parser.add_argument("--no-refine", action="store_true", help="skip the photometric refinement")
    parser.add_argument("--engine", choices=("splats", "cycles"), default="splats",
                        help="splats: the add-on's splat renderer (Render Splats); cycles: the Geometry Nodes "
                             "display through Cycles on the CPU")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    parser.add_argument("--render-lod", type=int, default=2)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    sys.path.insert(0, str(ROOT))
    from backend.output_safety import OutputError

    try:  # before any work: a refused run writes nothing
        check_demo_outputs(out, None if args.photo is None else args.photo.resolve(), args.render_lod, args.engine)
    except OutputError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    # The demo imports this checkout as the package ``omg_avatar``; numba's on-disk cache beside the
    # sources would then record that package name and break ``backend`` imports in later pytest runs
    # of the same checkout, so the demo keeps its compiled kernels in a cache folder of its own.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / "build" / "numba-omg_avatar"))
    out.mkdir(parents=True, exist_ok=True)

    photo = args.photo
    if photo is None:
        sys.path.insert(0, str(ROOT))
        from PIL import Image

        from backend.avatar.sample_portrait import sample_photo

        photo = out / "astronaut.png"
        Image.fromarray(sample_photo()).save(photo)
    photo = Path(photo).resolve()

    sys.path.insert(0, str(ROOT))
    import bpy

    import build_addon

    bpy.ops.wm.read_factory_settings(use_empty=True)
    omg_avatar = build_addon.load_tree("omg_avatar")  # this checkout is the extension package

    omg_avatar.register()
    # unregistered before bpy's own exit handler (atexit runs last-registered first), so the add-on's
    # compiled splat shader is freed before Blender counts unfreed memory at exit: kept, it ended the
    # demo with "Error: Not freed memory blocks: 4", which reads as a failure
    import atexit

    atexit.register(omg_avatar.unregister)
    from omg_avatar.backend.render import save_png
    from omg_avatar.omg_blender_addon import scene_write

    t0 = time.perf_counter()
    res = bpy.ops.omg_avatar.build_from_photo(filepath=str(photo), name=args.name, lods=(0, 1, 2),
                                              refine=not args.no_refine, avatar_path=str(out / "avatar.omgavatar"))
    build_s = time.perf_counter() - t0
    if res != {"FINISHED"}:
        print(f"build failed: {res}", file=sys.stderr)
        return 1
    rig = next(o for o in scene_write.all_rigs())
    lods = scene_write.lod_objects(rig)
    counts = {l: len(o.data.vertices) for l, o in lods.items()}
    switch = {}
    for l in sorted(lods):
        t1 = time.perf_counter()
        bpy.ops.omg_avatar.set_lod(lod=l, avatar=rig.name)
        bpy.context.view_layer.update()
        switch[l] = time.perf_counter() - t1

    scene = bpy.context.scene
    scene_write.set_source_pose(rig)
    cam = scene_write.add_source_camera(bpy.context, rig)
    scene.camera = cam
    bpy.ops.omg_avatar.set_lod(lod=args.render_lod, avatar=rig.name)
    blend = out / "avatar.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    import numpy as np
    from mathutils import Matrix, Vector
    from PIL import Image

    def shot(tag: str) -> tuple[Path, float]:
        if args.engine == "splats":  # the add-on's splat renderer (the viewport display's), watermarked
            tmp = out / f"render_{tag}_frames"
            t0 = time.perf_counter()
            res = bpy.ops.omg_avatar.render_splats(avatar=rig.name, filepath=str(tmp), video=False, show=False,
                                                   background=BACKGROUND)
            seconds = time.perf_counter() - t0
            if res != {"FINISHED"}:
                raise RuntimeError(f"Render Splats failed: {res}")
            frame = next(tmp.glob("frame_*.png"))
            png = frame.replace(out / f"render_{tag}.png")
            tmp.rmdir()
            return png, seconds
        raw = out / f"render_{tag}_raw.png"
        seconds = render(bpy, scene, raw, args.samples)
        rgb = np.asarray(Image.open(raw).convert("RGB"))
        png = save_png(out / f"render_{tag}.png", rgb, extra_text={"Source": "OMG Avatar demo (Blender, Cycles CPU)"})
        raw.unlink()
        return png, seconds

    # 1. the photo's view: rig posed like the photo, seen through the fitted camera
    png, render_s = shot(f"lod{args.render_lod}")
    # 2. three-quarter view with the rig animated: jaw opened and a smile keyed on the head's shape keys
    keys = scene_write.head_object(rig).data.shape_keys.key_blocks
    for name, value in (("mouthSmileLeft", 0.6), ("mouthSmileRight", 0.6), ("exp_000", 1.5)):
        if name in keys:
            keys[name].value = value
    jaw = rig.pose.bones["jaw"]
    jaw.rotation_quaternion = (float(np.cos(0.06)), float(np.sin(0.06)), 0.0, 0.0)  # 0.12 rad about model +X
    pivot = rig.matrix_world @ rig.data.bones["neck"].head_local
    cam.matrix_world = (Matrix.Translation(pivot) @ Matrix.Rotation(np.radians(-35), 4, "Z")
                        @ Matrix.Translation(-pivot) @ cam.matrix_world)
    # the fitted camera looks at the face, which lies in front of the neck: orbited, it would frame the
    # face off to one side, so it turns to the head's middle (its mesh's bounding box), up staying up
    head_obj = scene_write.head_object(rig)
    corners = [head_obj.matrix_world @ Vector(c) for c in head_obj.bound_box]
    aim = sum(corners, Vector()) / len(corners)
    aim.z += 0.15 * (max(c.z for c in corners) - min(c.z for c in corners))  # room for the hair above the head
    bpy.context.view_layer.update()
    loc = cam.matrix_world.translation.copy()
    cam.matrix_world = Matrix.Translation(loc) @ (aim - loc).to_track_quat("-Z", "Y").to_matrix().to_4x4()
    png_3q, render_3q_s = shot(f"lod{args.render_lod}_threequarter_animated")

    # the backend splatter's view of the same avatar: turntable (yaw -60..+60) + open mouth, blink
    from omg_avatar.backend.avatar.fileformat import load_avatar
    from omg_avatar.backend.head.loader import load_head_model
    from omg_avatar.backend.preview.turntable import BACK_YAWS, turntable_strip

    saved = load_avatar(out / "avatar.omgavatar")
    saved_model = load_head_model(saved.head_model_path)
    strip = out / f"turntable_lod{args.render_lod}.png"
    save_png(strip, turntable_strip(saved, saved_model, args.render_lod),
             extra_text={"Source": "OMG Avatar demo (backend splatter)"})
    back = out / f"back_lod{args.render_lod}.png"
    save_png(back, turntable_strip(saved, saved_model, args.render_lod, yaws=BACK_YAWS, expression=False),
             extra_text={"Source": "OMG Avatar demo (backend splatter)"})

    figures = {
        "photo": photo.name,
        "turntable_png": str(strip),
        "back_png": str(back),
        "refine": not args.no_refine,
        "build_seconds_total": round(build_s, 2),
        "backend_build_seconds": rig.get("omg_build_seconds"),
        "backend_stage_seconds": dict(rig.get("omg_build_stage_seconds", {})),
        "gaussians": {str(l): c for l, c in counts.items()},
        "prepare_seconds_per_lod": dict(rig["omg_prepare_seconds"]),
        "import_seconds_per_lod": dict(rig["omg_import_seconds"]),
        "lod_switch_seconds": {str(l): round(s, 4) for l, s in switch.items()},
        "blend_mb": round(blend.stat().st_size / 1e6, 1),
        "render": {"engine": "Render Splats (offscreen, gpu module)" if args.engine == "splats" else "CYCLES (CPU)",
                   "samples": args.samples if args.engine == "cycles" else None, "lod": args.render_lod,
                   "size": [scene.render.resolution_x, scene.render.resolution_y],
                   "seconds": round(render_s, 1), "png": str(png),
                   "threequarter_png": str(png_3q), "threequarter_seconds": round(render_3q_s, 1)},
    }
    (out / "figures.json").write_text(json.dumps(figures, indent=2))
    print(f"avatar built and imported in {build_s:.1f} s (backend {figures['backend_build_seconds']} s)")
    for l in sorted(counts):
        print(f"  LOD {l}: {counts[l]:>6,} Gaussians, scene arrays {figures['prepare_seconds_per_lod'][str(l)]:.2f} s, "
              f"bpy import {figures['import_seconds_per_lod'][str(l)]:.2f} s, switch {switch[l] * 1e3:.0f} ms")
    print(f"saved {blend} ({figures['blend_mb']} MB)")
    print(f"backend stages (s): {figures['backend_stage_seconds']}")
    print(f"rendered LOD {args.render_lod} with {figures['render']['engine']} in {render_s:.1f} s -> {png}")
    print(f"rendered the animated three-quarter view in {render_3q_s:.1f} s -> {png_3q}")
    print(f"turntable (yaw -60..+60) and open-mouth, blinking frame (backend splatter) -> {strip}")
    print(f"the back of the head (yaw 120, 180, -120; backend splatter) -> {back}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
