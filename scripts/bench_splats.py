"""Measure the add-on's splat renderer against the backend splatter (docs/figures/blender.md).

    .venv/bin/python scripts/bench_splats.py [--size 512] [--out out/bench_splats]

Builds the sample avatar (LODs 0-2, no refinement), puts it in a Blender scene (this checkout imported
as the extension package), renders it offscreen (GPUOffScreen; Mesa llvmpipe here) at the source camera,
+/-30 degrees of yaw and with the jaw open (0.3 rad), and the backend's CPU splatter renders the
same avatar, pose and camera. Prints PSNR per LOD and view, and the time of the offscreen draw,
the depth sort alone and the pose read per frame at LOD 2; ``--json`` writes them for the figures
recorder:

    nice python -m backend figures record blender_splats -- python scripts/bench_splats.py --eevee --json {json}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
JAW = 0.3
EEVEE_SAMPLES = 16
OLD_SAMPLES, OLD_SPLAT_SCALE = 16, 2.0  # the uniform-alpha ellipsoids as the add-on drew them before


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def u8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0, 1) * 255.0).round()


def backend_render(av, model, params, lod: int, cam, linear_light: bool = False, eps2d: float = 0.3) -> np.ndarray:
    """(H, W, 3) float32: the backend splatter's render, posed like its previews (TorchPoser:
    positions and Gaussian rotations, the view-dependent colours and sizes seen from ``cam``),
    white background. ``linear_light``: composite linearised colours and encode the result to sRGB
    (what EEVEE does under the Standard view transform)."""
    import torch

    from omg_avatar.backend.avatar.pose_torch import TorchPoser
    from omg_avatar.backend.avatar.view_colors import for_views
    from omg_avatar.backend.render.splat import splat

    rest = av.rest_set(lod)
    view = av.lod_views.get(lod)
    with torch.no_grad():
        poser = TorchPoser(av, model, lod)
        p = poser.pose_params(params)
        colors, scales = for_views(torch.as_tensor(rest.colors), p.scales(torch.as_tensor(rest.scales)), view,
                                   p.means, p.joints, None if view is None else poser.global_share(view.rows),
                                   [cam.center])
        colors = colors[0] if colors.dim() == 3 else colors
        if linear_light:
            colors = torch.where(colors <= 0.04045, colors / 12.92, ((colors + 0.055) / 1.055) ** 2.4)
        img = splat(p.means[0], p.quats[0], scales[0] if scales.dim() == 3 else scales, rest.opacities, colors, cam,
                    background=np.ones(3, np.float32), backend="cpu", eps2d=eps2d).image[0]
    img = img.permute(1, 2, 0).numpy()
    if linear_light:
        img = np.clip(img, 0.0, 1.0)
        img = np.where(img <= 0.0031308, 12.92 * img, 1.055 * img ** (1 / 2.4) - 0.055)
    return img


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench_splats", help="EEVEE renders go here")
    ap.add_argument("--json", type=Path, default=None,
                    help="write the figures here (python -m backend figures record ... --json {json})")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--eevee", action="store_true",
                    help="also render the Geometry Nodes display with EEVEE (Gaussian falloff material and the "
                         "old uniform-alpha ellipsoids) at the source view (minutes a frame on llvmpipe)")
    ap.add_argument("--eevee-lods", type=int, nargs="+", default=[0], help="LODs for --eevee")
    ap.add_argument("--eevee-size", type=int, default=None, help="EEVEE image size (pixels, square; default --size)")
    ap.add_argument("--eevee-samples", type=int, default=EEVEE_SAMPLES,
                    help="EEVEE render samples for the falloff material (dithered transparency converges with them)")
    args = ap.parse_args(argv)
    args.eevee_size = args.eevee_size or args.size
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    import bpy

    import build_addon

    bpy.ops.wm.read_factory_settings(use_empty=True)
    omg_avatar = build_addon.load_tree("omg_avatar")  # this checkout is the extension package
    omg_avatar.register()
    from omg_avatar.backend.avatar import build_avatar
    from omg_avatar.backend.avatar.build import BuildOptions
    from omg_avatar.backend.head.params import HeadParams
    from omg_avatar.omg_blender_addon import scene_data, splat_draw, splat_scene, splat_sort
    from omg_avatar.omg_blender_addon import scene_write
    from omg_avatar.backend.rotations import axis_angle_to_quat
    from omg_avatar.omg_blender_addon.axes import MODEL_TO_BLENDER

    res = build_avatar(None, BuildOptions(lods=(0, 1, 2), refine=False, metrics=False))
    av, model = res.avatar, res.model
    rig = scene_write.create_avatar(bpy.context, scene_data.scene_data(av, model, "Bench"))
    scene = bpy.context.scene
    C4 = np.eye(4)
    C4[:3, :3] = MODEL_TO_BLENDER
    src = av.camera.resized(args.size, args.size)
    pivot = av.rest_set(0).means.mean(0)
    cams = {"source": src, "yaw_m30": src.orbit_yaw(-30, pivot=pivot), "yaw_p30": src.orbit_yaw(30, pivot=pivot)}
    zero = HeadParams.zeros(model)
    zero.shape = av.params.shape
    jaw = HeadParams.zeros(model)
    jaw.shape = av.params.shape
    jaw.pose[0, 2, 0] = JAW
    white = np.ones(3, np.float32)
    table, timing = {}, {}
    for lod in (0, 1, 2):
        bpy.ops.omg_avatar.set_lod(lod=lod, avatar="Bench")
        rest = av.rest_set(lod)
        rows = {}
        for tag, params, cam in [(t, zero, c) for t, c in cams.items()] + [("jaw", jaw, src)]:
            rig.pose.bones["jaw"].rotation_quaternion = tuple(axis_angle_to_quat(params.pose[0, 2]))
            scene.frame_set(scene.frame_current)
            data = splat_scene.scene_splats(bpy.context)
            img = splat_draw.render_offscreen(data, splat_draw.SplatView.from_camera(cam, C4))
            ref = backend_render(av, model, params, lod, cam)
            rows[tag] = round(psnr(u8(img[..., :3]), u8(ref)), 2)
        table[lod] = rows
        print(f"LOD {lod} ({len(rest):,} splats): " + ", ".join(f"{k} {v:.1f} dB" for k, v in rows.items()))
    # speed at LOD 2: pose read, sort alone, offscreen draw (upload + sort + draw + read-back)
    rig.pose.bones["jaw"].rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
    scene.frame_set(scene.frame_current)
    view = splat_draw.SplatView.from_camera(src, C4)
    t_pose, t_sort, t_draw = [], [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        data = splat_scene.scene_splats(bpy.context)
        t_pose.append(time.perf_counter() - t)
        t = time.perf_counter()
        splat_sort.depth_order(data.means, view.viewmat)
        t_sort.append(time.perf_counter() - t)
        t = time.perf_counter()
        splat_draw.render_offscreen(data, view)
        t_draw.append(time.perf_counter() - t)
    # the viewport's per-frame stages at a fixed pose: index buffer for a new order, then the draw
    # (finished: one pixel read back forces llvmpipe to complete it)
    import gpu

    batch = splat_draw.SplatBatch(data)
    t_upload, t_ibo, t_only = [], [], []
    off = gpu.types.GPUOffScreen(args.size, args.size, format="RGBA16F")
    try:
        for _ in range(args.repeats):
            t = time.perf_counter()
            splat_draw.SplatBatch(data)
            t_upload.append(time.perf_counter() - t)
            order = splat_sort.depth_order(data.means, view.viewmat)
            t = time.perf_counter()
            batch.set_order(order)
            t_ibo.append(time.perf_counter() - t)
            with off.bind():
                fb = gpu.state.active_framebuffer_get()
                fb.clear(color=(1.0, 1.0, 1.0, 0.0), depth=1.0)
                t = time.perf_counter()
                batch.draw(view)
                fb.read_color(0, 0, 1, 1, 4, 0, "FLOAT")
                t_only.append(time.perf_counter() - t)
    finally:
        off.free()
    med = lambda v: float(np.median(v))  # noqa: E731
    timing = {"splats": len(data), "pose_read_s": med(t_pose), "sort_s": med(t_sort),
              "offscreen_frame_s": med(t_draw), "vertex_upload_s": med(t_upload), "index_buffer_s": med(t_ibo),
              "draw_s": med(t_only), "draw_plus_sort_s": med(t_only) + med(t_sort) + med(t_ibo), "size": args.size}
    print(f"LOD 2, {len(data):,} splats, {args.size}x{args.size}: pose read {timing['pose_read_s'] * 1e3:.0f} ms, "
          f"sort {timing['sort_s'] * 1e3:.0f} ms, index buffer {timing['index_buffer_s'] * 1e3:.0f} ms, "
          f"draw {timing['draw_s'] * 1e3:.0f} ms, vertex upload {timing['vertex_upload_s'] * 1e3:.0f} ms; "
          f"whole offscreen frame (read pose excluded) {timing['offscreen_frame_s'] * 1e3:.0f} ms")
    eevee = eevee_figures(bpy, scene, rig, av, model, src, zero, args) if args.eevee else None

    figures = {"size": args.size, "psnr_db": {str(k): v for k, v in table.items()}, "speed_lod2": timing,
               "renderer": gpu.platform.renderer_get(), "eevee_gn_psnr_db": eevee and eevee[1],
               "eevee_gn": eevee and eevee[0]}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1))
        print(f"-> {args.json}")
    return 0


def eevee_figures(bpy, scene, rig, av, model, cam, params, args) -> dict:
    """PSNR of EEVEE renders of the Geometry Nodes display vs the backend splatter (source view,
    Standard view transform, white world): the Gaussian-falloff material as the add-on sets it
    up (with the node group's 0.3 px^2 low-pass), and the old uniform-alpha ellipsoids (the falloff
    unlinked, Splat Scale 2, no low-pass, 16 samples); then the falloff material as Render Splats'
    scene-engine renderer draws it in splatter colours (display values blended, transparent film
    composited over white)."""
    from PIL import Image

    from omg_avatar.backend.render import save_png
    from omg_avatar.omg_blender_addon import display_render, gaussian_display
    from omg_avatar.omg_blender_addon import scene_write

    rig.pose.bones["jaw"].rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
    scene.camera = scene_write.add_source_camera(bpy.context, rig)
    r = scene.render
    r.engine = "BLENDER_EEVEE"
    r.resolution_x = r.resolution_y = args.eevee_size
    r.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    cam = cam.resized(args.eevee_size, args.eevee_size)
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    mat = bpy.data.materials[gaussian_display.MATERIAL_NAME]
    nt = mat.node_tree
    mix = next(n for n in nt.nodes if n.bl_idname == "ShaderNodeMixShader")
    alpha = next(n for n in nt.nodes if n.bl_idname == "ShaderNodeAttribute"
                 and n.attribute_name == gaussian_display.ALPHA_ATTRIBUTE)
    falloff_link = mix.inputs["Fac"].links[0].from_socket
    ng = gaussian_display.splat_node_group()
    scale_id = ng.interface.items_tree[gaussian_display.SPLAT_SCALE_SOCKET].identifier
    lowpass_id = ng.interface.items_tree[gaussian_display.LOWPASS_SOCKET].identifier
    mods = [o.modifiers[gaussian_display.MODIFIER_NAME] for o in bpy.data.objects
            if o.modifiers.get(gaussian_display.MODIFIER_NAME) is not None]
    settings = {"size": args.eevee_size, "samples": args.eevee_samples, "old_samples": OLD_SAMPLES,
                "splat_scale": gaussian_display.SPLAT_SCALE, "old_splat_scale": OLD_SPLAT_SCALE,
                "lowpass_px2": gaussian_display.LOWPASS, "old_lowpass_px2": 0.0,
                "render_method": mat.surface_render_method, "view_transform": scene.view_settings.view_transform,
                "filter_size_px": r.filter_size}
    out = {}
    variants = (("gaussian_falloff", falloff_link, args.eevee_samples, gaussian_display.SPLAT_SCALE,
                 gaussian_display.LOWPASS),
                ("uniform_alpha", alpha.outputs["Fac"], OLD_SAMPLES, OLD_SPLAT_SCALE, 0.0))
    for lod in args.eevee_lods:
        bpy.ops.omg_avatar.set_lod(lod=lod, avatar="Bench")
        ref = backend_render(av, model, params, lod, cam)
        # what no EEVEE material can change, as the splatter sees it: compositing in linear light,
        # and the splatter's 0.3 px^2 low-pass (renders without it)
        settings[f"lod{lod}_linear_light_psnr_db"] = round(psnr(u8(backend_render(
            av, model, params, lod, cam, linear_light=True)), u8(ref)), 2)
        settings[f"lod{lod}_no_lowpass_psnr_db"] = round(psnr(u8(backend_render(
            av, model, params, lod, cam, eps2d=1e-6)), u8(ref)), 2)
        for tag, src_socket, samples, k, lowpass in variants:
            nt.links.new(src_socket, mix.inputs["Fac"])
            scene.eevee.taa_render_samples = samples
            for m in mods:
                m[scale_id] = k
                m[lowpass_id] = lowpass
                m.id_data.update_tag()
            path = args.out / f"eevee_lod{lod}_{tag}.png"
            r.filepath = str(path)
            t = time.perf_counter()
            bpy.ops.render.render(write_still=True)
            secs = time.perf_counter() - t
            img = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)
            save_png(path, img.astype(np.uint8))  # measured first, then stamped like every render
            out[f"lod{lod}_{tag}"] = {"psnr_db": round(psnr(img, u8(ref)), 2), "seconds": round(secs, 1),
                                      "samples": samples, "splat_scale": k, "lowpass_px2": lowpass}
            print(f"EEVEE GN display LOD {lod} {tag}: {out[f'lod{lod}_{tag}']['psnr_db']:.1f} dB ({secs:.0f} s)")
        nt.links.new(falloff_link, mix.inputs["Fac"])
        for m in mods:
            m[scale_id] = gaussian_display.SPLAT_SCALE
            m[lowpass_id] = gaussian_display.LOWPASS
            m.id_data.update_tag()
        # Render Splats' scene-engine renderer in splatter colours (what the operator writes, before
        # its watermark): the material emits display values, EEVEE blends them like the splatter
        scene.eevee.taa_render_samples = args.eevee_samples
        t = time.perf_counter()
        img = display_render.render_engine_frame(scene, args.eevee_size, args.eevee_size, (1.0, 1.0, 1.0), "SPLATTER")
        secs = time.perf_counter() - t
        img = u8(img[..., :3])
        save_png(args.out / f"eevee_lod{lod}_gaussian_falloff_splatter_colors.png", img.astype(np.uint8))
        out[f"lod{lod}_gaussian_falloff_splatter_colors"] = {
            "psnr_db": round(psnr(img, u8(ref)), 2), "seconds": round(secs, 1), "samples": args.eevee_samples,
            "splat_scale": gaussian_display.SPLAT_SCALE, "lowpass_px2": gaussian_display.LOWPASS}
        print(f"EEVEE GN display LOD {lod} splatter colours: "
              f"{out[f'lod{lod}_gaussian_falloff_splatter_colors']['psnr_db']:.1f} dB ({secs:.0f} s)")
    return settings, out


if __name__ == "__main__":
    sys.exit(main())
