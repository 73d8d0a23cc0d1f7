"""Fuzzing every loader: valid seed files, structure-aware and byte-level mutations, and a runner
that feeds them to the loaders in child processes with time and memory limits.

Pass, per input: the child neither dies from a signal nor hangs, and the loader either accepts the
file or raises our one-line error (an OMGError whose message has no line break and names the
file). Anything else -- a traceback, a crash, a hang -- is a failure and its input is kept.

Inputs go to one child in batches (imports cost seconds; a case costs milliseconds); a crash or a
hang is pinned to its input (the child reports BEGIN/END per case), the child is restarted with
the cases after it, so one bad input never hides another.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import queue
import random
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REGRESSIONS = HERE / "regressions"
LOADERS = ("flame_pickle", "npz_head_model", "omgavatar", "ply", "track", "calibration", "capture", "mapping",
           "dinov2", "checkpoint", "refiner", "image", "video")
SUFFIX = {"flame_pickle": ".pkl", "npz_head_model": ".npz", "omgavatar": ".omgavatar", "ply": ".ply",
          "track": ".npz", "calibration": ".npz", "capture": None, "mapping": ".json", "dinov2": ".pth",
          "checkpoint": ".pt", "refiner": ".pt", "image": None, "video": None}
MEMORY_LIMIT = 3 << 30  # address space of the child (torch alone maps ~1.5 GB)
CASE_SECONDS = {"video": 30.0}  # per-case wall limit; others DEFAULT_CASE_SECONDS
DEFAULT_CASE_SECONDS = 20.0
STARTUP_SECONDS = 120.0  # imports on a loaded 2-core machine


# ---------------------------------------------------------------------------------------------
# seeds: small valid files of every kind (made by the project's own writers where it has them)

def _flame_dict(rng: np.random.Generator, V: int = 12) -> dict:
    import scipy.sparse as sp

    w = rng.random((V, 5)) ** 3
    J = rng.random((5, V)) * (rng.random((5, V)) < 0.4)
    J[:, 0] += 1e-3
    return {"v_template": rng.normal(0, 0.05, (V, 3)),
            "f": np.stack([np.arange(V - 2), np.arange(1, V - 1), np.arange(2, V)], 1).astype(np.uint32),
            "shapedirs": rng.normal(0, 0.01, (V, 3, 302)), "posedirs": rng.normal(0, 0.01, (V, 3, 36)),
            "J_regressor": sp.csc_matrix(J / J.sum(1, keepdims=True)), "weights": w / w.sum(1, keepdims=True),
            "kintree_table": np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64),
            "expr_names": [f"e{i}" for i in range(2)], "bs_style": "lbs"}


class _Ch:  # the shape of chumpy's Ch as FLAME 2020 pickles it (module renamed while pickling)
    def __init__(self, x):
        self.x = np.asarray(x)
        self._dirty_vars = set()


def _chumpy_pickle(d: dict, protocol: int) -> bytes:
    mod = types.ModuleType("chumpy.ch")
    _Ch.__module__, _Ch.__qualname__ = "chumpy.ch", "Ch"
    mod.Ch = _Ch
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules.update({"chumpy": types.ModuleType("chumpy"), "chumpy.ch": mod})
    try:
        d2 = {k: (_Ch(v) if k in ("v_template", "shapedirs", "posedirs", "weights") else v) for k, v in d.items()}
        return pickle.dumps(d2, protocol=protocol)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _head_npz(rng: np.random.Generator) -> bytes:
    from backend.head.model import save_head_model
    from backend.head.model import PARENTS, HeadModel, LandmarkEmbedding

    V = 12
    w = rng.random((V, 5)).astype(np.float32)
    w /= w.sum(1, keepdims=True)
    J = rng.random((5, V)).astype(np.float32)
    J /= J.sum(1, keepdims=True)
    m = HeadModel(name="fuzz", v_template=rng.normal(0, 0.05, (V, 3)).astype(np.float32),
                  faces=np.stack([np.arange(V - 2), np.arange(1, V - 1), np.arange(2, V)], 1).astype(np.int64),
                  shapedirs=rng.normal(0, 0.01, (V, 3, 3)).astype(np.float32),
                  exprdirs=rng.normal(0, 0.01, (V, 3, 2)).astype(np.float32),
                  posedirs=rng.normal(0, 0.01, (V, 3, 36)).astype(np.float32), J_regressor=J, weights=w,
                  parents=np.array(PARENTS, np.int64), expr_names=["a", "b"], landmarks=LandmarkEmbedding.empty())
    buf = io.BytesIO()
    save_head_model(buf, m)
    return buf.getvalue()


def _gaussians(rng: np.random.Generator, n: int):
    from backend.avatar.gaussians import GaussianSet

    q = rng.normal(size=(n, 4))
    return GaussianSet(rng.normal(0, 0.1, (n, 3)), q / np.linalg.norm(q, axis=1, keepdims=True),
                       rng.uniform(0.001, 0.01, (n, 3)), rng.uniform(0.1, 1, n), rng.uniform(0, 1, (n, 3)))


def _camera():
    from backend.render.camera import Camera

    K = np.array([[500.0, 0, 256], [0, 500, 256], [0, 0, 1]], np.float32)
    return Camera(K, np.eye(4, dtype=np.float32), 512, 512)


def _avatar(rng: np.random.Generator, path: Path) -> bytes:
    from backend.avatar.fileformat import save_avatar
    from backend.avatar.gaussians import GaussianAvatar, SkinnedPart
    from backend.avatar.view_colors import ViewColors
    from backend.head.params import HeadParams

    V = 8
    params = HeadParams(np.zeros(3, np.float32), np.zeros((1, 2), np.float32), np.zeros((1, 5, 3), np.float32),
                        np.zeros((1, 3), np.float32))
    av = GaussianAvatar("standin", None, params, _camera(), rng.normal(0, 1e-3, (V, 3)),
                        {0: _gaussians(rng, V), 1: _gaussians(rng, 2 * V)},
                        {0: np.zeros((V, 3)), 1: np.zeros((2 * V, 3))},
                        [SkinnedPart("body", _gaussians(rng, 5), np.tile(np.eye(5, dtype=np.float32)[0], (5, 1))),
                         SkinnedPart("hair", _gaussians(rng, 3), np.full((3, 5), 0.2, np.float32))],
                        {"fuzz": True})
    # view-dependent rows of LOD 1: two head Gaussians and one of the parts' (avatar/view_colors.py)
    toward = rng.normal(size=(3, 3))
    av.lod_views = {1: ViewColors([1, 4, 2 * V + 2], rng.uniform(0, 1, (3, 3)),
                                  toward / np.linalg.norm(toward, axis=1, keepdims=True), [1.0, 2.0, 1.5])}
    return save_avatar(av, path).read_bytes()


def _track(rng: np.random.Generator, path: Path) -> bytes:
    from backend.face.crop import CropInfo
    from backend.face.track import Track
    from backend.head.params import HeadParams

    T = 4
    params = HeadParams(np.zeros(3, np.float32), rng.normal(0, 0.1, (T, 2)).astype(np.float32),
                        rng.normal(0, 0.05, (T, 5, 3)).astype(np.float32), np.zeros((T, 3), np.float32))
    tr = Track(params=params, fps=25.0, confidence=np.ones(T, np.float32), has_face=np.ones(T, bool),
               landmarks=rng.uniform(0, 512, (T, 478, 2)).astype(np.float32), camera=_camera(),
               crop=CropInfo(10, 20, 300, 512, (640, 480)), model="standin", expr_names=["a", "b"],
               source="clip.mp4", smoothing=2.0)
    tr.save(path)
    return path.read_bytes()


def _head_params(rng: np.random.Generator, path: Path) -> bytes:
    from backend.head.params import HeadParams

    p = HeadParams(np.zeros(3, np.float32), rng.normal(0, 0.1, (3, 2)).astype(np.float32),
                   np.zeros((3, 5, 3), np.float32), np.zeros((3, 3), np.float32))
    p.save(path)
    return path.read_bytes()


def _ply(rng: np.random.Generator, path: Path, text: bool) -> bytes:
    from backend.avatar.ply import write_ply

    return write_ply(path, _gaussians(rng, 6), text=text).read_bytes()


def _images(rng: np.random.Generator) -> list[tuple[str, bytes]]:
    from PIL import Image

    rgb = rng.integers(0, 255, (24, 20, 3), np.uint8)
    out = []
    for fmt, ext, mode, kw in (("PNG", ".png", "RGB", {}), ("PNG", ".png", "RGBA", {}), ("JPEG", ".jpg", "RGB", {}),
                               ("GIF", ".gif", "P", {}), ("BMP", ".bmp", "RGB", {}), ("TIFF", ".tif", "RGB", {}),
                               ("WEBP", ".webp", "RGB", {}), ("PNG", ".png", "L", {}), ("JPEG", ".jpg", "CMYK", {})):
        im = Image.fromarray(rgb).convert(mode)
        if fmt == "JPEG" and mode == "RGB":
            exif = Image.Exif()
            exif[0x0112] = 6  # orientation: rotate 90
            kw = {"exif": exif.tobytes()}
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        out.append((ext, buf.getvalue()))
    buf = io.BytesIO()
    Image.fromarray((rng.integers(0, 65535, (10, 12)).astype(np.uint16))).save(buf, format="PNG")  # 16-bit
    out.append((".png", buf.getvalue()))
    return out


def _videos(rng: np.random.Generator, folder: Path) -> list[tuple[str, bytes]]:
    import imageio_ffmpeg
    from PIL import Image

    frames = [rng.integers(0, 255, (16, 16, 3), np.uint8) for _ in range(6)]
    out = []
    for ext, codec, extra in ((".mp4", "libx264", []), (".mp4", "libx264", ["-movflags", "+faststart"]),
                              (".mkv", "libx264", [])):
        p = folder / f"seed{len(out)}{ext}"
        w = imageio_ffmpeg.write_frames(str(p), (16, 16), fps=25, codec=codec, macro_block_size=1,
                                        ffmpeg_log_level="error", output_params=extra)
        w.send(None)
        for f in frames:
            w.send(f)
        w.close()
        out.append((ext, p.read_bytes()))
    buf = io.BytesIO()
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=40)
    out.append((".gif", buf.getvalue()))
    return out


def _calibration(rng: np.random.Generator, path: Path) -> bytes:
    """A tracker calibration (face.calibration.LandmarkCalibration, 8 landmarks, 4 expressions) with
    every optional part: jaw and eye correctives, joint channels, a reading floor and an open-jaw part."""
    from dataclasses import replace

    from backend.face.calibration import LandmarkCalibration

    L, E = 8, 4
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    cal = LandmarkCalibration(f32(rng.normal(0, 1e-3, (L, 3))), f32(rng.normal(0, 1e-3, (L, 3, E))),
                              ("a", "b", "jawLeft", "jawRight"), f32(rng.uniform(0.3, 1.0, E)),
                              jawdirs=f32(rng.normal(0, 1e-3, (L, 3, 9))), joint_channels=("jawLeft", "jawRight"),
                              floor=f32(rng.uniform(0.0, 0.3, E)))
    cal.eyedirs = f32(rng.normal(0, 1e-3, (L, 3, 9)))
    cal.open_jaw = replace(cal, exprdirs=f32(rng.normal(0, 1e-3, (L, 3, E))), floor=f32(rng.uniform(0.0, 0.3, E)),
                           eyedirs=f32(rng.normal(0, 1e-3, (L, 3, 9))))
    cal.open_jaw_from = 0.25
    cal.save(path)
    return path.read_bytes()


def _captures(rng: np.random.Generator, work: Path) -> list[tuple[str, bytes]]:
    """Face captures as import-capture reads them: a Live Link Face CSV (written by our exporter), a
    plain CSV with times, one with frame numbers, one without either, and both JSON layouts."""
    from backend.head.arkit_names import ARKIT_NAMES
    from backend.motion.capture import write_llf_csv

    T = 5
    names = list(ARKIT_NAMES[:6]) + ["HeadYaw"]
    vals = rng.uniform(0.0, 1.0, (T, len(names)))
    write_llf_csv(work / "take.csv", vals, names, 30.0, 3600.0)
    rows = lambda first: "\n".join(",".join(f"{v:.4f}" for v in ([first(t)] if first else []) + list(r))  # noqa: E731
                                   for t, r in enumerate(vals[:, :6]))
    head = ",".join(ARKIT_NAMES[:6])
    weights = json.dumps({"fps": 24, "names": list(ARKIT_NAMES[:6]), "weights": vals[:, :6].round(4).tolist()})
    frames = json.dumps({"fps": 25, "frames": [dict(zip(ARKIT_NAMES[:6], r.round(4).tolist())) for r in vals[:, :6]]})
    return [(".csv", (work / "take.csv").read_bytes()),
            (".csv", f"time,{head}\n{rows(lambda t: t / 30.0)}\n".encode()),
            (".csv", f"frame,{head}\n{rows(lambda t: float(t))}\n".encode()),
            (".csv", f"{head}\n{rows(None)}\n".encode()),
            (".json", weights.encode()), (".json", frames.encode())]


def _mapping(work: Path) -> bytes:
    from backend.motion.arkit import default_mapping, save_mapping

    save_mapping(default_mapping(), work / "map.json")
    return (work / "map.json").read_bytes()


#: the DINOv2 layout at toy width (tests/model's SMALL_DINO): the fuzz child's checkpoint loader pairs
#: every checkpoint with a file of it
TINY_DINO = dict(dim=64, depth=2, heads=1, pretrain_grid=8)


def tiny_dino_bytes(seed: int = 0) -> bytes:
    """A DINOv2 state dict (model.dinov2's parameter names) of :data:`TINY_DINO`, torch.save'd."""
    import torch

    from backend.model.dinov2 import DinoConfig, DinoV2

    torch.manual_seed(seed)
    buf = io.BytesIO()
    torch.save(DinoV2(DinoConfig(**TINY_DINO)).state_dict(), buf)
    return buf.getvalue()


def _omg_checkpoint() -> bytes:
    """An OMG checkpoint for the stand-in (format, configuration, head-model signature, weights) at
    toy widths (tests/model's small_config), as model.train writes one, without the optimizer."""
    import torch

    from backend.head.loader import load_head_model
    from backend.model.omg import OMG, OMGConfig
    from backend.model.train import CHECKPOINT_FORMAT, head_model_signature

    model = load_head_model(None)
    cfg = OMGConfig(n_verts=model.n_verts, levels=(0, 1), dino_dim=TINY_DINO["dim"], dino_input=112, local_size=48,
                    dim=16, decoder_heads=2, mlp_hidden=16, shoulder_points=100, shoulder_plane=8,
                    shoulder_hidden=8, unet_channels=(8, 16))
    torch.manual_seed(0)
    net = OMG(cfg, model.faces, model.weights)
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "head_model": head_model_signature(model),
                "dino": {"dim": TINY_DINO["dim"], "depth": TINY_DINO["depth"]}, "model": net.state_dict(),
                "step": 3}, buf)
    return buf.getvalue()


def make_seeds(loader: str, rng: np.random.Generator, work: Path) -> list[tuple[str, bytes]]:
    """Valid files for ``loader``: [(suffix, bytes)]."""
    work.mkdir(parents=True, exist_ok=True)
    if loader == "flame_pickle":
        d = _flame_dict(rng)
        return [(".pkl", pickle.dumps(d, protocol=p)) for p in (2, 4, 5)] + \
               [(".pkl", _chumpy_pickle(d, p)) for p in (0, 2)]
    if loader == "npz_head_model":
        return [(".npz", _head_npz(rng))]
    if loader == "omgavatar":
        return [(".omgavatar", _avatar(rng, work / "seed.omgavatar"))]
    if loader == "ply":
        return [(".ply", _ply(rng, work / "b.ply", False)), (".ply", _ply(rng, work / "t.ply", True))]
    if loader == "track":
        return [(".npz", _track(rng, work / "t.npz")), (".npz", _head_params(rng, work / "p.npz"))]
    if loader == "calibration":
        return [(".npz", _calibration(rng, work / "c.npz"))]
    if loader == "dinov2":
        import torch

        nested = io.BytesIO()
        torch.save({"model": torch.load(io.BytesIO(tiny_dino_bytes(1)), weights_only=True)}, nested)
        return [(".pth", tiny_dino_bytes()), (".pth", nested.getvalue())]
    if loader in ("checkpoint", "refiner"):
        return [(".pt", _omg_checkpoint())]
    if loader == "capture":
        return _captures(rng, work)
    if loader == "mapping":
        return [(".json", _mapping(work))]
    if loader == "image":
        return _images(rng)
    if loader == "video":
        return _videos(rng, work)
    raise KeyError(loader)


# ---------------------------------------------------------------------------------------------
# mutations

INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**31, 2**40, 2**63 - 1)


def byte_mutation(data: bytes, rnd: random.Random) -> bytes:
    """One to four random byte-level edits: bit flips, random bytes, interesting integers at a
    position (lengths/counts), truncation, insertion, deletion and duplication of chunks."""
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        if not b:
            b = bytearray(rnd.randbytes(rnd.randint(1, 64)))
            continue
        op = rnd.randrange(8)
        i = rnd.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1:
            n = rnd.randint(1, 16)
            b[i:i + n] = rnd.randbytes(min(n, len(b) - i))
        elif op == 2:
            size, fmt = rnd.choice(((1, "B"), (2, "<H"), (4, "<I"), (8, "<Q"), (4, ">I"), (8, ">Q")))
            v = rnd.choice(INTERESTING) % (1 << (8 * size))
            b[i:i + size] = struct.pack(fmt, v)[: max(0, len(b) - i)]
        elif op == 3:
            del b[rnd.randrange(len(b) + 1):]
        elif op == 4:
            b[i:i] = rnd.randbytes(rnd.randint(1, 64))
        elif op == 5:
            del b[i:i + rnd.randint(1, 64)]
        elif op == 6:
            j = rnd.randrange(len(b))
            b[i:i] = b[j:j + rnd.randint(1, 256)]
        else:
            b[i] = rnd.choice((0x00, 0xFF, 0x7F, 0x80, 0x0A, 0x22, 0x7B))
    return bytes(b)


def _weird_value(rnd: random.Random, like: object = None) -> object:
    """A replacement for an array or field: wrong dtype, shape, kind, size, or special values."""
    choice = rnd.randrange(14)
    if choice == 0:
        return None
    if choice == 1:
        return "text"
    if choice == 2:
        return {"nested": [1, 2, {"x": 3}]}
    if choice == 3:
        return np.array([np.nan, np.inf, -np.inf])
    if choice == 4:
        return np.zeros((0,), np.float32)
    if choice == 5:
        return np.zeros((3, 0, 2), np.float64)
    if choice == 6:
        return np.array(["a", "bb"])
    if choice == 7:
        return np.arange(7, dtype=np.int8)
    if choice == 8:
        return [[1, 2], [3]]  # ragged
    if choice == 9:
        return np.array(np.inf)
    if choice == 10:
        return -1
    if choice == 11:
        return 2**70
    if isinstance(like, np.ndarray) and like.size:
        a = like.astype(rnd.choice((np.float16, np.int64, np.uint8, np.complex64, np.bool_)))
        return a.reshape(-1) if choice == 12 else np.swapaxes(a[..., None], 0, -1)
    return np.ones((2, 2), np.float32)


def mutate_dict(d: dict, rnd: random.Random) -> dict:
    d = dict(d)
    keys = list(d)
    for _ in range(rnd.randint(1, 3)):
        op = rnd.randrange(4)
        k = rnd.choice(keys)
        if op == 0:
            d.pop(k, None)
        elif op == 1:
            d[k] = _weird_value(rnd, d.get(k))
        elif op == 2 and isinstance(d.get(k), np.ndarray) and d[k].size:
            a = np.array(d[k], dtype=np.float64 if d[k].dtype.kind == "f" else d[k].dtype)
            idx = tuple(rnd.randrange(s) for s in a.shape)
            a[idx] = rnd.choice((np.nan, np.inf, -1, 10**6, 0)) if a.dtype.kind == "f" else rnd.choice((-1, 10**6))
            d[k] = a
        else:
            d[f"extra{rnd.randrange(9)}"] = _weird_value(rnd)
    return d


def _sparse_attack(d: dict, rnd: random.Random) -> dict:
    J = d["J_regressor"].copy()
    op = rnd.randrange(4)
    if op == 0:
        J.indices[rnd.randrange(len(J.indices))] = rnd.choice((-5, 10**6, 2**31 - 1))
    elif op == 1:
        J.indptr[rnd.randrange(len(J.indptr))] = rnd.choice((-1, 10**6, 0))
    elif op == 2:
        J._shape = rnd.choice(((2**31, 2**31), (5, 2**40), (-1, 5), (5, 0)))
    else:
        J.data = J.data[: rnd.randrange(len(J.data))]
    d["J_regressor"] = J
    return d


class _ObjArr:  # pickles as numpy.ndarray(shape, dtype, buffer)
    def __init__(self, dtype, n):
        self.dtype, self.n = dtype, n

    def __reduce__(self):
        return (np.ndarray, ((self.n,), self.dtype, b"\x41" * (8 * self.n)))


def mutate_pickle(seed: bytes, rnd: random.Random, rng: np.random.Generator) -> bytes:
    op = rnd.randrange(6)
    d = _flame_dict(rng)
    if op == 0:
        return pickle.dumps(mutate_dict(d, rnd), protocol=rnd.choice((2, 4, 5)))
    if op == 1:
        return pickle.dumps(_sparse_attack(d, rnd), protocol=rnd.choice((2, 4)))
    if op == 2:
        d[rnd.choice(("expr_names", "v_template", "extra"))] = _ObjArr(rnd.choice(("O", "f8", "V8")), 4)
        try:
            return pickle.dumps(d, protocol=2)
        except Exception:  # noqa: BLE001 - numpy refuses some dtypes while pickling: fall back
            return byte_mutation(seed, rnd)
    if op == 3:  # deep nesting
        depth = rnd.choice((100, 5000, 200_000))
        return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    if op == 4:  # dtype specs swapped inside a valid pickle
        for a, b in ((b"f8", b"O8"), (b"f8", b"V8"), (b"f8", b"M8"), (b"<f8", b"|O"), (b"i8", b"O8")):
            if a in seed and rnd.random() < 0.5:
                return seed.replace(a, b, rnd.randint(1, 3))
    return byte_mutation(seed, rnd)


def mutate_npz(seed: bytes, rnd: random.Random) -> bytes:
    """Arrays changed/removed/retyped inside the zip, a member's .npy header rewritten, or JSON
    metadata edited; falls back to byte-level."""
    try:
        z = zipfile.ZipFile(io.BytesIO(seed))
        members = {n: z.read(n) for n in z.namelist()}
    except zipfile.BadZipFile:
        return byte_mutation(seed, rnd)
    op = rnd.randrange(4)
    name = rnd.choice(list(members))
    if op == 0:  # whole arrays changed
        arrays = {n[:-4]: np.load(io.BytesIO(v), allow_pickle=False) for n, v in members.items()}
        for k, v in list(arrays.items()):  # edit JSON metadata fields too
            if v.dtype.kind == "U" and v.ndim == 0 and str(v).startswith("{"):
                meta = json.loads(str(v))
                if meta and rnd.random() < 0.5:
                    key = rnd.choice(list(meta))
                    meta[key] = _json_weird(rnd)
                    arrays[k] = np.array(json.dumps(meta))
        arrays = mutate_dict(arrays, rnd)
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) if not isinstance(v, np.ndarray) and v is not None
                          and not isinstance(v, (dict, list)) else (v if isinstance(v, np.ndarray) else np.array(0))
                          for k, v in arrays.items()})
        return buf.getvalue()
    if op == 1:  # .npy header of one member: huge/negative/odd shapes, foreign dtypes
        raw = members[name]
        hdr = rnd.choice(("{'descr': '<f4', 'fortran_order': False, 'shape': (1073741824, 1073741824), }",
                          "{'descr': '|O', 'fortran_order': False, 'shape': (3,), }",
                          "{'descr': '<f8', 'fortran_order': True, 'shape': (-1,), }",
                          "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
                          "{'descr': '<U1000000000', 'fortran_order': False, 'shape': (), }",
                          "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34), }"))
        body = raw[10 + struct.unpack("<H", raw[8:10])[0]:] if raw[:6] == b"\x93NUMPY" else raw
        h = hdr.encode() + b" " * ((64 - (len(hdr) + 11) % 64) % 64) + b"\n"
        members[name] = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + body
    elif op == 2:
        members[name] = byte_mutation(members[name], rnd)
    else:
        del members[name]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for n, v in members.items():
            out.writestr(n, v)
    return buf.getvalue()


#: cell values a hostile CSV or JSON may hold
WEIRD_CELLS = ("", "nan", "NaN", "inf", "-inf", "1e309", "-1", "2", "1e-320", "0x10", "abc", "\"", "\x00", "9" * 400,
               "00:00:00:00.000", "99:99:99:99.999", "-1:00:00:00", "01:02:03:04", "12:00:00:29.999", "1_000",
               "\u202e1", "\U0001f600", " 0.5 ", "0,5")


def mutate_text(seed: bytes, rnd: random.Random) -> bytes:
    """A CSV or JSON capture/mapping edited as text: lines deleted, duplicated or swapped, cells or
    header names replaced by hostile values, columns dropped, JSON fields set to odd values."""
    text = seed.decode("utf-8")
    if text.lstrip().startswith("{"):
        data = json.loads(text)
        for _ in range(rnd.randint(1, 3)):
            key = rnd.choice(list(data))
            v = data[key]
            if isinstance(v, list) and v and rnd.random() < 0.6:
                i = rnd.randrange(len(v))
                item = v[i]
                if isinstance(item, dict) and item:
                    k = rnd.choice(list(item))
                    if rnd.random() < 0.3:
                        del item[k]
                    else:
                        item[k] = rnd.choice((_json_weird(rnd), rnd.choice(WEIRD_CELLS)))
                elif isinstance(item, list) and item:
                    item[rnd.randrange(len(item))] = rnd.choice((_json_weird(rnd), rnd.choice(WEIRD_CELLS)))
                else:
                    v[i] = _json_weird(rnd)
                if rnd.random() < 0.2:
                    del v[rnd.randrange(len(v)):]
            else:
                data[key] = _json_weird(rnd)
        return json.dumps(data).encode("utf-8")
    lines = text.splitlines()
    for _ in range(rnd.randint(1, 3)):
        op = rnd.randrange(5)
        i = rnd.randrange(len(lines))
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[rnd.randrange(len(lines))])
        elif op == 2:
            j = rnd.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            cells = lines[i].split(",")
            c = rnd.randrange(len(cells))
            if op == 3:
                cells[c] = rnd.choice(WEIRD_CELLS)
            else:
                del cells[c]
            lines[i] = ",".join(cells)
        if not lines:
            break
    return ("\n".join(lines) + "\n").encode("utf-8")


def mutate_torch(seed: bytes, rnd: random.Random) -> bytes:
    """A torch.save'd dict (state dict or checkpoint) edited as objects and saved again: tensors given
    other shapes (among them zero-stride views that claim millions of elements in a few bytes), keys
    removed or added (a block index far beyond the file's), configuration fields set to odd values,
    the weights or configuration replaced whole."""
    import torch

    obj = torch.load(io.BytesIO(seed), map_location="cpu", weights_only=True)
    top = obj
    state = obj["model"] if isinstance(obj.get("model"), dict) else obj
    for _ in range(rnd.randint(1, 3)):
        op = rnd.randrange(7)
        key = rnd.choice(list(state))
        if op == 0:
            del state[key]
        elif op == 1:
            t = state[key]
            shape = list(t.shape) or [1]
            shape[rnd.randrange(len(shape))] = rnd.choice((0, 1, 2, 7, 1000, 10**6, 10**9))
            state[key] = torch.zeros(1).expand(*shape) if rnd.random() < 0.5 else torch.zeros(
                [min(v, 64) for v in shape])
        elif op == 2:
            state[key] = rnd.choice((torch.zeros(()), torch.tensor([float("nan")]), torch.zeros(3, dtype=torch.int64),
                                     torch.zeros(2, dtype=torch.bool), "text", 7, None))
        elif op == 3:
            state[rnd.choice(("blocks.99999.attn.qkv.weight", "blocks.-1.norm1.weight", "blocks.x.y", "extra",
                              "refiner.extra.weight"))] = torch.zeros(1)
        elif op == 4 and isinstance(top.get("config"), dict):
            cfg = top["config"]
            name = rnd.choice(list(cfg))
            cfg[name] = rnd.choice((_json_weird(rnd), 10**9, -1, 0, [10**6] * 3, list(range(100)), True, 2.5))
        elif op == 5 and top is not state:
            top[rnd.choice(list(top))] = _json_weird(rnd)
        else:
            t = state[key]
            if isinstance(t, torch.Tensor) and t.numel():
                state[key] = t.flatten()[: rnd.randint(0, t.numel() - 1)]
    buf = io.BytesIO()
    torch.save(obj, buf)
    if rnd.random() < 0.1:   # the records deflated (torch reads them; a zip bomb is made this way)
        z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as o:
            for n in z.namelist():
                o.writestr(n, z.read(n))
        return out.getvalue()
    return buf.getvalue()


def _json_weird(rnd: random.Random) -> object:
    return rnd.choice((None, -1, 2**64, "x", [], {}, [1, "a"], {"a": None}, 1e309, True, "../../etc/passwd"))


def mutate_safetensors(seed: bytes, rnd: random.Random) -> bytes:
    """Edit the safetensors JSON header (dtypes, shapes, offsets, the avatar metadata) or the
    tensors' bytes; falls back to byte-level."""
    n = struct.unpack("<Q", seed[:8])[0]
    header = json.loads(seed[8:8 + n])
    body = seed[8 + n:]
    op = rnd.randrange(4)
    keys = [k for k in header if k != "__metadata__"]
    k = rnd.choice(keys)
    if op == 0:
        field_ = rnd.choice(("dtype", "shape", "data_offsets"))
        header[k][field_] = rnd.choice({"dtype": ("F64", "I8", "BOOL", "U8", "XX", None),
                                        "shape": ([2**31, 2**31], [], [-1], [3, 0], [1] * 40, "x"),
                                        "data_offsets": ([0, 2**62], [10, 5], [0, 0], [-1, 4], None)}[field_])
    elif op == 1:
        meta = header.get("__metadata__", {})
        for mk, mv in list(meta.items()):
            try:
                inner = json.loads(mv)
            except ValueError:
                continue
            if isinstance(inner, dict) and inner:
                path = rnd.choice(list(inner))
                inner[path] = _json_weird(rnd) if rnd.random() < 0.7 else {
                    "name": "flame", "path": "/tmp/evil.pkl"}
                meta[mk] = json.dumps(inner)
    elif op == 2:  # tensor values: NaN/inf
        lo, hi = header[k]["data_offsets"]
        b = bytearray(body)
        if hi > lo and header[k]["dtype"] == "F32":
            for _ in range(rnd.randint(1, 4)):
                j = lo + 4 * rnd.randrange((hi - lo) // 4)
                b[j:j + 4] = struct.pack("<f", rnd.choice((float("nan"), float("inf"), 1e38)))
        body = bytes(b)
    else:
        del header[k]
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + body


def mutate_ply(seed: bytes, rnd: random.Random) -> bytes:
    end = seed.find(b"end_header\n")
    if end < 0:
        return byte_mutation(seed, rnd)
    head, body = seed[:end], seed[end:]
    lines = head.split(b"\n")
    op = rnd.randrange(4)
    if op == 0:
        lines = [rnd.choice((b"element vertex 4294967295", b"element vertex -3", b"element vertex 999999999",
                             b"element vertex 0")) if l.startswith(b"element vertex") else l for l in lines]
    elif op == 1:
        i = rnd.randrange(len(lines))
        if lines[i].startswith(b"property"):
            lines[i] = rnd.choice((b"property list uchar float x", b"property double scale_0",
                                   b"property uchar opacity", b"property bogus rot_0", b"property float"))
    elif op == 2:
        lines = [rnd.choice((b"format binary_big_endian 1.0", b"format ascii 1.0", b"format binary_little_endian 2.0",
                             b"format nonsense")) if l.startswith(b"format") else l for l in lines]
    else:
        if b"ascii" in head:
            body = body.replace(b"0.", rnd.choice((b"nan", b"inf", b"-inf", b"1e999")), rnd.randint(1, 3))
        else:
            b = bytearray(body)
            for _ in range(rnd.randint(1, 4)):
                j = rnd.randrange(11, max(12, len(b) - 4))
                b[j:j + 4] = struct.pack("<f", rnd.choice((float("nan"), float("inf"), 1e38)))
            body = bytes(b)
    return b"\n".join(lines) + body


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    out, i = [], 8
    while i + 8 <= len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        out.append((data[i + 4:i + 8], data[i + 8:i + 8 + n]))
        i += 12 + n
    return out


def mutate_image(seed: bytes, rnd: random.Random) -> bytes:
    """PNG: IHDR fields (size, depth, colour type) changed with a valid CRC; JPEG: frame size;
    GIF: screen size; else byte-level."""
    chunks = _png_chunks(seed)
    if chunks and rnd.random() < 0.6:
        typ, body = chunks[0]
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        op = rnd.randrange(3)
        if op == 0:
            w, h = rnd.choice(((100_000, 100_000), (0, 5), (2**31 - 1, 1), (1, 2**31 - 1), (30_000, 30_000)))
        elif op == 1:
            depth = rnd.choice((1, 2, 4, 8, 16, 3, 255))
        else:
            ctype = rnd.choice((0, 2, 3, 4, 6, 7, 255))
        body = struct.pack(">IIBB", w, h, depth, ctype) + body[10:]
        chunks[0] = (typ, body)
        return b"\x89PNG\r\n\x1a\n" + b"".join(struct.pack(">I", len(c)) + t + c + struct.pack(
            ">I", zlib.crc32(t + c) & 0xFFFFFFFF) for t, c in chunks)
    if seed[:3] == b"\xff\xd8\xff" and rnd.random() < 0.5:
        i = seed.find(b"\xff\xc0")
        if i > 0:
            b = bytearray(seed)
            b[i + 5:i + 9] = struct.pack(">HH", *rnd.choice(((65535, 65535), (0, 0), (1, 65535))))
            return bytes(b)
    if seed[:4] == b"GIF8" and rnd.random() < 0.5:
        b = bytearray(seed)
        b[6:10] = struct.pack("<HH", *rnd.choice(((65535, 65535), (0, 0))))
        return bytes(b)
    return byte_mutation(seed, rnd)


def mutate_video(seed: bytes, rnd: random.Random) -> bytes:
    op = rnd.randrange(3)
    if op == 0:  # cut
        return seed[: rnd.randrange(len(seed))]
    if op == 1 and seed[4:8] == b"ftyp":  # an mp4 box size
        b = bytearray(seed)
        i = 0
        boxes = []
        while i + 8 <= len(b) and len(boxes) < 20:
            n = struct.unpack(">I", b[i:i + 4])[0]
            boxes.append(i)
            if n < 8:
                break
            i += n
        j = rnd.choice(boxes)
        b[j:j + 4] = struct.pack(">I", rnd.choice((0, 1, 7, 2**32 - 1, len(b) * 4)))
        return bytes(b)
    return byte_mutation(seed, rnd)


def mutate(loader: str, seed: bytes, rnd: random.Random, rng: np.random.Generator) -> bytes:
    """One mutated input: structure-aware half the time, byte-level otherwise."""
    if rnd.random() < 0.5:
        return byte_mutation(seed, rnd)
    try:
        if loader == "flame_pickle":
            return mutate_pickle(seed, rnd, rng)
        if loader in ("npz_head_model", "track", "calibration"):
            return mutate_npz(seed, rnd)
        if loader == "omgavatar":
            return mutate_safetensors(seed, rnd)
        if loader == "ply":
            return mutate_ply(seed, rnd)
        if loader in ("capture", "mapping"):
            return mutate_text(seed, rnd)
        if loader in ("dinov2", "checkpoint", "refiner"):
            return mutate_torch(seed, rnd) if rnd.random() < 0.7 else mutate_npz(seed, rnd)
        if loader == "image":
            return mutate_image(seed, rnd)
        if loader == "video":
            return mutate_video(seed, rnd)
    except Exception:  # noqa: BLE001 - a mutator that cannot apply falls back to bytes
        return byte_mutation(seed, rnd)
    raise KeyError(loader)


# ---------------------------------------------------------------------------------------------
# running

@dataclass
class Outcome:
    loader: str
    path: Path
    status: str  # loaded | error | traceback | crash | hang | bad-message
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.status not in ("loaded", "error")


@dataclass
class Campaign:
    """Results of one run: outcomes per loader and the seconds it took."""

    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    seeds: dict[str, int] = field(default_factory=dict)  # the first seeds[loader] inputs are unmutated

    def by_loader(self, loader: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.loader == loader]

    def failures(self, loader: str | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed and (loader is None or o.loader == loader)]

    def summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for o in self.outcomes:
            s = out.setdefault(o.loader, {"inputs": 0, "loaded": 0, "error": 0, "failed": 0})
            s["inputs"] += 1
            s["failed" if o.failed else o.status] += 1
        return out


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind


def _judge(loader: str, path: Path, status: str, message: str) -> Outcome:
    if status == "error":
        if "\n" in message.strip() or path.name not in message:
            return Outcome(loader, path, "bad-message", message)
    return Outcome(loader, path, status, message)


def run_cases(cases: list[tuple[str, Path]], log: Callable[[str], None] | None = None) -> list[Outcome]:
    """Feed ``cases`` [(loader, path)] to child processes; one Outcome per case, in order."""
    results: list[Outcome | None] = [None] * len(cases)
    start = 0
    with tempfile.TemporaryDirectory(prefix="omg-fuzz-") as tmp:
        while start < len(cases):
            list_file = Path(tmp) / f"cases_{start}.txt"
            list_file.write_text("".join(f"{l}\t{p}\n" for l, p in cases[start:]), encoding="utf-8")
            err_file = open(Path(tmp) / f"stderr_{start}.txt", "w+b")
            proc = subprocess.Popen([sys.executable, str(HERE / "fuzz_child.py"), str(list_file)],
                                    stdout=subprocess.PIPE, stderr=err_file, cwd=ROOT, text=True,
                                    preexec_fn=_limits, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            lines: queue.Queue[str | None] = queue.Queue()

            def pump(stream=proc.stdout) -> None:
                for line in stream:
                    if line.startswith("@@FUZZ "):
                        lines.put(line[7:].rstrip("\n"))
                lines.put(None)

            threading.Thread(target=pump, daemon=True).start()
            current: int | None = None
            limit = STARTUP_SECONDS
            next_start = len(cases)
            while True:
                try:
                    line = lines.get(timeout=limit)
                except queue.Empty:  # a hang: pin it on the case that began, restart after it
                    proc.kill()
                    proc.wait()
                    i = start + (current if current is not None else 0)
                    results[i] = Outcome(*cases[i], "hang", f"no result within {limit:.0f} s")
                    next_start = i + 1
                    break
                if line is None:  # the child ended
                    rc = proc.wait()
                    if current is not None:  # ... in the middle of a case: that case crashed it
                        i = start + current
                        err_file.seek(0)
                        tail = err_file.read().decode("utf-8", "replace")[-600:]
                        results[i] = Outcome(*cases[i], "crash", f"exit status {rc}: {tail}")
                        next_start = i + 1
                    elif start + 0 < len(cases) and results[start] is None:
                        err_file.seek(0)
                        raise RuntimeError("fuzz child failed before the first case: "
                                           + err_file.read().decode("utf-8", "replace")[-2000:])
                    break
                kind, idx, *rest = line.split(" ", 3)
                if kind == "BEGIN":
                    current = int(idx)
                    limit = CASE_SECONDS.get(cases[start + current][0], DEFAULT_CASE_SECONDS)
                else:
                    i = start + int(idx)
                    results[i] = _judge(*cases[i], rest[0], json.loads(rest[1]))
                    current = None
            err_file.close()
            if log:
                log(f"  ... {sum(r is not None for r in results)}/{len(cases)} cases done")
            start = next_start
    return [r for r in results if r is not None]


def campaign(counts: dict[str, int], seed: int, work: Path, log: Callable[[str], None] | None = None) -> Campaign:
    """Generate ``counts[loader]`` mutated inputs per loader (deterministic for ``seed``) under
    ``work`` and run them all."""
    t0 = time.perf_counter()
    cases: list[tuple[str, Path]] = []
    n_seeds: dict[str, int] = {}
    for loader, n in counts.items():
        rnd = random.Random(f"{seed}-{loader}")
        rng = np.random.default_rng(zlib.crc32(f"{seed}-{loader}".encode()))
        folder = work / loader
        folder.mkdir(parents=True, exist_ok=True)
        seeds = make_seeds(loader, np.random.default_rng(seed), folder / "seeds")
        n_seeds[loader] = min(len(seeds), n)
        for i in range(n):
            suffix, data = seeds[i % len(seeds)]
            if i >= len(seeds):  # the seeds themselves first: they must load
                data = mutate(loader, data, rnd, rng)
            p = folder / f"case_{i:06d}{suffix}"
            p.write_bytes(data)
            cases.append((loader, p))
    if log:
        log(f"{len(cases)} inputs generated in {time.perf_counter() - t0:.1f} s")
    return Campaign(run_cases(cases, log), time.perf_counter() - t0, n_seeds)


def regression_cases() -> list[tuple[str, Path]]:
    """Every kept input under regressions/<loader>/."""
    return [(d.name, p) for d in sorted(REGRESSIONS.iterdir()) if d.is_dir() and d.name in LOADERS
            for p in sorted(d.iterdir()) if p.is_file() and not p.name.startswith(".")] \
        if REGRESSIONS.is_dir() else []


def keep_failure(o: Outcome) -> Path:
    """Copy a failing input into regressions/<loader>/ (named by its content hash)."""
    import hashlib

    data = o.path.read_bytes()
    dest = REGRESSIONS / o.loader / f"{hashlib.sha256(data).hexdigest()[:12]}{o.path.suffix}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return dest
