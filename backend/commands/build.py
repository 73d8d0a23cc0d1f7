"""``python -m backend build [photo | clip | photo photo ...] -o DIR``: one photo, a clip or several photos
-> .omgavatar + .ply per LOD + preview PNGs."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

SAMPLE_NAME = "astronaut"  # backend.avatar.sample_portrait.SAMPLE_NAME (not imported: it loads the build)
HELP = "photo -> multi-LOD Gaussian avatar (.omgavatar, .ply per LOD, previews)"


def parse_lods(text: str) -> tuple[int, ...]:
    try:
        lods = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lods expects comma-separated integers, got {text!r}") from None
    if not lods or min(lods) < 0 or max(lods) > 3:
        raise argparse.ArgumentTypeError(f"--lods must list levels within 0..3, got {text!r}")
    return lods


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("photo", nargs="*", default=[],
                   help="portrait photo (JPEG/PNG/...), or a clip (mp4/mov/webm/gif/image folder) or several "
                        "photos of one person for a multi-view build; default: the bundled sample "
                        "(skimage astronaut)")
    p.add_argument("--views", type=int, default=8,
                   help="multi-view build from a clip: frames picked to cover the head poses (default 8)")
    p.add_argument("--views-from", default=None, metavar="A:B",
                   help="multi-view build from a clip: pick views only among frames A..B (inclusive)")
    p.add_argument("--anchor", type=int, default=None, metavar="N",
                   help="multi-view build: the view that anchors framing, body and rest pose (a clip's frame "
                        "number, always made a view; or the N-th photo given, from 0); default: the most "
                        "frontal view")
    p.add_argument("-o", "--output", default="out", help="output folder (default: out)")
    p.add_argument("--lods", type=parse_lods, default=(0, 1, 2), help="levels of detail, e.g. 0,1,2")
    p.add_argument("--head-model", default=None, help="FLAME .pkl or head-model .npz (default: stand-in)")
    p.add_argument("--refine-seconds", type=float, default=None,
                   help="refinement time budget in seconds, split over the LODs (0 = no refinement; "
                        "default 30, refinement on when the splatter is fast enough)")
    p.add_argument("--refine-steps", type=int, default=300, help="maximum refinement steps per LOD")
    p.add_argument("--checkpoint", default=None, help="learned OMG weights (selects the learned method)")
    p.add_argument("--dinov2", default=None, help="DINOv2 weights for the learned method")
    p.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto", help="splatting backend")
    p.add_argument("--no-previews", action="store_true", help="skip the preview PNGs")
    p.add_argument("--name", default=None, help="output file stem (default: the photo's stem)")
    p.add_argument("--force", action="store_true",
                   help="replace an earlier avatar of the same name in the output folder (its files, "
                        "including LOD .ply files this build does not make, are removed)")
    p.add_argument("--metrics", action="store_true",
                   help="measure the source-view face PSNR/SSIM per LOD (one extra render per LOD; "
                        "always measured when refinement runs)")
    p.add_argument("--json", default=None, metavar="PATH", help="write figures (counts, seconds, PSNR/SSIM)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")


def earlier_build_files(out: Path, stem: str) -> list[Path]:
    """Files of an earlier build named ``stem`` in ``out`` (the avatar, its LOD .ply files and
    previews): what a new build of that name would replace."""
    if not out.is_dir():
        return []
    pats = (f"{stem}.omgavatar", f"{stem}_lod[0-9].ply", f"{stem}_preview_*.png")
    return sorted(p for pat in pats for p in out.glob(pat) if p.is_file())


def check_outputs(args: argparse.Namespace, stem: str | None) -> tuple[Path, list[Path]]:
    """Everything about the outputs that can fail, checked before the build starts (fast).
    Returns the output folder and the earlier build's files that --force allows replacing."""
    from ..output_safety import OutputError, check_output_dir, check_output_file, inside

    inputs = [*args.photo, args.head_model, args.checkpoint, args.dinov2]
    out = check_output_dir(args.output, inputs)
    if args.json:
        check_output_file(args.json, [*inputs, args.output], what="--json file")
    if args.name is not None:
        inside(out, args.name)
    earlier = earlier_build_files(out, stem) if stem else []
    if earlier and not args.force:
        raise OutputError(args.output, f"already holds an avatar named '{stem}' ("
                          f"{', '.join(p.name for p in earlier[:3])}{', ...' if len(earlier) > 3 else ''}): "
                          "pass --force to replace it, or choose another -o or --name")
    return out, earlier


def multiview(args: argparse.Namespace) -> bool:
    """Several inputs, or one clip: the multi-view build (avatar/multiview.py)."""
    from ..filekind import is_video

    return len(args.photo) > 1 or (len(args.photo) == 1 and is_video(args.photo[0]))


def process_age() -> float | None:
    """Seconds since this process started (interpreter start-up and every import included), from
    /proc (10 ms clock ticks); None where /proc is not there."""
    import os

    try:
        with open("/proc/self/stat", "rb") as f:
            # field 22 (starttime, clock ticks after boot); the command name (field 2) may hold spaces
            start = int(f.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        return max(uptime - start / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return None


def run(args: argparse.Namespace) -> int:
    stem = args.name or (Path(args.photo[0]).stem if args.photo else SAMPLE_NAME)
    out, earlier = check_outputs(args, stem)  # first: before the heavy imports and any work
    import gc

    # The imports (torch, scipy, numba) leave some 270,000 long-lived objects that the cyclic
    # garbage collector walked during the imports, at every full collection of the build and at
    # exit: 0.34 s of CPU in collections per build, 0.14 s more at exit. In a fresh process the
    # imports run without it and what they made is frozen (kept out of every later collection:
    # 0.08 s and 0.05 s); garbage cycles the build makes are still collected. Where the modules
    # are imported already (a caller's process, tests), nothing changes: freezing there would
    # also keep the caller's uncollected garbage for good.
    fresh = "torch" not in sys.modules
    if fresh:
        gc.disable()
    if fresh and args.refine_seconds is not None and args.refine_seconds <= 0:
        # Without refinement, OpenMP's workers (numba's parallel kernels run on its "omp" layer;
        # torch loads libgomp with its import below, which reads this) sleep at a barrier instead
        # of spinning first: libgomp's spinning was 2.2 % of the build's CPU samples (~70 ms),
        # 0.03 % without it; the previews' kernels are milliseconds long, a wake-up tens of
        # microseconds. The refinement's many small torch operations on two threads are left as
        # they were (not measured with it); the user's setting wins
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from ..avatar.build import BuildOptions, build_avatar
        from ..avatar.fileformat import save_avatar
        from ..avatar.outputs import export_plys, write_previews
        from ..blas_threads import single_blas_thread
        from ..progress import tqdm_progress
        from ..stats import write_json
    finally:
        if fresh:
            gc.freeze()
            gc.enable()
    if fresh:
        # scipy.linalg, scipy.ndimage and scipy.special import during the build: without their
        # docstrings' import-time rewriting (backend/scipy_docs.py), ~0.08 s less Python-bound CPU
        from ..allocator import reuse_freed_memory
        from ..scipy_docs import skip_docstring_notes

        skip_docstring_notes()
        # glibc keeps what the build frees for its next arrays instead of faulting fresh pages in
        # (backend/allocator.py: ~130,000 -> ~70,000 page faults in the build, less peak memory)
        reuse_freed_memory()
        # the modules the build imports on its threads (numba's registries, scipy.ndimage, cv2,
        # mediapipe) made the collector run ~150 times in the build, once over everything:
        # 0.06 s of CPU; collecting after 20,000 new objects instead of 700 still collects the
        # build's garbage cycles, about 5 times (0.017 s)
        gc.set_threshold(20_000, 20, 20)

    opts = BuildOptions(lods=args.lods, head_model=args.head_model, refine_steps=args.refine_steps,
                        render_backend=args.backend, checkpoint=args.checkpoint, dinov2=args.dinov2,
                        method="learned" if args.checkpoint else "analytic", metrics=args.metrics)
    if args.refine_seconds is not None:
        opts.refine_seconds = float(args.refine_seconds)
        opts.refine = args.refine_seconds > 0
    progress, close = tqdm_progress("build", args.progress)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    # one BLAS thread for the build and the writing (backend/blas_threads.py: the build's own
    # threads use the cores; OpenBLAS's spinning workers only competed with them)
    try:
        with single_blas_thread():
            reconstruct = None
            if opts.method == "learned":
                from ..model import reconstruct_avatar as reconstruct
            if multiview(args):
                from ..avatar.multiview import MultiViewOptions, build_from_views
                from ..errors import InputError
                from ..face.views import parse_range

                try:
                    views_from = parse_range(args.views_from)
                except ValueError as exc:
                    raise InputError(None, str(exc)) from None
                mv = MultiViewOptions(views=args.views, views_from=views_from, anchor_frame=args.anchor)
                if args.refine_seconds is not None:
                    mv.refine_seconds = float(args.refine_seconds)
                result = build_from_views(args.photo, opts, mv, progress)
            else:
                if args.anchor is not None:
                    from ..errors import InputError

                    raise InputError(None, "--anchor chooses among the views of a multi-view build: give a clip or "
                                           "several photos")
                result = build_avatar(args.photo[0] if args.photo else None, opts, progress, reconstruct)
            with progress.stage("write"):
                # the avatar file and the PLYs (numpy posing, file writes) are written on a second
                # thread while the previews are posed and splatted here; the pool waits for them
                # even when the previews fail, as the one-thread order left them written then too
                from concurrent.futures import ThreadPoolExecutor

                def avatar_files() -> tuple[Path, list[Path]]:
                    return (save_avatar(result.avatar, out / f"{stem}.omgavatar"),
                            export_plys(result.avatar, result.model, out, stem))

                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="omg-write") as pool:
                    files = pool.submit(avatar_files)
                    previews = [] if args.no_previews else write_previews(
                        result.avatar, result.model, out, stem, max(result.avatar.levels), args.backend)
                    avatar_path, plys = files.result()
                # --force replaced an earlier build of this name: its files this build did not
                # rewrite (e.g. _lod2.ply after --lods 0) would otherwise pose as part of the new one
                for stale in set(earlier) - {avatar_path, *plys, *previews}:
                    stale.unlink(missing_ok=True)
    finally:
        close()
    result.seconds["write"] = progress.stage_seconds.get("write", 0.0)
    # total: photo to files on disk, from the start of the build (the command's imports done);
    # process: from the process's start, interpreter start-up and imports included (what `time` shows)
    result.seconds["total"] = time.perf_counter() - t_start
    age = process_age()
    if age is not None:
        result.seconds["process"] = age
    result.seconds["cpu_total"] = time.process_time() - cpu_start  # all threads of this process
    figures = result.figures()
    figures["files"] = [str(p) for p in [avatar_path, *plys, *previews]]
    write_json(args.json, figures)
    for lvl, c in result.avatar.counts().items():
        m = result.metrics.get(lvl, {})
        quality = (f", face PSNR {m['psnr_face']:.2f} dB, SSIM {m['ssim_face']:.3f}" if "psnr_face" in m
                   else "")
        print(f"LOD {lvl}: {c['head']} head + {c['parts']} part Gaussians (body, mouth, eyes){quality}")
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.seconds.items()))
    print(f"wrote {avatar_path}", file=sys.stderr)
    return 0
