"""Render an avatar's animation: pose -> splat -> [refiner] -> uint8 frames -> background writer.

Frames are posed and splatted ``batch`` at a time on the splatter's device: the batched torch
posing (backend.avatar.pose_torch: positions and Gaussian rotations, the avatar's own identity)
feeds the splatter directly, and only the finished uint8 frames come back to the host. Stamping
the watermark, PNG encoding and ffmpeg run on a background thread (preview.output.BackgroundWriter),
so the loop does not wait on them. Analytic avatars splat RGB; with a refiner checkpoint the
avatar's learned feature channels are splatted and the refiner turns them into RGB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import InputError
from ..head.params import HeadParams
from ..motion import conform_expr
from ..progress import Progress
from ..render.camera import Camera
from .output import BackgroundWriter, FrameWriter


MIN_SIZE = 80  # the smallest frame the "AI-generated" mark fits on (74 px wide at scale 1)


@dataclass
class PreviewOptions:
    """lod: level of detail (None: the avatar's finest); width/height: pixels (the camera is resized
    to it); backend: splatter "auto" | "cpu" | "cuda"; camera: None = the avatar's source camera,
    or one Camera, or one per frame; checkpoint: OMG checkpoint whose refiner turns splatted
    features into RGB (None: splat RGB); background: RGB in [0, 1]; batch: frames posed and
    splatted per call; cpu_torch_threads: torch's intra-op threads while the CPU loop runs (None:
    leave as is). 1 by default: the loop's torch operations are small (posing costs ~8 ms of CPU a
    frame at LOD 2) and the numba splatter already uses every core, while torch's OpenMP barriers
    cost far more than they gain once other work shares the cores (one 93K-element check: 0.7 ms
    with 1 thread, 100-160 ms with 2 at load 11 on the 2-core machine). transmittance_stop: a
    pixel stops compositing once its transmittance reaches this (render.splat; None = exact): at
    1/255 every uint8 frame is within one level of the exact render, and the CPU splatter skips
    the Gaussians behind the opaque surface (about a fifth of its compositing at LOD 2, 512x512).
    pipeline: on the CPU, pose batch k + 1 on a second thread while batch k is splatted (same
    frames; see PreviewRenderer._pipelined). simd: the CPU splatter composites 8 pixels at a time
    (render.splat(simd=True): float32, polynomial exp; at LOD 2, 512x512, 16 of 3.1 million uint8
    values one level off the exact kernel's, for about half the compositing CPU)."""

    lod: int | None = None
    width: int = 512
    height: int = 512
    backend: str = "auto"
    camera: Camera | Sequence[Camera] | None = None
    checkpoint: str | None = None
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    batch: int = 4
    cpu_torch_threads: int | None = 1
    transmittance_stop: float | None = 1.0 / 255.0
    pipeline: bool = True
    simd: bool = True


def check_model(avatar, model, path=None) -> None:
    """InputError (naming ``path``, the avatar file) when ``model`` is not the head model the
    avatar was built on (a different vertex count cannot pose it)."""
    n = avatar.vertex_offsets.shape[0]
    if model.n_verts != n:
        raise InputError(path, f"the avatar was built on a head model with {n} vertices "
                               f"('{avatar.head_model_name}'), but the head model now loaded has "
                               f"{model.n_verts}: rebuild the avatar with this head model")


def load_avatar_and_model(path: str | Path, head_model: str | Path | None = None):
    """(GaussianAvatar, HeadModel) to pose the .omgavatar ``path`` with: the head model the user
    named (``head_model``) or the avatar's bundled stand-in (``load_model_for_avatar``), checked to
    fit it (``check_model``). InputError naming the file on any problem."""
    from ..avatar import load_avatar
    from ..head.loader import load_model_for_avatar

    avatar = load_avatar(path)
    model = load_model_for_avatar(path, avatar.head_model_name, avatar.head_model_path, head_model)
    check_model(avatar, model, path)
    return avatar, model


@dataclass
class PreviewResult:
    """n_frames written; pngs: their paths; video: the mp4 (or None); seconds: wall time of the
    whole render (pose + splat + refine + write); fps: n_frames / seconds (achieved); stage_seconds:
    per stage (splat, refine on the render thread; pose = time the loop waited for posing, all
    of it for the first batch, and pose_thread = posing's own time, overlapped with splatting when
    pipelined; write = time the loop waited for the background writer; write_thread = the writer
    thread's own time, overlapped); backend: splatter that ran; lod; n_gaussians; size
    (width, height); refined: whether the learned refiner ran."""

    n_frames: int
    pngs: list[Path]
    video: Path | None
    seconds: float
    fps: float
    stage_seconds: dict[str, float]
    backend: str
    lod: int
    n_gaussians: int
    size: tuple[int, int]
    refined: bool = False

    def figures(self) -> dict:
        return {"frames": self.n_frames, "seconds": self.seconds, "fps": self.fps, "backend": self.backend,
                "lod": self.lod, "gaussians": self.n_gaussians, "width": self.size[0], "height": self.size[1],
                "refined": self.refined, "stage_seconds": dict(self.stage_seconds),
                "video": None if self.video is None else str(self.video)}


@dataclass
class PreviewRenderer:
    """Holds one avatar at one LOD ready to render frames (attributes moved to the device once)."""

    avatar: object
    model: object = None
    options: PreviewOptions = field(default_factory=PreviewOptions)

    def __post_init__(self) -> None:
        import torch

        from ..render.splat import select_backend

        if self.model is None:
            from ..head.loader import load_model_for_avatar

            self.model = load_model_for_avatar(None, self.avatar.head_model_name,
                                               self.avatar.head_model_path)
        check_model(self.avatar, self.model)
        o = self.options
        if o.width < MIN_SIZE or o.height < MIN_SIZE or o.width > 8192 or o.height > 8192:
            raise InputError(None, f"preview size {o.width}x{o.height} is out of range ({MIN_SIZE}..8192 "
                                   "pixels: the watermark must fit)")
        self.lod = max(self.avatar.levels) if o.lod is None else int(o.lod)
        if self.lod not in self.avatar.lods:
            raise InputError(None, f"the avatar has no LOD {self.lod} (it has {self.avatar.levels})")
        try:
            self.backend = select_backend(o.backend)
        except (RuntimeError, ValueError) as exc:
            raise InputError(None, str(exc)) from None
        device = torch.device("cuda" if self.backend == "cuda" else "cpu")
        rest = self.avatar.rest_set(self.lod)
        self.refiner = None
        if o.checkpoint:
            from .refiner import load_refiner

            self.refiner = load_refiner(o.checkpoint, device)
            if rest.features is None or rest.features.shape[1] != self.refiner.channels:
                have = "no learned features (analytic build)" if rest.features is None else \
                    f"{rest.features.shape[1]} feature channels"
                raise InputError(o.checkpoint, f"the avatar has {have}; this refiner needs "
                                               f"{self.refiner.channels}: build the avatar with the same checkpoint")
            feats = rest.features
            background = np.zeros(feats.shape[1], np.float32)  # as in training (OMG.render)
        else:
            feats = rest.colors
            background = np.asarray(o.background, np.float32).reshape(3)
        as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), device=device)  # noqa: E731
        from ..avatar.pose_torch import TorchPoser

        self.poser = TorchPoser(self.avatar, self.model, self.lod, device)
        self._scales = as_t(rest.scales)
        self._opacities, self._features = as_t(rest.opacities), as_t(feats)
        self._background = as_t(background)
        self.n_gaussians = len(rest)
        # view-dependent colours and sizes (avatar.view_colors); a refiner's learned features keep theirs
        views = self.avatar.lod_views.get(self.lod) if self.refiner is None else None
        self._views = views if views is not None and len(views) else None
        self._view_share = None if self._views is None else self.poser.global_share(self._views.rows)

    def _per_frame(self, b: int):
        """scales (b, N, 3), opacities (b, N), features (b, N, C): the rest attributes repeated per
        frame once per batch size and kept, so the CPU splatter's kernels, which take one row per
        frame, do not copy them again on every call (the view-dependent rows of the scales and
        features are rewritten in them per batch, _splat_batch)."""
        import torch

        cache = self.__dict__.setdefault("_per_frame_cache", {})
        if b not in cache:
            cache.clear()  # at most two batch sizes occur (full batches and the last one)
            # copies, never views of the rest tensors (expand(1, ...).contiguous() would be one):
            # _splat_batch writes into them
            cache[b] = tuple(t.expand((b,) + tuple(t.shape)).clone(memory_format=torch.contiguous_format)
                             for t in (self._scales, self._opacities, self._features))
        return cache[b]

    def cameras(self, n_frames: int) -> list[Camera]:
        """One Camera per frame, resized to the preview size."""
        o = self.options
        cam = o.camera if o.camera is not None else self.avatar.camera
        cams = [cam] * n_frames if isinstance(cam, Camera) else list(cam)
        if len(cams) != n_frames:
            raise InputError(None, f"{len(cams)} cameras for {n_frames} frames")
        return [c if (c.width, c.height) == (o.width, o.height) else c.resized(o.width, o.height) for c in cams]

    def frames(self, params: HeadParams, progress: Progress | None = None,
               stage_seconds: dict[str, float] | None = None) -> Iterator[np.ndarray]:
        """Yield (H, W, 3) uint8 frames (no watermark yet) for every frame of ``params``."""
        import torch

        progress = progress or Progress()
        secs = stage_seconds if stage_seconds is not None else {}
        params = conform_expr(params, self.model.n_expr)
        threads = self.options.cpu_torch_threads if self.backend == "cpu" else None
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(int(threads))
        try:
            yield from self._frames(params, progress, secs)
        finally:
            if threads:
                torch.set_num_threads(before)

    def _frames(self, params: HeadParams, progress: Progress, secs: dict[str, float]) -> Iterator[np.ndarray]:
        import torch

        T = params.n_frames
        cams = self.cameras(T)
        B = max(1, int(self.options.batch))
        slices = [slice(t0, min(T, t0 + B)) for t0 in range(0, T, B)]
        threads = torch.get_num_threads()

        def pose(sl: slice):
            """Pose one batch (on the posing thread); returns (PosedBatch, seconds)."""
            torch.set_num_threads(threads)  # the intra-op setting is per thread under OpenMP
            t = time.perf_counter()
            with torch.no_grad():
                posed = self.poser.pose(params.expr[sl], params.pose[sl], params.transl[sl])  # (b, N, ...)
            return posed, time.perf_counter() - t

        pool = None
        pending = None
        try:
            for k, sl in enumerate(slices):
                progress.check_cancel()
                t = time.perf_counter()
                if pending is None:
                    posed, own = pose(sl)
                else:
                    posed, own = pending.result()
                    pending = None
                secs["pose"] = secs.get("pose", 0.0) + time.perf_counter() - t  # what the loop waited
                secs["pose_thread"] = secs.get("pose_thread", 0.0) + own
                if k + 1 < len(slices) and self._pipelined():
                    # batch k + 1 is posed while batch k is splatted: the splatter's serial steps
                    # (input checks, torch glue, the per-camera sort) leave a core free for it
                    if pool is None:
                        from concurrent.futures import ThreadPoolExecutor

                        pool = ThreadPoolExecutor(1, thread_name_prefix="omg-preview-pose")
                    pending = pool.submit(pose, slices[k + 1])
                yield from self._splat_batch(posed, cams[sl], secs)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)  # a cancelled render leaves no posing running

    def _pipelined(self) -> bool:
        """Pose the next batch on a thread while this one is splatted: on the CPU backend, once
        numba runs a thread-safe threading layer (OpenMP or TBB; its "workqueue" fallback must not
        run parallel kernels from two threads at once, and the posing and splatting both do)."""
        if self.backend != "cpu" or not self.options.pipeline:
            return False
        try:
            import numba

            return numba.threading_layer() in ("omp", "tbb")
        except (ValueError, ImportError):  # no parallel kernel has run yet
            return False

    def _splat_batch(self, posed, cams: list[Camera], secs: dict[str, float]) -> Iterator[np.ndarray]:
        """Splat one posed batch (+ refiner) -> (H, W, 3) uint8 frames."""
        import torch

        from ..avatar.view_colors import blend_views_
        from ..render.splat import splat

        t = time.perf_counter()
        with torch.no_grad():
            scales, opacities, features = self._per_frame(posed.means.shape[0])
            base = self._scales
            if posed.growth is not None:  # the frames' grown head Gaussians (avatar.stretch_growth)
                scales = base = posed.scales(self._scales)
            if self._views is not None:
                # the view-dependent Gaussians seen from each frame's camera, written into the kept
                # per-frame buffers (only their rows change, from the rest values: nothing compounds)
                blend_views_(features, scales, self._views, self._features, base, posed.means, posed.joints,
                             self._view_share, [c.center for c in cams])
            res = splat(posed.means, posed.quats, scales, opacities, features, cams,
                        background=self._background, backend=self.backend,
                        transmittance_stop=self.options.transmittance_stop, depth=False,
                        simd=self.options.simd)
            if res.image.shape[0] != posed.means.shape[0]:  # a single frame with a single camera
                raise RuntimeError("splat returned an unexpected number of frames")
            secs["splat"] = secs.get("splat", 0.0) + time.perf_counter() - t
            img = res.image
            if self.refiner is not None:
                t = time.perf_counter()
                img = self.refiner(img)
                secs["refine"] = secs.get("refine", 0.0) + time.perf_counter() - t
            rgb = to_uint8_frames(img)
        yield from rgb


def to_uint8_frames(img) -> np.ndarray:
    """(B, >=3, H, W) float tensor in [0, 1] -> (B, H, W, 3) uint8 numpy frames (clamped, rounded
    half to even): one numba pass on the CPU, torch on other devices (then one copy to the host)."""
    import torch

    if img.device.type == "cpu":
        from ..render._kernels import to_uint8

        return to_uint8(img[:, :3].permute(0, 2, 3, 1).detach().numpy())
    return (img[:, :3].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def render_preview(avatar, params: HeadParams, out_dir: str | Path | None, options: PreviewOptions | None = None,
                   fps: float = 25.0, video: str | Path | None = None, model=None,
                   progress: Progress | None = None, first_number: int = 0) -> PreviewResult:
    """Render every frame of ``params`` and write the watermarked PNG sequence into ``out_dir``
    (None: no PNGs) and the mp4 ``video`` (None: no video). Returns counts, timings, achieved fps."""
    progress = progress or Progress()
    t_start = time.perf_counter()
    renderer = PreviewRenderer(avatar, model, options or PreviewOptions())
    secs: dict[str, float] = {}
    T = params.n_frames
    writer = BackgroundWriter(FrameWriter(None if out_dir is None else Path(out_dir),
                                          None if video is None else Path(video), fps, first_number),
                              max_queue=2 * max(1, renderer.options.batch))
    try:
        for i, frame in enumerate(renderer.frames(params, progress, secs)):
            writer.put(frame)
            progress.report((i + 1) / T, f"frame {i + 1}/{T}")
        writer.close()
    except BaseException:
        writer.discard()  # a cancelled or failed preview leaves earlier files as they were
        raise
    secs["write"] = writer.wait_seconds        # what the loop waited for the writer
    secs["write_thread"] = writer.work_seconds  # the writer thread's own time (overlapped)
    seconds = time.perf_counter() - t_start
    return PreviewResult(writer.n_frames, writer.pngs, None if video is None else Path(video), seconds,
                         writer.n_frames / seconds if seconds > 0 else 0.0, secs, renderer.backend,
                         renderer.lod, renderer.n_gaussians, (renderer.options.width, renderer.options.height),
                         renderer.refiner is not None)
