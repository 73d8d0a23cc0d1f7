"""Animation files: a track (``python -m backend track``, Retarget Video) or a HeadParams .npz,
read once into a :class:`Motion`. Pure numpy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..head.params import HeadParams

DEFAULT_FPS = 25.0


@dataclass
class Motion:
    """params: HeadParams (T frames); fps: frames per second; source: where it came from (clip or
    file name); camera: the track's source Camera, or None for a bare HeadParams file;
    confidence: (T,) float32 in [0, 1] (ones when unknown); expr_names: the name of each
    expression column (a track's), or None when the columns are in the head model's order."""

    params: HeadParams
    fps: float
    source: str
    camera: object | None = None
    confidence: np.ndarray | None = None
    expr_names: list[str] | None = None

    @property
    def n_frames(self) -> int:
        return self.params.n_frames


def _current_basis(m: Motion) -> Motion:
    """A motion in the stand-in's old 24-expression basis (smile_L, ...) carried over to ARKit-52
    (head.arkit_names.legacy_to_arkit); any other motion unchanged."""
    from ..head.arkit_names import ARKIT_NAMES, LEGACY_STANDIN_NAMES, legacy_to_arkit

    if m.expr_names is None or tuple(m.expr_names) != LEGACY_STANDIN_NAMES:
        return m
    p = m.params
    m.params = HeadParams(p.shape, legacy_to_arkit(p.expr), p.pose, p.transl, p.torso)
    m.expr_names = list(ARKIT_NAMES)
    return m


def load_motion(path: str | Path, fps: float = DEFAULT_FPS) -> Motion:
    """Read a track file (format "omg-track") or a HeadParams file ("omg-head-params"), opening
    it once; ``fps`` is used for the latter unless it stores its own (an imported capture take).
    InputError names the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "motion file not found (expected a track .npz)")
    from ..filekind import describe, wrong_kind

    if describe(path) != "a zip/.npz archive":
        raise InputError(path, wrong_kind(path, "a motion file: expected a track .npz "
                                          "(python -m backend track VIDEO -o track.npz)"))
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            meta = json.loads(str(z["metadata"])) if "metadata" in keys else (
                json.loads(str(z["meta"])) if "meta" in keys else {})
            if not isinstance(meta, dict):
                meta = {}
            kind = meta.get("format")
            if kind == "omg-track":
                from ..face.track import Track

                track = Track.from_npz(z, meta, path)
                return _current_basis(Motion(track.params, float(track.fps), track.source or path.name,
                                             track.camera, np.asarray(track.confidence, np.float32),
                                             list(track.expr_names) or None))
            if kind == "omg-head-params" or {"shape", "expr", "pose", "transl"} <= keys:
                params = HeadParams(z["shape"], z["expr"], z["pose"], z["transl"],
                                    z["torso"] if "torso" in keys else None)  # older files: none
                # a take (python -m backend import-capture) also stores its rate, source and names
                names = meta.get("expr_names") or None
                return _current_basis(Motion(params, float(meta.get("fps", fps)),
                                             str(meta.get("source") or path.name), None,
                                             np.ones(params.n_frames, np.float32), list(names) if names else None))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip/json/key/shape problems: not an npz we understand
        raise InputError(path, f"not a readable motion file ({type(exc).__name__}: {str(exc)[:120]})") from None
    raise InputError(path, f"not a track or head-parameter file (format {kind!r}, arrays {sorted(keys)})")
