"""The training dataset format: preprocessed talking-head clips, written by ``prepare-data``.

    DIR/dataset.json            {"format": "omg-train-v1", "image_size", "head_model", "head_model_path",
                                 "n_verts", "clips": [{"name", "n_frames", "fps", "frame_ext"}]}
    DIR/<clip>/frames/000000.<png|jpg>   (S, S, 3) uint8 square crop (S = image_size, 512 for real data)
    DIR/<clip>/masks/000000.png          (S, S) uint8 portrait mask (255 = person)
    DIR/<clip>/params.npz                HeadParams of all frames (shape, expr (T,E), pose (T,5,3), transl (T,3))
    DIR/<clip>/cameras.npz               K (T,3,3), viewmat (T,4,4) float32, width, height

Training uses self-reenactment pairs: a source and a driving frame of the same clip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..head.params import HeadParams
from ..render.camera import Camera

FORMAT = "omg-train-v1"


@dataclass
class Frame:
    """One training frame: image (3, S, S) float32 [0, 1], mask (S, S) float32, camera, params (T=1)."""

    image: torch.Tensor
    mask: torch.Tensor
    camera: Camera
    params: HeadParams


@dataclass
class Clip:
    name: str
    root: Path
    n_frames: int
    fps: float
    frame_ext: str
    params: HeadParams
    K: np.ndarray
    viewmat: np.ndarray
    width: int
    height: int

    def camera(self, t: int) -> Camera:
        return Camera(self.K[t], self.viewmat[t], self.width, self.height)


class DatasetWriter:
    """Writes clips one by one, then the index (``close``)."""

    def __init__(self, root: str | Path, image_size: int, head_model_name: str, head_model_path: str | None,
                 n_verts: int) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.meta = {"format": FORMAT, "image_size": int(image_size), "head_model": head_model_name,
                     "head_model_path": head_model_path, "n_verts": int(n_verts), "clips": []}

    def add_clip(self, name: str, frames: Iterable[np.ndarray], masks: Iterable[np.ndarray], params: HeadParams,
                 cameras: list[Camera], fps: float, frame_ext: str = "png") -> None:
        """frames (S, S, 3) uint8 and masks (S, S) float [0, 1] or uint8, one per params frame."""
        d = self.root / name
        (d / "frames").mkdir(parents=True, exist_ok=True)
        (d / "masks").mkdir(parents=True, exist_ok=True)
        S = self.meta["image_size"]
        n = 0
        for t, (rgb, m) in enumerate(zip(frames, masks)):
            if rgb.shape != (S, S, 3):
                raise ValueError(f"clip {name} frame {t}: expected ({S}, {S}, 3), got {rgb.shape}")
            img = Image.fromarray(np.ascontiguousarray(rgb, np.uint8))
            img.save(d / "frames" / f"{t:06d}.{frame_ext}", **({"quality": 95} if frame_ext == "jpg" else {}))
            m8 = m if m.dtype == np.uint8 else np.clip(np.rint(np.asarray(m) * 255), 0, 255).astype(np.uint8)
            Image.fromarray(m8).save(d / "masks" / f"{t:06d}.png")
            n += 1
        if n != params.n_frames or n != len(cameras):
            raise ValueError(f"clip {name}: {n} frames, {params.n_frames} parameter frames, {len(cameras)} cameras")
        np.savez(d / "params.npz", shape=params.shape, expr=params.expr, pose=params.pose, transl=params.transl)
        np.savez(d / "cameras.npz", K=np.stack([c.K for c in cameras]), viewmat=np.stack([c.viewmat for c in cameras]),
                 width=cameras[0].width, height=cameras[0].height)
        self.meta["clips"].append({"name": name, "n_frames": n, "fps": float(fps), "frame_ext": frame_ext})

    def close(self) -> Path:
        path = self.root / "dataset.json"
        path.write_text(json.dumps(self.meta, indent=2) + "\n")
        return path


class FrameDataset:
    """Reads a prepared dataset; ``pair(rng)`` draws a self-reenactment (source, driving) pair."""

    def __init__(self, root: str | Path, clips: list[str] | None = None) -> None:
        self.root = Path(root)
        index = self.root / "dataset.json"
        if not index.is_file():
            raise InputError(self.root, "not a prepared dataset (no dataset.json); "
                                        "run `python -m backend prepare-data`")
        meta = json.loads(index.read_text())
        if meta.get("format") != FORMAT:
            raise InputError(index, f"unknown dataset format {meta.get('format')!r} (expected {FORMAT})")
        self.meta = meta
        self.image_size = int(meta["image_size"])
        self.clips: list[Clip] = []
        for c in meta["clips"]:
            if clips is not None and c["name"] not in clips:
                continue
            d = self.root / c["name"]
            p = np.load(d / "params.npz")
            cam = np.load(d / "cameras.npz")
            clip = Clip(c["name"], d, int(c["n_frames"]), float(c["fps"]), c.get("frame_ext", "png"),
                        HeadParams(p["shape"], p["expr"], p["pose"], p["transl"]), cam["K"], cam["viewmat"],
                        int(cam["width"]), int(cam["height"]))
            if clip.n_frames < 2:
                continue  # a pair needs two frames
            self.clips.append(clip)
        if not self.clips:
            raise InputError(self.root, "dataset has no clip with at least two frames")

    def __len__(self) -> int:
        return sum(c.n_frames for c in self.clips)

    def frame(self, clip: int, t: int) -> Frame:
        c = self.clips[clip]
        rgb = np.asarray(Image.open(c.root / "frames" / f"{t:06d}.{c.frame_ext}").convert("RGB"), np.float32) / 255.0
        mask = np.asarray(Image.open(c.root / "masks" / f"{t:06d}.png"), np.float32) / 255.0
        return Frame(torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), torch.from_numpy(mask), c.camera(t),
                     c.params.frame(t))

    def pair_indices(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """(clip, source frame, driving frame): clip weighted by length, two distinct frames."""
        sizes = np.array([c.n_frames for c in self.clips], np.float64)
        ci = int(rng.choice(len(self.clips), p=sizes / sizes.sum()))
        s, d = rng.choice(self.clips[ci].n_frames, size=2, replace=False)
        return ci, int(s), int(d)

    def pair(self, rng: np.random.Generator) -> tuple[Frame, Frame]:
        ci, s, d = self.pair_indices(rng)
        return self.frame(ci, s), self.frame(ci, d)
