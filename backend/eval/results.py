"""Result records of the protocols (plain dataclasses: JSON via ``asdict``, tables via report.py).

Metric conventions: PSNR in dB, SSIM in [0, 1], identity = cosine similarity of dlib embeddings,
AKD / expression distance in px at 512, pose distance in degrees. NaN = not measurable (no face
found by the metric model in a render): counted, never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def nanmean(values) -> float:
    v = np.asarray([np.nan if x is None else x for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def count_nan(values) -> int:
    return int(sum(1 for x in values if x is None or not math.isfinite(x)))


@dataclass
class ImageScores:
    """One rendered frame against its target."""

    psnr_face: float
    psnr_full: float
    ssim_face: float
    ssim_full: float
    identity: float = float("nan")   # cosine similarity render vs target (or vs the source photo)
    akd: float = float("nan")
    alpha_iou: float = float("nan")      # render alpha vs the target's portrait mask (both > 0.5)
    psnr_portrait: float = float("nan")  # PSNR inside target portrait mask OR render alpha
    ssim_portrait: float = float("nan")  # SSIM, same mask
    mouth_psnr: float = float("nan")     # PSNR inside the inner-lip hull; NaN unless the mouth is open
    # the whole crop, padding past the video's edge included (the full-frame figures before they
    # counted only real pixels, scoring.FrameScorer.score); equal to the plain ones on real pixels
    psnr_full_padded: float = float("nan")
    ssim_full_padded: float = float("nan")
    alpha_iou_padded: float = float("nan")
    # where AKD comes from (metrics.geometry.akd_breakdown): per landmark group, and the mean offset
    akd_lips: float = float("nan")
    akd_eyes: float = float("nan")
    akd_brows: float = float("nan")
    akd_oval: float = float("nan")
    akd_nose: float = float("nan")
    akd_iris: float = float("nan")
    akd_shift: float = float("nan")
    # where SSIM full is lost (metrics.portrait.ssim_loss_split): shares of 1 - ssim_full
    ssim_loss_background: float = float("nan")
    ssim_loss_silhouette: float = float("nan")
    ssim_loss_face: float = float("nan")
    ssim_loss_person: float = float("nan")


@dataclass
class ReconstructionRow:
    """Protocol 1, one photo at one LOD: render at the source camera vs the photo's 512 crop."""

    photo: str
    lod: int
    n_gaussians: int
    scores: ImageScores
    crop_coverage: float = float("nan")  # share of the photo's head-and-hair region inside the crop


@dataclass
class BuildTiming:
    photo: str
    seconds: dict[str, float]       # per build stage + "total"
    peak_rss_mb: float
    peak_traced_mb: float | None = None
    peak_cuda_mb: float | None = None


@dataclass
class FrameScores:
    frame: int                      # index in the video
    scores: ImageScores


@dataclass
class SelfReenactment:
    """Protocol 2, one video at one LOD: frame 0 builds the avatar, every k-th later frame drives."""

    video: str
    lod: int
    every: int
    frames: list[FrameScores] = field(default_factory=list)

    def mean(self, name: str) -> float:
        return nanmean(getattr(f.scores, name) for f in self.frames)

    def missing(self, name: str) -> int:
        return count_nan(getattr(f.scores, name) for f in self.frames)


@dataclass
class CrossFrame:
    frame: int
    identity_to_source: float       # render vs the source photo A
    expression_distance: float      # render vs driving frame of B, px at 512
    pose_distance_deg: float        # render vs driving frame of B


@dataclass
class CrossReenactment:
    """Protocol 3: photo A driven by video B."""

    photo: str
    video: str
    lod: int
    frames: list[CrossFrame] = field(default_factory=list)

    def mean(self, name: str) -> float:
        return nanmean(getattr(f, name) for f in self.frames)

    def missing(self, name: str) -> int:
        return count_nan(getattr(f, name) for f in self.frames)


@dataclass
class TrackTiming:
    video: str
    frames: int
    seconds: float
    peak_rss_mb: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class RenderTiming:
    lod: int
    backend: str
    n_gaussians: int
    width: int
    height: int
    frames: int
    seconds: float                   # posing + splatting, all timed frames
    peak_rss_mb: float
    peak_cuda_mb: float | None = None
    pose_seconds: float = 0.0        # of which posing (LBS + upsampling, all frames at once)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class EvalResults:
    machine: dict[str, Any]
    media_root: str | None
    options: dict[str, Any]
    reconstruction: list[ReconstructionRow] = field(default_factory=list)
    build_timing: list[BuildTiming] = field(default_factory=list)
    self_reenactment: list[SelfReenactment] = field(default_factory=list)
    # issue 17's protocol: the same held-out frames scored for a multi-view and a single-photo build
    multiview: list[SelfReenactment] = field(default_factory=list)
    multiview_single: list[SelfReenactment] = field(default_factory=list)
    # ... and at the source frame (frame 0, the single-photo build's photo)
    multiview_source: list[SelfReenactment] = field(default_factory=list)
    multiview_source_single: list[SelfReenactment] = field(default_factory=list)
    multiview_seconds: list[dict[str, Any]] = field(default_factory=list)  # video, multi, single build s
    # ... per clip, each scored frame's error split by region (protocols.multiview.MultiviewRuns.breakdown)
    multiview_breakdown: list[dict[str, Any]] = field(default_factory=list)
    cross_reenactment: list[CrossReenactment] = field(default_factory=list)
    track_timing: list[TrackTiming] = field(default_factory=list)
    render_timing: list[RenderTiming] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # "what: why" lines
    total_seconds: float = 0.0
    started_utc: str = ""                               # when the measurements started
    baseline: dict[str, Any] | None = None              # an earlier run's summary (+ "_label"), shown beside

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["track_timing"] = [dict(asdict(t), fps=t.fps) for t in self.track_timing]
        d["render_timing"] = [dict(asdict(t), fps=t.fps) for t in self.render_timing]
        d["summary"] = summary(self)
        return d


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


def _scores(d: dict) -> ImageScores:
    return ImageScores(**{k: _nan(d.get(k)) for k in ImageScores.__dataclass_fields__})


def results_from_dict(d: dict[str, Any]) -> EvalResults:
    """Inverse of ``EvalResults.as_dict`` (after a JSON round trip: null -> NaN), so a report can
    be re-rendered from a figures file."""
    res = EvalResults(machine=d["machine"], media_root=d.get("media_root"), options=d.get("options", {}),
                      skipped=list(d.get("skipped", [])), total_seconds=float(d.get("total_seconds", 0.0)),
                      started_utc=str(d.get("started_utc", "")), baseline=d.get("baseline"))
    res.reconstruction = [ReconstructionRow(r["photo"], r["lod"], r["n_gaussians"], _scores(r["scores"]),
                                            _nan(r.get("crop_coverage")))
                          for r in d.get("reconstruction", [])]
    res.build_timing = [BuildTiming(b["photo"], b["seconds"], _nan(b["peak_rss_mb"]), b.get("peak_traced_mb"),
                                    b.get("peak_cuda_mb")) for b in d.get("build_timing", [])]
    res.self_reenactment = [SelfReenactment(s["video"], s["lod"], s["every"],
                                            [FrameScores(f["frame"], _scores(f["scores"])) for f in s["frames"]])
                            for s in d.get("self_reenactment", [])]
    for key in ("multiview", "multiview_single", "multiview_source", "multiview_source_single"):
        setattr(res, key, [SelfReenactment(s["video"], s["lod"], s["every"],
                                           [FrameScores(f["frame"], _scores(f["scores"])) for f in s["frames"]])
                           for s in d.get(key, [])])
    res.multiview_seconds = list(d.get("multiview_seconds", []))
    res.multiview_breakdown = list(d.get("multiview_breakdown", []))
    res.cross_reenactment = [CrossReenactment(c["photo"], c["video"], c["lod"],
                                              [CrossFrame(f["frame"], _nan(f["identity_to_source"]),
                                                          _nan(f["expression_distance"]),
                                                          _nan(f["pose_distance_deg"])) for f in c["frames"]])
                             for c in d.get("cross_reenactment", [])]
    res.track_timing = [TrackTiming(t["video"], t["frames"], t["seconds"], _nan(t["peak_rss_mb"]))
                        for t in d.get("track_timing", [])]
    res.render_timing = [RenderTiming(r["lod"], r["backend"], r["n_gaussians"], r["width"], r["height"],
                                      r["frames"], r["seconds"], _nan(r["peak_rss_mb"]), r.get("peak_cuda_mb"),
                                      float(r.get("pose_seconds", 0.0))) for r in d.get("render_timing", [])]
    return res


RECON_KEYS = ("psnr_face", "psnr_full", "ssim_face", "ssim_full", "identity", "akd", "alpha_iou",
              "psnr_portrait", "ssim_portrait", "mouth_psnr", "psnr_full_padded", "ssim_full_padded",
              "alpha_iou_padded")
SELF_KEYS = ("psnr_face", "psnr_full", "ssim_face", "ssim_full", "akd", "identity", "alpha_iou",
             "psnr_portrait", "ssim_portrait", "mouth_psnr", "akd_lips", "akd_eyes", "akd_brows", "akd_oval",
             "akd_nose", "akd_iris", "akd_shift", "ssim_loss_background", "ssim_loss_silhouette",
             "ssim_loss_face", "ssim_loss_person", "psnr_full_padded", "ssim_full_padded",
             "alpha_iou_padded")


MULTIVIEW_KEYS = ("psnr_full", "ssim_full", "alpha_iou", "akd", "psnr_portrait", "psnr_full_padded",
                  "ssim_full_padded", "alpha_iou_padded")


# multiview_breakdown: held-out frames with the clip track's |yaw| at least this (degrees) also
# count as "turned", where the single photo saw least of the head
TURNED_DEG = 15.0
BREAKDOWN_KEYS = ("psnr_full",) + tuple(f"{k}_{r}" for k in ("psnr", "share")
                                        for r in ("background", "silhouette", "face", "head", "body"))


def multiview_breakdown(entries: list[dict[str, Any]], lod: int) -> dict[str, Any]:
    """Means of the multiview protocol's per-frame error splits at ``lod``: {set: {"multi": {key:
    mean}, "single": {...}, "frames": n}} for the sets "held", "train" (the multi-view build's own
    views), "source" and "turned" (held-out frames with |yaw| >= TURNED_DEG); {} without entries."""
    frames = [f for e in entries for f in e.get("frames", []) if f.get("lod") == lod]
    if not frames:
        return {}
    sets = {"held": [f for f in frames if f["set"] == "held"], "train": [f for f in frames if f["set"] == "train"],
            "source": [f for f in frames if f["set"] == "source"],
            "turned": [f for f in frames if f["set"] == "held" and abs(_nan(f.get("yaw_deg"))) >= TURNED_DEG]}
    return {name: {who: {k: nanmean(f[who].get(k) for f in sel) for k in BREAKDOWN_KEYS}
                   for who in ("multi", "single")} | {"frames": len(sel)}
            for name, sel in sets.items()}


def nanmin(values) -> float:
    v = np.asarray([np.nan if x is None else x for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.min()) if v.size else float("nan")


def summary(res: EvalResults) -> dict[str, Any]:
    """Headline means per LOD (over photos / videos / pairs)."""
    out: dict[str, Any] = {}
    lods = sorted({r.lod for r in res.reconstruction} | {r.lod for r in res.self_reenactment}
                  | {r.lod for r in res.multiview}
                  | {r.lod for r in res.cross_reenactment})
    for lod in lods:
        rec = [r.scores for r in res.reconstruction if r.lod == lod]
        sr = [f.scores for v in res.self_reenactment if v.lod == lod for f in v.frames]
        cr = [f for c in res.cross_reenactment if c.lod == lod for f in c.frames]
        cov = [r.crop_coverage for r in res.reconstruction if r.lod == lod]
        mv = [f.scores for v in res.multiview if v.lod == lod for f in v.frames]
        mv1 = [f.scores for v in res.multiview_single if v.lod == lod for f in v.frames]
        mvs = [f.scores for v in res.multiview_source if v.lod == lod for f in v.frames]
        mvs1 = [f.scores for v in res.multiview_source_single if v.lod == lod for f in v.frames]
        out[f"lod{lod}"] = {
            "reconstruction": {k: nanmean(getattr(s, k) for s in rec) for k in RECON_KEYS}
                              | {"crop_coverage": nanmean(cov), "crop_coverage_min": nanmin(cov),
                                 "mouth_frames": len(rec) - count_nan(s.mouth_psnr for s in rec)},
            "self_reenactment": {k: nanmean(getattr(s, k) for s in sr) for k in SELF_KEYS}
                                | {"mouth_frames": len(sr) - count_nan(s.mouth_psnr for s in sr)},
            **({"multiview": {k: nanmean(getattr(s, k) for s in mv) for k in MULTIVIEW_KEYS}
                            | {f"{k}_single": nanmean(getattr(s, k) for s in mv1) for k in MULTIVIEW_KEYS}
                            | {f"{k}_source": nanmean(getattr(s, k) for s in mvs) for k in MULTIVIEW_KEYS}
                            | {f"{k}_source_single": nanmean(getattr(s, k) for s in mvs1) for k in MULTIVIEW_KEYS}
                            | {"frames": len(mv), "source_frames": len(mvs)}} if mv else {}),
            **({"multiview_breakdown": multiview_breakdown(res.multiview_breakdown, lod)}
               if multiview_breakdown(res.multiview_breakdown, lod) else {}),
            "cross_reenactment": {k: nanmean(getattr(f, k) for f in cr)
                                  for k in ("identity_to_source", "expression_distance", "pose_distance_deg")},
        }
    return out
