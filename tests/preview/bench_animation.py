"""Figures for docs/figures/animation.md: retargeting throughput (tracking + keyframing) on the
clips in ../shared/media/videos and preview rendering fps per LOD, through the add-on's operators
in Blender-as-a-module (this checkout imported as the extension package, not the installed zip). Not a test: it measures.

    .venv/bin/python tests/preview/bench_animation.py [--frames 8] [--size 512] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VIDEOS = ROOT.parent / "shared" / "media" / "videos"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=8, help="preview frames per LOD")
    ap.add_argument("--size", type=int, default=512, help="preview frame size")
    ap.add_argument("--lods", default="0,1,2")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    lods = tuple(int(x) for x in args.lods.split(","))

    sys.path.insert(0, str(ROOT))
    import build_addon

    import bpy  # noqa: F401

    omg_avatar = build_addon.load_tree("omg_avatar")

    omg_avatar.register()
    from omg_avatar.backend.avatar.build import BuildOptions, build_avatar
    from omg_avatar.omg_blender_addon.scene_write import create_avatar
    from omg_avatar.omg_blender_addon.scene_data import scene_data

    out: dict = {"load_average_start": os.getloadavg(), "cpu_count": os.cpu_count(), "clips": {}, "preview": {}}
    t = time.perf_counter()
    built = build_avatar(None, BuildOptions(lods=lods, refine=False, metrics=False))
    rig = create_avatar(bpy.context, scene_data(built.avatar, built.model, "Bench"))
    out["avatar_seconds"] = time.perf_counter() - t
    counts = built.avatar.counts()

    clips = sorted(VIDEOS.glob("*.mp4")) if VIDEOS.is_dir() else []
    if not clips:
        print(f"{VIDEOS} not present: retargeting figures skipped")
    wm = bpy.context.window_manager
    for clip in clips:
        t = time.perf_counter()
        bpy.ops.omg_avatar.retarget_video(filepath=str(clip), avatar=rig.name)
        wall = time.perf_counter() - t
        rep = dict(wm["omg_avatar_retarget_report"])
        secs = dict(rep["seconds"])
        out["clips"][clip.name] = {"frames": rep["frames"], "source_fps": rep["source_fps"], "wall_seconds": wall,
                                   "track_seconds": secs.get("track"), "keyframe_seconds": secs.get("keyframes"),
                                   "plan_seconds": secs.get("plan"), "throughput_fps": rep["throughput_fps"],
                                   "keyframing_fps": rep["frames"] / max(secs.get("keyframes", 0) + secs.get("plan", 0), 1e-9),
                                   "curves": rep["curves"]}
        print(clip.name, json.dumps(out["clips"][clip.name]))

    scene = bpy.context.scene
    end = min(scene.frame_end, scene.frame_start + args.frames - 1)
    out_dir = Path(tempfile.mkdtemp(prefix="omg-bench-preview-"))
    # warm-up: numba compiles the CPU splatter's kernels on first use in a process
    bpy.ops.omg_avatar.render_preview(avatar=rig.name, frame_start=scene.frame_start, frame_end=scene.frame_start,
                                      resolution=(args.size, args.size), filepath=str(out_dir / "warm"))
    for lod in lods:
        bpy.ops.omg_avatar.render_preview(avatar=rig.name, frame_start=scene.frame_start, frame_end=end, lod=lod,
                                          resolution=(args.size, args.size), filepath=str(out_dir / f"lod{lod}"))
        rep = dict(wm["omg_avatar_preview_report"])
        out["preview"][lod] = {"frames": rep["frames"], "fps": rep["fps"], "seconds": rep["seconds"],
                               "gaussians": counts[lod]["total"], "backend": rep["backend"],
                               "size": [rep["width"], rep["height"]],
                               "stage_seconds": dict(rep["stage_seconds"])}
        print(f"LOD {lod}", json.dumps(out["preview"][lod]))
    out["load_average_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
