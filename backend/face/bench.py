"""Face figures: photo fit error and time, video tracking throughput.

    python -m backend.face.bench [--media DIR] [--json PATH] [--head-model PATH]

Photos: every image in ``DIR/photos`` plus skimage's astronaut (public): landmark analysis time,
single-image fit time (median of 3 after a warm-up) and the mean / RMS landmark reprojection error
in pixels at 512x512. Videos: every clip in ``DIR/videos`` tracked end to end (decode, landmarks,
fit, smoothing) with frames / second, split into decode+landmarks and fitting. Wall time and this
process's CPU time are both reported: on a shared machine the wall time mostly measures the
other tenants, CPU time what the work itself costs. The media folder
(default ``../shared/media`` next to the repository) is internal test material: read here, never
copied; missing folders are skipped. Prints a markdown table; measures, never gates.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from ..filekind import VIDEO_SUFFIXES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")


def default_media() -> Path:
    return Path(__file__).resolve().parents[3] / "shared" / "media"


def bench_photos(model, items: list[tuple[str, object]]) -> list[dict]:
    """items: (name, path or array). Returns one row per photo."""
    from .analyze import FaceAnalyzer
    from .fit import fit_image

    rows = []
    with FaceAnalyzer() as fa:
        for name, src in items:
            t0 = time.perf_counter()
            obs = fa.analyze(src)
            t_an = time.perf_counter() - t0
            fit_image(model, obs)  # warm-up: builds the cached landmark model
            c0 = time.process_time()
            runs = [fit_image(model, obs) for _ in range(3)]
            cpu = (time.process_time() - c0) / 3
            res = runs[-1]
            rows.append({"photo": name, "analyze_s": t_an,
                         "fit_s": statistics.median(r.seconds for r in runs), "fit_cpu_s": cpu,
                         "mean_error_px": res.mean_error_px, "rmse_px": res.rmse_px,
                         "faces": obs.n_faces_found})
    return rows


def bench_videos(model, paths: list[Path]) -> list[dict]:
    from .track import TrackOptions, track_video
    from .video import iter_video

    rows = []
    for p in paths:
        size = iter_video(p).size
        t0, c0 = time.perf_counter(), time.process_time()
        tr = track_video(p, model, TrackOptions())
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows.append({"clip": p.name, "size": f"{size[0]}x{size[1]}", "frames": tr.n_frames,
                     "seconds": sec, "fps": tr.n_frames / sec, "cpu_seconds": cpu,
                     "fps_cpu": tr.n_frames / cpu,
                     "landmarks_s": tr.stage_seconds.get("decode+landmarks", float("nan")),
                     "fit_s": tr.stage_seconds.get("fit", float("nan")),
                     "frames_without_face": len(tr.frames_without_face),
                     "mean_confidence": float(tr.confidence.mean())})
    return rows


HELP = "photo fit error/time and tracking fps on a media folder"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--media", type=Path, default=default_media())
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--head-model", metavar="PATH")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backend.face.bench", description=__doc__.split("\n")[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def run(args: argparse.Namespace) -> int:

    from skimage import data

    from ..head.loader import load_head_model
    from ..stats import write_json

    model = load_head_model(args.head_model)
    photos: list[tuple[str, object]] = [("astronaut (skimage)", data.astronaut())]
    pdir, vdir = args.media / "photos", args.media / "videos"
    if pdir.is_dir():
        photos += [(p.name, p) for p in sorted(pdir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        print(f"(no {pdir}: internal photos skipped)", file=sys.stderr)
    videos = sorted(p for p in vdir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if vdir.is_dir() else []
    if not videos:
        print(f"(no clips in {vdir}: tracking skipped)", file=sys.stderr)

    prow = bench_photos(model, photos)
    vrow = bench_videos(model, videos)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"model {model.name}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {load:.1f}")
    print("\n| photo | faces | analyze s | fit s (wall) | fit s (CPU) | mean error px | RMS error px |")
    print("|---|---|---|---|---|---|---|")
    for r in prow:
        print(f"| {r['photo']} | {r['faces']} | {r['analyze_s']:.3f} | {r['fit_s']:.3f} | {r['fit_cpu_s']:.3f} | "
              f"{r['mean_error_px']:.2f} | {r['rmse_px']:.2f} |")
    if vrow:
        print("\n| clip | size | frames | wall s | fps (wall, end to end) | CPU s | fps (CPU) "
              "| decode+landmarks s | fit s | no face |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in vrow:
            print(f"| {r['clip']} | {r['size']} | {r['frames']} | {r['seconds']:.2f} | {r['fps']:.1f} | "
                  f"{r['cpu_seconds']:.2f} | {r['fps_cpu']:.1f} | {r['landmarks_s']:.2f} | {r['fit_s']:.2f} | "
                  f"{r['frames_without_face']} |")
    write_json(args.json, {"model": model.name, "load_average": load, "photos": prow, "videos": vrow})
    return 0


if __name__ == "__main__":
    sys.exit(main())
