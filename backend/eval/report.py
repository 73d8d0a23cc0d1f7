"""Markdown report + small PNG plots from EvalResults. Plots show metrics only: never frames."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..output_safety import atomic_path, atomic_write_text
from .results import EvalResults, nanmean, summary

# The paper's VFHQ self-reenactment figures (OMG-Avatar, LOD 2), quoted for reference only.
PAPER_VFHQ_LOD2 = {"psnr": 22.72, "ssim": 0.831, "akd": 2.045}

PLOT_DPI = 80  # ~480x260 px figures: small files for the repository


def fmt(x, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


PLOT_FILES = ("reconstruction.png", "self_reenactment.png", "cross_reenactment.png", "speed.png")


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    with atomic_path(path) as tmp:  # an earlier plot stays whole until the new one is
        fig.savefig(tmp, dpi=PLOT_DPI)
    _plt().close(fig)
    return path.name


def plot_reconstruction(res: EvalResults, out: Path) -> str | None:
    if not res.reconstruction:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(6.0, 2.8))
    lods = sorted({r.lod for r in res.reconstruction})
    from matplotlib.lines import Line2D

    for ax, (face, full, label) in zip(axes, [("psnr_face", "psnr_full", "PSNR (dB)"),
                                              ("ssim_face", "ssim_full", "SSIM")]):
        for key, off, color in ((face, -0.12, "tab:blue"), (full, 0.12, "tab:orange")):
            for lod in lods:
                vals = [getattr(r.scores, key) for r in res.reconstruction if r.lod == lod]
                vals = [v for v in vals if math.isfinite(v)]
                ax.scatter([lod + off] * len(vals), vals, s=10, color=color, alpha=0.6)
                ax.plot([lod + off - 0.08, lod + off + 0.08], [nanmean(vals)] * 2, color=color, lw=2)
        ax.set_xticks(lods)
        ax.set_xlabel("LOD")
        ax.set_title(label, fontsize=9)
    handles = [Line2D([], [], color=c, marker="o", lw=2, markersize=3) for c in ("tab:blue", "tab:orange")]
    axes[0].legend(handles, ["face mask", "full image"], fontsize=7, loc="lower right")
    fig.suptitle("Source-view reconstruction (dots: photos, bars: mean)", fontsize=9)
    return _save(fig, out / "reconstruction.png")


def plot_self_reenactment(res: EvalResults, out: Path) -> str | None:
    if not res.self_reenactment:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(6.0, 2.8))
    for run in res.self_reenactment:
        fr = [f.frame for f in run.frames]
        label = f"{Path(run.video).stem[:20]} L{run.lod}"
        axes[0].plot(fr, [f.scores.psnr_full for f in run.frames], marker=".", lw=1, label=label)
        axes[1].plot(fr, [f.scores.akd for f in run.frames], marker=".", lw=1, label=label)
    axes[0].set_title("PSNR full image (dB)", fontsize=9)
    axes[1].set_title("AKD (px at 512)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("frame")
    axes[1].legend(fontsize=6)
    fig.suptitle("Self-reenactment per driving frame", fontsize=9)
    return _save(fig, out / "self_reenactment.png")


def plot_cross(res: EvalResults, out: Path) -> str | None:
    if not res.cross_reenactment:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(6.4, 2.6))
    lods = sorted({c.lod for c in res.cross_reenactment})
    keys = [("identity_to_source", "identity to A"), ("expression_distance", "expr. dist. (px)"),
            ("pose_distance_deg", "pose dist. (deg)")]
    for ax, (key, title) in zip(axes, keys):
        for lod in lods:
            vals = [c.mean(key) for c in res.cross_reenactment if c.lod == lod]
            vals = [v for v in vals if math.isfinite(v)]
            ax.scatter([lod] * len(vals), vals, s=10, alpha=0.6)
            if vals:
                ax.plot([lod - 0.15, lod + 0.15], [np.mean(vals)] * 2, color="k", lw=2)
        ax.set_xticks(lods)
        ax.set_xlabel("LOD")
        ax.set_title(title, fontsize=9)
    fig.suptitle("Cross-reenactment (dots: photo/video pairs)", fontsize=9)
    return _save(fig, out / "cross_reenactment.png")


def plot_speed(res: EvalResults, out: Path) -> str | None:
    if not res.render_timing and not res.build_timing:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.8))
    backends = sorted({r.backend for r in res.render_timing})
    for i, be in enumerate(backends):
        rows = sorted((r for r in res.render_timing if r.backend == be), key=lambda r: r.lod)
        x = np.array([r.lod for r in rows]) + (i - (len(backends) - 1) / 2) * 0.3
        axes[0].bar(x, [r.fps for r in rows], width=0.3, label=be)
    axes[0].set_yscale("log")
    axes[0].set_xticks(sorted({r.lod for r in res.render_timing}))
    axes[0].set_xlabel("LOD")
    axes[0].set_title("render fps at 512x512", fontsize=9)
    if backends:
        axes[0].legend(fontsize=7)
    stages: list[str] = []
    for b in res.build_timing:
        stages += [s for s in b.seconds if s != "total" and s not in stages]
    bottom = np.zeros(len(res.build_timing))
    for s in stages:
        vals = np.array([b.seconds.get(s, 0.0) for b in res.build_timing])
        axes[1].bar(range(len(vals)), vals, bottom=bottom, label=s)
        bottom += vals
    axes[1].set_xticks(range(len(res.build_timing)))
    axes[1].set_xticklabels([Path(b.photo).stem[:8] for b in res.build_timing], rotation=45, fontsize=6)
    axes[1].set_title("build time per stage (s)", fontsize=9)
    if stages:
        axes[1].legend(fontsize=5)
    return _save(fig, out / "speed.png")


METRIC_NOTE = (
    "**Metric models:** PSNR/SSIM (Gaussian 11x11, sigma 1.5, as scikit-image) on the 512x512 head "
    "crop; *face* = inside the convex hull of the target's mediapipe landmarks, *full* = the whole crop "
    "with the target composited on the render background by the portrait matte (mediapipe selfie "
    "segmentation refined with the photo, backend/face/matte.py; runs before 2026-12-01 19:00 UTC used "
    "the segmenter's mask alone). Identity = cosine similarity of dlib ResNet face embeddings (face-recognition-models, "
    "CC0). AKD = mean distance of mediapipe's 478 face-mesh landmarks (px at 512). Expression distance = "
    "mouth/eye/brow landmarks after a similarity alignment on nose + upper face oval (px at 512); pose "
    "distance = rotation of that alignment (degrees). **Left out:** LPIPS and ArcFace (CSIM) need weight "
    "downloads; the paper's AKD uses a different landmark detector."
)

PAPER_NOTE = (
    "The paper's VFHQ numbers are quoted for reference: they come from its trained network on VFHQ "
    "test videos with its own metric models (face-alignment keypoints for AKD, ArcFace for identity); "
    "ours come from the analytic build (no trained weights) on different media with the metric models "
    "above, so the rows are not directly comparable."
)


def _header(res: EvalResults, command: str, rerendered: bool = False, record: str | None = None) -> list[str]:
    m = res.machine
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    when = f" (started {res.started_utc})" if res.started_utc else ""
    run = res.options.get("command")
    if record is not None:  # a page rendered from a figure record: no clock, so it re-renders byte for byte
        head = (f"Figures measured by {'`' + run + '`' if run else 'an earlier eval run'}{when} in "
                f"{res.total_seconds:.0f} s; this page is rendered from the record [`{Path(record).name}`]({record}) "
                f"by `{command}`.")
    elif rerendered:
        head = (f"Figures measured by {'`' + run + '`' if run else 'an earlier eval run'}{when} in "
                f"{res.total_seconds:.0f} s; report re-rendered {now} by `{command}`.")
    else:
        head = f"Measured {now} by `{command}`{when} in {res.total_seconds:.0f} s."
    L = ["# OMG Avatar: evaluation report", "", head, "",
         "**Machine:** " + m.get("one_line", str(m)), ""]
    la0, la1 = m.get("load_average"), m.get("load_average_end")
    if la0 or la1:
        L += [f"**CPU load** (1-min load average) at start / end: {la0[0] if la0 else 'n/a'} / "
              f"{la1[0] if la1 else 'n/a'} on {m.get('usable_cores', '?')} cores; other processes may "
              "share the machine, so timings are indicative.", ""]
    if res.media_root is not None:
        L += [f"**Media:** `{res.media_root}` ({len({r.photo for r in res.build_timing})} photos, "
              f"{len(res.track_timing)} videos). Only metrics are reported: no frames or crops of the media.",
              "", METRIC_NOTE, ""]
    opts = json.loads(json.dumps(res.options, default=str))  # tuples -> lists, as after a JSON round trip
    L += ["**Options:** " + ", ".join(f"{k}={v}" for k, v in opts.items() if k != "command"), ""]
    return L


PORTRAIT_NOTE = (
    "*Whole portrait*: alpha IoU = render alpha > 0.5 against the target's portrait mask > 0.5; "
    "*PSNR portrait* / *SSIM portrait* = inside the union of that mask and the render's alpha, so crops of "
    "different framing (more or less black background) compare fairly; *mouth PSNR* = inside the convex "
    "hull of the target's inner-lip landmarks, only on frames whose inner-lip gap is at least "
    "{thr:.2f} of the inner-lip width (the mouth clearly open); *crop coverage* = share of the photo's "
    "head-and-hair region (portrait-mask pixels above the chin, in the face's connected piece) inside "
    "the 512 crop. Face-hull figures stay for reference; they gate nothing."
)

# (protocol, key, label, digits): the whole-portrait headline, LOD by LOD
HEADLINE_KEYS = (
    ("reconstruction", "psnr_full", "source view PSNR full", 2),
    ("reconstruction", "psnr_portrait", "source view PSNR portrait", 2),
    ("reconstruction", "alpha_iou", "source view alpha IoU", 3),
    ("reconstruction", "crop_coverage_min", "crop coverage (min over photos)", 3),
    ("reconstruction", "psnr_face", "source view PSNR face", 2),
    ("self_reenactment", "psnr_full", "self-reenactment PSNR full", 2),
    ("self_reenactment", "psnr_portrait", "self-reenactment PSNR portrait", 2),
    ("self_reenactment", "ssim_full", "self-reenactment SSIM full", 3),
    ("self_reenactment", "akd", "self-reenactment AKD (px)", 3),
    ("self_reenactment", "alpha_iou", "self-reenactment alpha IoU", 3),
    ("self_reenactment", "mouth_psnr", "self-reenactment mouth PSNR (open-mouth frames)", 2),
    ("self_reenactment", "psnr_face", "self-reenactment PSNR face", 2),
)


def _portrait_headline(res: EvalResults, baseline: dict | None) -> list[str]:
    """Whole-portrait figures per LOD, with a baseline run's (``baseline``: a figures file's
    ``summary``) beside them when given."""
    from .metrics.portrait import MOUTH_OPEN_THRESHOLD

    summ = summary(res)
    if not summ:
        return []
    lods = list(summ)
    header = ["metric"]
    for lod in lods:
        header += ([f"before, {lod.upper()}"] if baseline and lod in baseline else []) + [f"now, {lod.upper()}"]
    rows = []
    for proto, key, label, digits in HEADLINE_KEYS:
        row = [label]
        for lod in lods:
            if baseline and lod in baseline:
                row.append(fmt(baseline[lod].get(proto, {}).get(key), digits))
            row.append(fmt(summ[lod][proto].get(key), digits))
        rows.append(row)
    L = ["## Headline: the whole portrait", ""]
    if baseline:
        L += [f"*before* = {baseline.get('_label', 'the baseline run')}.", ""]
    return L + _table(header, rows) + ["", PORTRAIT_NOTE.format(thr=MOUTH_OPEN_THRESHOLD), ""]


def _headline(res: EvalResults) -> list[str]:
    summ = summary(res)
    if not res.self_reenactment:
        return []
    rows = []
    for lod, s in summ.items():
        sr = s["self_reenactment"]
        rows.append([f"ours, {lod.upper()}", fmt(sr["psnr_full"]), fmt(sr["ssim_full"], 3), fmt(sr["akd"], 3),
                     fmt(sr["identity"], 3), fmt(sr["psnr_face"]), fmt(sr["ssim_face"], 3)])
    p = PAPER_VFHQ_LOD2
    rows.append(["paper, VFHQ, LOD 2", fmt(p["psnr"]), fmt(p["ssim"], 3), fmt(p["akd"], 3), "-", "-", "-"])
    return (["## Self-reenactment vs the paper", ""]
            + _table(["", "PSNR", "SSIM", "AKD", "identity", "PSNR face", "SSIM face"], rows)
            + ["", PAPER_NOTE, ""])


def _section(title: str, rows: list, header: list[str], plot: str | None) -> list[str]:
    L = [title, ""]
    if not rows:
        return L + ["(not run)", ""]
    L += _table(header, rows)
    if plot:
        L += ["", f"![{Path(plot).stem}]({plot})"]
    return L + [""]


def _quality(res: EvalResults, plots: dict[str, str | None]) -> list[str]:
    rec = [[r.photo, r.lod, r.n_gaussians, fmt(r.scores.psnr_full), fmt(r.scores.psnr_portrait),
            fmt(r.scores.alpha_iou, 3), fmt(r.crop_coverage, 3), fmt(r.scores.mouth_psnr), fmt(r.scores.psnr_face),
            fmt(r.scores.ssim_face, 3), fmt(r.scores.ssim_full, 3), fmt(r.scores.identity, 3), fmt(r.scores.akd)]
           for r in res.reconstruction]
    sr = [[s.video, s.lod, len(s.frames), fmt(s.mean("psnr_full")), fmt(s.mean("psnr_portrait")),
           fmt(s.mean("ssim_full"), 3), fmt(s.mean("alpha_iou"), 3), fmt(s.mean("akd"), 3),
           fmt(s.mean("mouth_psnr")), len(s.frames) - s.missing("mouth_psnr"), fmt(s.mean("psnr_face")),
           fmt(s.mean("ssim_face"), 3), fmt(s.mean("identity"), 3), s.missing("akd")] for s in res.self_reenactment]
    cr = [[c.photo, c.video, c.lod, len(c.frames), fmt(c.mean("identity_to_source"), 3),
           fmt(c.mean("expression_distance")), fmt(c.mean("pose_distance_deg")), c.missing("expression_distance")]
          for c in res.cross_reenactment]
    return (_section("## 1. Source-view reconstruction", rec,
                     ["photo", "LOD", "Gaussians", "PSNR full", "PSNR portrait", "alpha IoU", "crop coverage",
                      "mouth PSNR", "PSNR face", "SSIM face", "SSIM full", "identity", "AKD"],
                     plots.get("reconstruction"))
            + _section("## 2. Self-reenactment (frame 0 builds, every k-th later frame drives)", sr,
                       ["video", "LOD", "frames", "PSNR full", "PSNR portrait", "SSIM full", "alpha IoU", "AKD",
                        "mouth PSNR", "open-mouth frames", "PSNR face", "SSIM face", "identity", "no landmarks"],
                       plots.get("self_reenactment"))
            + _section("## 3. Cross-reenactment (photo A driven by video B)", cr,
                       ["photo A", "video B", "LOD", "frames", "identity to A", "expr. dist. (px)",
                        "pose dist. (deg)", "no landmarks"], plots.get("cross_reenactment")))


def _speed(res: EvalResults, plot: str | None, gpu_report: str | None) -> list[str]:
    L = ["## Speed and memory", ""]
    if res.build_timing:
        stages: list[str] = []
        for b in res.build_timing:
            stages += [s for s in b.seconds if s != "total" and s not in stages]
        rows = [[b.photo] + [fmt(b.seconds.get(s), 3) for s in stages]
                + [fmt(b.seconds.get("total"), 3), fmt(b.peak_rss_mb, 0)] for b in res.build_timing]
        L += ["Build (seconds per stage):", ""] + _table(["photo"] + stages + ["total", "peak RSS (MiB)"], rows) + [""]
    if res.track_timing:
        rows = [[t.video, t.frames, fmt(t.seconds), fmt(t.fps, 1), fmt(t.peak_rss_mb, 0)] for t in res.track_timing]
        L += ["Tracking (decode + landmarks + fit, end to end):", ""]
        L += _table(["video", "frames", "seconds", "fps", "peak RSS (MiB)"], rows) + [""]
    if res.render_timing:
        rows = [[r.lod, r.backend, r.n_gaussians, f"{r.width}x{r.height}", r.frames, fmt(r.fps, 2),
                 fmt(1000.0 * r.seconds / max(r.frames, 1), 1), fmt(1000.0 * r.pose_seconds / max(r.frames, 1), 1),
                 fmt(r.peak_rss_mb, 0), fmt(r.peak_cuda_mb, 0)] for r in res.render_timing]
        L += ["Rendering (posed avatar at the source camera, a +/-15 degree head turn; ms/frame = "
              "posing + splatting + copy to host, posing alone beside it):", ""]
        L += _table(["LOD", "backend", "Gaussians", "size", "frames", "fps", "ms/frame", "pose ms/frame",
                     "peak RSS (MiB)", "peak CUDA (MiB)"], rows) + [""]
    if plot:
        L += [f"![speed]({plot})", ""]
    if gpu_report:
        L += [f"GPU figures (measured on another machine): [{gpu_report}]({gpu_report}).", ""]
    L += ["Peak RSS is the process's resident-memory high-water mark during the stage (reset per "
          "stage through /proc/self/clear_refs where Linux allows it).", ""]
    return L


def render_markdown(res: EvalResults, plots: dict[str, str | None], command: str,
                    gpu_report: str | None = None, rerendered: bool = False, record: str | None = None,
                    baseline: dict | None = None) -> str:
    """The report's markdown. ``record``: path of the figure record it is rendered from (relative to
    the page), which replaces the render time in the header. ``baseline``: an earlier run's
    ``summary`` (with an optional ``_label``) shown beside this run's whole-portrait figures."""
    L = _header(res, command, rerendered, record)
    baseline = baseline if baseline is not None else res.baseline
    if res.media_root is not None:  # None: a speed-only run on a saved avatar
        L += _portrait_headline(res, baseline) + _headline(res) + _quality(res, plots)
    L += _speed(res, plots.get("speed"), gpu_report)
    if res.skipped:
        L += ["## Skipped", ""] + [f"- {s}" for s in res.skipped] + [""]
    return "\n".join(L)


def write_plots(res: EvalResults, out_dir: str | Path) -> dict[str, str | None]:
    """Write the report's PNG plots of ``res`` into ``out_dir``, replacing plots of the same names.
    Returns {plot: file name, or None where the run has nothing to plot}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {"reconstruction": plot_reconstruction(res, out), "self_reenactment": plot_self_reenactment(res, out),
            "cross_reenactment": plot_cross(res, out), "speed": plot_speed(res, out)}


def write_report(res: EvalResults, out_dir: str | Path, command: str, rerendered: bool = False,
                 baseline: dict | None = None) -> Path:
    """Write ``out_dir/README.md`` and its PNG plots; returns the markdown path. ``baseline``: an
    earlier run's ``summary`` block (with an optional ``_label``) shown beside this run's."""
    out = Path(out_dir)
    plots = write_plots(res, out)
    # a speed-only report from a GPU machine kept beside this one (docs/report/gpu/README.md)
    gpu = "gpu/README.md" if (out / "gpu" / "README.md").is_file() else None
    md = out / "README.md"
    atomic_write_text(md, render_markdown(res, plots, command, gpu_report=gpu, rerendered=rerendered,
                                          baseline=baseline) + "\n")
    return md
