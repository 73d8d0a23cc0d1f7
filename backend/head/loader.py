"""Load head models: FLAME 2020 (chumpy pickle), FLAME 2023 (numpy pickle), our .npz, the stand-in.

Our .npz layout (written by :func:`save_head_model`, read with ``allow_pickle=False``):
    v_template (V,3) f4, f (F,3) i8, shapedirs (V,3,S) f4, exprdirs (V,3,E) f4, posedirs (V,3,36) f4,
    J_regressor (5,V) f4, weights (V,5) f4, kintree_table (2,5) i8, expr_names (E,) str,
    shape_names (S,) str, name () str, lmk_face_idx (478,) i8, lmk_bary (478,3) f4, lmk_valid (478,) bool,
    optional lmk_exprdir_names (K,) str with lmk_exprdirs (V,3,K) f4 (HeadModel.landmark_exprdirs)
Landmark embedding files (for FLAME users): .npz with ``face_idx`` (478,) int and ``bary`` (478,3)
float (optional ``valid`` (478,) bool; rows with face_idx < 0 are invalid).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .model import (N_JOINTS, N_MEDIAPIPE, HeadModel, HeadModelError, LandmarkEmbedding,
                    validate_model)
from .safe_pickle import PlainState, safe_load_pickle

FLAME_N_SHAPE = 300  # FLAME 2020/2023 shapedirs = 300 identity + 100 expression components
_REQUIRED = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")


def load_head_model(path: str | Path | None = None, *, landmarks: str | Path | None = None,
                    n_shape: int | None = None) -> HeadModel:
    """Load a head model. ``None`` -> the bundled stand-in (generated on first use, then cached).

    path: FLAME .pkl (2020 chumpy or 2023 numpy) or our .npz. landmarks: optional mediapipe
    embedding .npz (face_idx, bary) replacing the file's own. n_shape: identity components in a
    pickle's combined shapedirs (default 300, FLAME's split). Raises HeadModelError (an InputError)
    naming the file on any problem.
    """
    if path is None:
        from .standin import standin_path

        try:
            model = _load_npz(standin_path())
        except HeadModelError:  # a damaged cache file (e.g. a full disk): make it again, once
            model = _load_npz(standin_path(regenerate=True))
    else:
        path = Path(path)
        if not path.is_file():
            raise HeadModelError(path, "no such head-model file" if not path.exists()
                                 else "is not a file")
        try:
            model = _load_npz(path) if _is_zip(path) else _load_pickle(path, n_shape)
        except HeadModelError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError,
                RecursionError, MemoryError, SystemError) as exc:  # hostile data past the checks
            # (SystemError: numpy turning invalid code points in a text array into str)
            raise HeadModelError(path, f"not a usable head model ({type(exc).__name__}: "
                                 f"{str(exc)[:120]})") from None
    if landmarks is not None:
        model.landmarks = load_landmark_embedding(landmarks, model.n_faces)
    validate_model(model, path)
    return model


def _is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)


def _as_array(value: Any, key: str, path: Path | None, dtype: Any) -> np.ndarray:
    if isinstance(value, PlainState):
        raise HeadModelError(path, f"'{key}' is a {type(value).source} object without stored "  # type: ignore[attr-defined]
                             "values (only plain chumpy arrays can be read without chumpy)")
    if sp.issparse(value):
        value = value.toarray()
    try:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":  # object/text/complex arrays are not model numbers
            raise TypeError(f"holds {type(value).__name__} of dtype {arr.dtype}")
        return np.ascontiguousarray(arr, dtype)
    except (TypeError, ValueError) as exc:
        raise HeadModelError(path, f"'{key}' is not a numeric array ({exc})") from exc


def _load_pickle(path: Path, n_shape: int | None) -> HeadModel:
    data = safe_load_pickle(path)
    if not isinstance(data, dict):
        raise HeadModelError(path, f"expected a FLAME model dictionary, found {type(data).__name__}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise HeadModelError(path, f"missing key(s) {', '.join(repr(k) for k in missing)} "
                             f"(a FLAME model needs {', '.join(_REQUIRED)})")
    v = _as_array(data["v_template"], "v_template", path, np.float32)
    V = v.shape[0] if v.ndim == 2 else -1
    dirs = _as_array(data["shapedirs"], "shapedirs", path, np.float32)
    if dirs.ndim != 3 or dirs.shape[:2] != (V, 3):
        raise HeadModelError(path, f"'shapedirs' has shape {dirs.shape}, expected ({V}, 3, S+E)")
    if "exprdirs" in data:  # non-FLAME pickles in our layout keep the bases apart
        shapedirs, exprdirs = dirs, _as_array(data["exprdirs"], "exprdirs", path, np.float32)
    else:
        ns = FLAME_N_SHAPE if n_shape is None else int(n_shape)
        if dirs.shape[2] <= ns:
            raise HeadModelError(path, f"'shapedirs' has {dirs.shape[2]} components: expected "
                                 f"{ns} identity + expression components (FLAME: 300 + 100)")
        shapedirs, exprdirs = dirs[..., :ns], dirs[..., ns:]
    E = exprdirs.shape[-1] if exprdirs.ndim == 3 else 0
    kt = _as_array(data["kintree_table"], "kintree_table", path, np.int64)
    if kt.shape != (2, N_JOINTS):
        raise HeadModelError(path, f"'kintree_table' has shape {kt.shape}, expected (2, {N_JOINTS})")
    parents = _parents_from_kintree(kt, path)
    expr_names = _names(data.get("expr_names"), E, path)
    lm = LandmarkEmbedding.empty()
    if "lmk_face_idx" in data and "lmk_bary" in data:
        lm = _embedding_from(data["lmk_face_idx"], data["lmk_bary"], data.get("lmk_valid"), path)
    stem = path.stem.lower()
    name = ("flame2023" if "2023" in stem else "flame2020" if "2020" in stem or "generic" in stem
            else path.stem)
    return HeadModel(
        name=data["name"] if isinstance(data.get("name"), str) else name, v_template=v,
        faces=_as_array(data["f"], "f", path, np.int64),
        shapedirs=shapedirs, exprdirs=exprdirs,
        posedirs=_as_array(data["posedirs"], "posedirs", path, np.float32),
        J_regressor=_as_array(data["J_regressor"], "J_regressor", path, np.float32),
        weights=_as_array(data["weights"], "weights", path, np.float32),
        parents=parents, expr_names=expr_names, landmarks=lm)


def _parents_from_kintree(kt: np.ndarray, path: Path | None) -> np.ndarray:
    # FLAME: row 0 = parent ids (root's is a huge sentinel, 2**32-1), row 1 = joint ids 0..4
    ids = kt[1]
    if sorted(ids.tolist()) != list(range(N_JOINTS)):
        raise HeadModelError(path, f"'kintree_table' joint ids {ids.tolist()} are not 0..{N_JOINTS - 1}")
    parents = np.full(N_JOINTS, -1, np.int64)
    for j, p in zip(ids, kt[0]):
        parents[j] = p if 0 <= p < N_JOINTS else -1
    return parents


def _names(names: Any, count: int, path: Path) -> list[str]:
    """Expression names from a pickle: a flat list/array of short texts (default exp_000...)."""
    if names is None:
        return [f"exp_{i:03d}" for i in range(count)]
    if isinstance(names, np.ndarray) and names.dtype.kind in "US" and names.ndim == 1:
        names = names.tolist()
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes)) and len(n) < 256
                                                      for n in names):
        raise HeadModelError(path, "'expr_names' is not a list of short texts")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def _embedding_from(face_idx: Any, bary: Any, valid: Any, path: Path | None) -> LandmarkEmbedding:
    fi = _as_array(face_idx, "lmk_face_idx", path, np.int64).reshape(-1)
    b = _as_array(bary, "lmk_bary", path, np.float32)
    if b.shape != (fi.shape[0], 3):
        raise HeadModelError(path, f"landmark 'bary' has shape {b.shape}, expected ({fi.shape[0]}, 3)")
    if fi.shape[0] != N_MEDIAPIPE:
        raise HeadModelError(path, f"landmark embedding has {fi.shape[0]} rows, expected "
                             f"{N_MEDIAPIPE} (mediapipe face mesh with iris)")
    ok = fi >= 0
    if valid is not None:
        v = _as_array(valid, "lmk_valid", path, bool).reshape(-1)
        if v.shape != fi.shape:
            raise HeadModelError(path, f"landmark 'valid' has {v.shape[0]} rows, expected {fi.shape[0]}")
        ok &= v
    b = b.copy()
    b[~ok] = (1.0, 0.0, 0.0)
    return LandmarkEmbedding(np.where(ok, fi, 0), b, ok)


def load_landmark_embedding(path: str | Path, n_faces: int | None = None) -> LandmarkEmbedding:
    """Read a mediapipe embedding .npz (face_idx (478,), bary (478,3), optional valid (478,))."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "face_idx" not in z or "bary" not in z:
                raise HeadModelError(path, f"landmark embedding needs 'face_idx' and 'bary' arrays, "
                                     f"found {sorted(z.files)}")
            emb = _embedding_from(z["face_idx"], z["bary"], z["valid"] if "valid" in z else None, path)
    except HeadModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy's .npy parser raises many types on bad data
        raise HeadModelError(path, f"not a readable landmark embedding .npz ({type(exc).__name__}: "
                                   f"{str(exc)[:120]})") from None
    if n_faces is not None and emb.valid.any() and emb.face_idx[emb.valid].max() >= n_faces:
        raise HeadModelError(path, f"landmark embedding indexes face {int(emb.face_idx.max())}, "
                             f"the model has {n_faces} faces")
    return emb


def save_landmark_embedding(path: str | Path, emb: LandmarkEmbedding) -> None:
    np.savez(path, face_idx=emb.face_idx, bary=emb.bary, valid=emb.valid)


def _load_npz(path: Path) -> HeadModel:
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            need = [k for k in (*_REQUIRED, "exprdirs", "expr_names") if k not in files]
            if need:
                raise HeadModelError(path, f"missing array(s) {', '.join(need)} in the .npz head model")
            get = {k: z[k] for k in files}
    except HeadModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy's .npy parser raises many types on bad data
        raise HeadModelError(path, f"not a readable .npz head model ({type(exc).__name__}: "
                                   f"{str(exc)[:120]})") from None
    kt = get["kintree_table"].astype(np.int64)
    if kt.shape != (2, N_JOINTS):
        raise HeadModelError(path, f"'kintree_table' has shape {kt.shape}, expected (2, {N_JOINTS})")
    lm = (_embedding_from(get["lmk_face_idx"], get["lmk_bary"], get.get("lmk_valid"), path)
          if "lmk_face_idx" in get else LandmarkEmbedding.empty())
    return HeadModel(
        name=str(get["name"]) if "name" in get else path.stem,
        v_template=get["v_template"].astype(np.float32), faces=get["f"].astype(np.int64),
        shapedirs=get["shapedirs"].astype(np.float32), exprdirs=get["exprdirs"].astype(np.float32),
        posedirs=get["posedirs"].astype(np.float32), J_regressor=get["J_regressor"].astype(np.float32),
        weights=get["weights"].astype(np.float32), parents=_parents_from_kintree(kt, path),
        expr_names=[str(s) for s in get["expr_names"]],
        shape_names=[str(s) for s in get.get("shape_names", np.array([], str))],
        landmarks=lm, landmark_exprdirs=_landmark_exprdirs(get, path))


def _landmark_exprdirs(get: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """HeadModel.landmark_exprdirs from the .npz's optional lmk_exprdir_names / lmk_exprdirs."""
    names = [str(s) for s in get.get("lmk_exprdir_names", np.array([], str))]
    dirs = get.get("lmk_exprdirs")
    if not names:
        return {}
    if dirs is None or dirs.ndim != 3 or dirs.shape[2] != len(names):
        raise HeadModelError(path, f"'lmk_exprdirs' does not hold one (V, 3) direction for each of "
                                   f"the {len(names)} names in 'lmk_exprdir_names'")
    return {n: dirs[..., k].astype(np.float32) for k, n in enumerate(names)}


def load_model_for_avatar(avatar_file: str | Path | None, stored_name: str, stored_path: str | None,
                          requested: str | Path | None = None) -> HeadModel:
    """The head model to pose an avatar with, never loaded silently from the avatar's own header.

    requested: the user's choice (``--head-model`` / the add-on's preference) -> that file.
    Otherwise an avatar built on the stand-in (stored_path None) gets the bundled stand-in, and one
    whose header names a head-model file is refused with a message saying how to pass it: a shared
    avatar file must not be able to make us open a file it names (FLAME pickles are code-adjacent).
    """
    if requested is not None and str(requested) != "":
        return load_head_model(requested)
    if stored_path is None or str(stored_path) == "":
        return load_head_model(None)
    raise HeadModelError(avatar_file, f"was built on head model '{stored_name}' ({stored_path}); "
                         "head-model files named inside an avatar are not opened automatically: "
                         "pass --head-model PATH with a model file you trust")
