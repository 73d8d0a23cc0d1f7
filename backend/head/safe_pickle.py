"""A restricted unpickler for FLAME model files: plain data only, never code.

Python's pickle runs whatever callable a file names. FLAME files only need numpy arrays, scipy
sparse matrices and (FLAME 2020) chumpy ``Ch`` wrappers around numpy arrays, so this unpickler
resolves only those names, and maps chumpy and scipy classes to inert placeholders that just store
their state (chumpy is not installed and is not needed). Any other name is refused before anything
from it can run.
"""

from __future__ import annotations

import codecs
import copyreg
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .model import HeadModelError


class PlainState:
    """Inert stand-in for a chumpy/scipy object: keeps its class name and unpickled state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # called by copyreg._reconstructor
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _placeholder(module: str, name: str) -> type:
    # One subclass per refused-to-run class, so conversion knows what the state means.
    return type(name, (PlainState,), {"source": f"{module}.{name}"})


try:  # numpy >= 2 (numpy.core still works there but warns)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

_NUMPY_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,  # protocol 5 arrays
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_BUILTINS = {"object": object, "set": set, "frozenset": frozenset}
_SPARSE_KINDS = {"csc_matrix": "csc", "csr_matrix": "csr", "csc_array": "csc", "csr_array": "csr"}
_SPARSE_MODULES = {"scipy.sparse", "scipy.sparse.csc", "scipy.sparse.csr", "scipy.sparse._csc",
                   "scipy.sparse._csr", "scipy.sparse.compressed", "scipy.sparse._compressed"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array/dtype reconstruction, scipy csc/csr matrices
    (as placeholders) and chumpy classes (as placeholders); everything else is refused."""

    def __init__(self, file: Any, path: str | Path | None) -> None:
        super().__init__(file, encoding="latin1")  # FLAME 2020 was pickled by Python 2
        self._path = path
        self._placeholders: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        mod = module.replace("numpy._core", "numpy.core")  # numpy 2 pickles
        if (mod, name) in _NUMPY_ALLOWED:
            return _NUMPY_ALLOWED[(mod, name)]
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            # Python 2 protocol < 2 object rebuilding: its class arguments go through this method too.
            return copyreg._reconstructor
        if module in ("__builtin__", "builtins") and name in _BUILTINS:
            # chumpy objects keep bookkeeping sets in their state; these only build containers
            return _BUILTINS[name]
        if module == "_codecs" and name == "encode":
            # Python 3 pickles bytes this way at protocols < 3 (str -> bytes; runs nothing else)
            return codecs.encode
        chumpy = module == "chumpy" or module.startswith("chumpy.")
        sparse = module in _SPARSE_MODULES and name in _SPARSE_KINDS
        if chumpy or sparse:
            key = (module, name)
            if key not in self._placeholders:
                self._placeholders[key] = _placeholder(module, name)
            return self._placeholders[key]
        raise HeadModelError(self._path, f"refused to load: the file asks for '{module}.{name}', "
                             "which is not plain model data (only numpy arrays, scipy sparse "
                             "matrices and chumpy arrays are allowed)")


def to_plain(obj: Any, path: str | Path | None = None, key: str = "") -> Any:
    """Convert placeholders to numpy arrays / scipy CSR matrices (recursively through dicts/lists).

    A chumpy object without a stored value (a lazily computed expression) stays a placeholder:
    only the keys a model needs are checked later, so unused extras never block loading."""
    if isinstance(obj, PlainState):
        src = type(obj).source  # type: ignore[attr-defined]
        st = obj.state
        name = src.rsplit(".", 1)[-1]
        if name in _SPARSE_KINDS and src.startswith("scipy"):
            return _sparse_from_state(st, _SPARSE_KINDS[name], path, key)
        # chumpy: the value lives in 'x' (Ch); reordering wrappers keep their operand in 'a'
        if isinstance(st, dict):
            for field in ("x", "a"):
                if field in st:
                    return to_plain(st[field], path, key)
        return obj
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): to_plain(v, path, str(k))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v, path, key) for v in obj)
    return obj


def _sparse_from_state(st: Any, kind: str, path: str | Path | None, key: str) -> sp.spmatrix:
    try:
        shape = tuple(int(s) for s in (st.get("_shape") or st.get("shape")))
        data, indices, indptr = (np.asarray(st[k]) for k in ("data", "indices", "indptr"))
        cls = sp.csc_matrix if kind == "csc" else sp.csr_matrix
        return cls((data, indices, indptr), shape=shape).tocsr()
    except Exception as exc:  # noqa: BLE001 - any malformed state is one user-facing error
        raise HeadModelError(path, f"'{key}' is a damaged sparse matrix ({exc})") from exc


def safe_load_pickle(path: str | Path) -> Any:
    """Load a pickle through :class:`RestrictedUnpickler`; HeadModelError on anything unusual."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HeadModelError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    if not raw:
        raise HeadModelError(path, "the file is empty")
    if raw[:1] != b"\x80" and raw[:1] not in (b"(", b"}", b"]"):
        raise HeadModelError(path, "not a pickle file (expected a FLAME .pkl or an .npz)")
    try:
        obj = RestrictedUnpickler(io.BytesIO(raw), path).load()
    except HeadModelError:
        raise
    except EOFError as exc:
        raise HeadModelError(path, "the file is truncated (pickle ended early)") from exc
    except Exception as exc:  # noqa: BLE001 - corrupt data raises many types; report them as one
        raise HeadModelError(path, f"not a readable pickle ({type(exc).__name__}: {exc})") from exc
    return to_plain(obj, path)
