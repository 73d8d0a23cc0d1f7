"""A restricted unpickler for FLAME model files: plain data only, never code, never raw pointers.

Python's pickle runs whatever callable a file names. FLAME files only need numpy arrays, scipy
sparse matrices and (FLAME 2020) chumpy ``Ch`` wrappers around numpy arrays, so this unpickler
resolves only those names, and maps each of them to an inert stand-in:

- ``numpy.ndarray`` / ``_reconstruct`` / ``_frombuffer`` / ``scalar`` never reach numpy's own
  constructors. An array is a :class:`_ArrayStub` until its state arrives; the state (shape,
  dtype, bytes) is checked -- numeric or text dtype only (never object or void), at most
  :data:`MAX_DIMS` dimensions and :data:`MAX_ARRAY_BYTES` bytes, byte count equal to the shape's --
  and only then copied into a fresh array with ``np.frombuffer``. ``ndarray(shape, dtype, buffer)``
  (the way to an object array of attacker-chosen pointers) does not exist here.
- ``numpy.dtype`` is a :class:`_DtypeStub` that accepts only simple specs (``f8``, ``i4``, ``U5``,
  ...) and a plain byte-order state: a file cannot BUILD state into a real ``np.dtype``.
- chumpy classes and scipy csc/csr matrices become :class:`PlainState` placeholders that store
  their state. Sparse matrices are validated (shape caps, index ranges, ``indptr`` monotonic and
  consistent with nnz) before SciPy, whose C++ kernels do not bounds-check, sees them.
- Every callable handed to the unpickler is a wrapper that refuses BUILD, and every class a type
  whose attributes cannot be set, so a file cannot modify this module's objects.
- Nesting deeper than :data:`MAX_DEPTH` is refused; RecursionError/MemoryError become the same
  one-line :class:`HeadModelError` as every other problem.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from .model import HeadModelError

MAX_ARRAY_BYTES = 256 * 2**20  # one array; FLAME 2023's largest (shapedirs, float64) is 48 MB
MAX_DIMS = 8
MAX_DEPTH = 64  # nesting of dicts/lists/tuples/placeholders; FLAME files nest 4 deep
MAX_SPARSE_SIDE = 2**24  # rows or columns of one sparse matrix
MAX_SPARSE_DENSE = 2**25  # rows * columns: the loader densifies (J_regressor is 5 x 5023)
MAX_TEXT_ITEM = 4096  # characters in one element of a U/S array
_DTYPE_SPEC = re.compile(r"([biufc])(\d{1,2})|([US])(\d{1,5})")
_NUMERIC_KINDS = "biufc"


class _Locked(type):
    """Metaclass of every class the unpickler can name: its attributes cannot be set by BUILD."""

    def __setattr__(cls, key: str, value: Any) -> None:
        raise TypeError(f"cannot set '{key}' on {cls.__name__}")

    def __delattr__(cls, key: str) -> None:
        raise TypeError(f"cannot delete '{key}' on {cls.__name__}")


class _Callable:
    """An allowed callable as the unpickler sees it: calls through, refuses BUILD state."""

    __slots__ = ("_fn", "_name")

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_name", name)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setstate__(self, state: Any) -> None:
        raise TypeError(f"state given to {self._name}")

    def __setattr__(self, key: str, value: Any) -> None:
        raise TypeError(f"cannot set '{key}' on {self._name}")


class PlainState(metaclass=_Locked):
    """Inert stand-in for a chumpy/scipy object: keeps its class name and unpickled state."""

    source = "placeholder"

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE with the class: args ignored
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _DtypeStub(metaclass=_Locked):
    """``numpy.dtype(spec, align, copy)`` as a file may call it: simple numeric/text specs only."""

    def __init__(self, spec: Any = None, align: Any = False, copy: Any = True) -> None:
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        m = _DTYPE_SPEC.fullmatch(spec) if isinstance(spec, str) else None
        if m is None:
            raise _Refused(f"a dtype '{str(spec)[:40]}' (only numbers and text are model data)")
        try:
            self.dtype = np.dtype(spec)
        except TypeError as exc:
            raise _Refused(f"a dtype '{spec}' ({exc})") from exc
        self._built = False

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version, byteorder, subdescr, names, fields, elsize, alignment, flags)
        if self._built or not isinstance(state, tuple) or len(state) < 2:
            raise _Refused("a dtype with unexpected state")
        self._built = True
        order = state[1].decode("latin1") if isinstance(state[1], bytes) else state[1]
        if order not in ("<", ">", "|", "=") or any(s is not None for s in state[2:5]):
            raise _Refused("a structured or unusual dtype")
        if self.dtype.kind in "US" and len(state) > 5 and isinstance(state[5], int) and state[5] > 0:
            per = 4 if self.dtype.kind == "U" else 1  # flexible types may carry their size here
            if state[5] % per or state[5] // per > MAX_TEXT_ITEM:
                raise _Refused("a text dtype of unusual size")
            self.dtype = np.dtype(f"{self.dtype.kind}{state[5] // per}")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)

    def resolve(self) -> np.dtype:
        dt = self.dtype
        if dt.kind not in _NUMERIC_KINDS + "US" or dt.hasobject or dt.fields is not None:
            raise _Refused(f"an array of dtype {dt}")
        if dt.kind in "US" and dt.itemsize // (4 if dt.kind == "U" else 1) > MAX_TEXT_ITEM:
            raise _Refused(f"an array of dtype {dt}")
        return dt


class _ArrayStub(metaclass=_Locked):
    """``numpy.ndarray`` as a file may name it: empty until BUILD gives a checked state."""

    def __init__(self, *args: Any) -> None:
        if args:  # ndarray(shape, dtype, buffer): the path to object arrays over raw bytes
            raise _Refused("a numpy.ndarray constructed from a buffer")
        self.array: np.ndarray | None = None

    def __new__(cls, *args: Any) -> "_ArrayStub":  # NEWOBJ calls __new__ directly
        if args:
            raise _Refused("a numpy.ndarray constructed from a buffer")
        obj = super().__new__(cls)
        obj.array = None
        return obj

    def __setstate__(self, state: Any) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("a numpy array with unexpected state")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(fortran, (bool, int)):
            raise _Refused("a numpy array with unexpected state")
        self.array = _checked_array(raw, dtype, shape, "F" if fortran else "C")


class _Refused(Exception):
    """Internal: the file holds something that is not plain model data (message completes it)."""


def _checked_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)) or len(shape) > MAX_DIMS:
        raise _Refused(f"an array shape {str(shape)[:60]}")
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 0 <= s < 2**40
               for s in shape):
        raise _Refused(f"an array shape {str(shape)[:60]}")
    return tuple(int(s) for s in shape)


def _checked_array(raw: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """A fresh array from ``raw`` bytes after checking dtype, shape and size (nothing else runs)."""
    if not isinstance(dtype, _DtypeStub):
        raise _Refused("a numpy array without a plain dtype")
    dt = dtype.resolve()
    shp = _checked_shape(shape)
    n = 1
    for s in shp:
        n *= s
    nbytes = n * dt.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise _Refused(f"an array of {nbytes / 2**20:.0f} MB (at most {MAX_ARRAY_BYTES >> 20} MB)")
    if isinstance(raw, str):  # Python 2 pickles (read with encoding='latin1') keep bytes as str
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray)):
        raise _Refused(f"array data of type {type(raw).__name__}")
    if len(raw) != nbytes:
        raise _Refused(f"an array of shape {shp} and dtype {dt} with {len(raw)} data bytes "
                       f"(expected {nbytes})")
    flat = np.frombuffer(bytes(raw), dt).copy()
    return flat.reshape(shp, order="F" if order == "F" else "C")


def _reconstruct(cls: Any, shape: Any, code: Any) -> _ArrayStub:
    if cls is not _ArrayStub:  # numpy subclasses (matrix, masked arrays...) are not model data
        raise _Refused("an array of a class other than numpy.ndarray")
    return _ArrayStub()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return _checked_array(buf, dtype, shape, "F" if order == "F" else "C")


def _scalar(dtype: Any, raw: Any = b"") -> Any:
    arr = _checked_array(raw, dtype, (), "C")
    return arr.item()  # a Python number/str: nothing left for BUILD to act on


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Python 3 pickles bytes this way at protocols < 3; only the latin-1 form is needed
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise _Refused("a codecs call that is not a latin-1 bytes literal")
    return text.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # Python 2 protocol < 2 object rebuilding (copy_reg._reconstructor), placeholders only
    if not (isinstance(cls, type) and issubclass(cls, PlainState)) or base is not _OBJECT \
            or state is not None:
        raise _Refused("an object rebuilt from a class other than a chumpy/scipy placeholder")
    return cls.__new__(cls)


_OBJECT = _Callable(object, "object")
_NUMPY_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _Callable(_reconstruct, "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): _Callable(_scalar, "scalar"),
    ("numpy.core.numeric", "_frombuffer"): _Callable(_frombuffer, "_frombuffer"),  # protocol 5
    ("numpy", "ndarray"): _ArrayStub,
    ("numpy", "dtype"): _DtypeStub,
}
_BUILTINS = {"object": _OBJECT, "set": _Callable(set, "set"),
             "frozenset": _Callable(frozenset, "frozenset")}
_RECONSTRUCTOR = _Callable(_reconstructor, "_reconstructor")
_ENCODE = _Callable(_codecs_encode, "encode")
_SPARSE_KINDS = {"csc_matrix": "csc", "csr_matrix": "csr", "csc_array": "csc", "csr_array": "csr"}
_SPARSE_MODULES = {"scipy.sparse", "scipy.sparse.csc", "scipy.sparse.csr", "scipy.sparse._csc",
                   "scipy.sparse._csr", "scipy.sparse.compressed", "scipy.sparse._compressed"}


def _placeholder(module: str, name: str) -> type:
    # One subclass per refused-to-run class, so conversion knows what the state means.
    return _Locked(name, (PlainState,), {"source": f"{module}.{name}"})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only checked numpy array/dtype rebuilding, scipy csc/csr matrices
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
            return _RECONSTRUCTOR
        if module in ("__builtin__", "builtins") and name in _BUILTINS:
            return _BUILTINS[name]  # chumpy objects keep bookkeeping sets in their state
        if module == "_codecs" and name == "encode":
            return _ENCODE
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


def to_plain(obj: Any, path: str | Path | None = None, key: str = "", depth: int = 0) -> Any:
    """Convert stubs/placeholders to numpy arrays / scipy CSR matrices (through dicts/lists/tuples).

    A chumpy object without a stored value (a lazily computed expression) stays a placeholder:
    only the keys a model needs are checked later, so unused extras never block loading."""
    if depth > MAX_DEPTH:
        raise HeadModelError(path, f"refused to load: data nested more than {MAX_DEPTH} levels deep")
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise HeadModelError(path, f"'{key}' is an incomplete numpy array (no data)")
        return obj.array
    if isinstance(obj, _DtypeStub):
        return obj.resolve()
    if isinstance(obj, PlainState):
        src = type(obj).source
        name = src.rsplit(".", 1)[-1]
        if name in _SPARSE_KINDS and src.startswith("scipy"):
            return _sparse_from_state(to_plain(obj.state, path, key, depth + 1),
                                      _SPARSE_KINDS[name], path, key)
        # chumpy: the value lives in 'x' (Ch); reordering wrappers keep their operand in 'a'
        st = obj.state
        if isinstance(st, dict):
            for field in ("x", "a"):
                if field in st:
                    return to_plain(st[field], path, key, depth + 1)
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            k = k.decode("latin1") if isinstance(k, bytes) else k
            if isinstance(k, str):  # model data has text keys; other entries are never read
                out[k] = to_plain(v, path, k[:60], depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v, path, key, depth + 1) for v in obj)
    if isinstance(obj, (set, frozenset)):
        return type(obj)()  # chumpy bookkeeping only; its members are never read
    return obj


def _sparse_from_state(st: Any, kind: str, path: str | Path | None, key: str) -> sp.csr_matrix:
    """Validate a csc/csr state completely, then let SciPy build it (its kernels trust indices)."""

    def bad(what: str) -> HeadModelError:
        return HeadModelError(path, f"'{key}' is a damaged sparse matrix ({what})")

    if not isinstance(st, dict):
        raise bad("no stored arrays")
    shape = st.get("_shape", st.get("shape"))
    if not isinstance(shape, (tuple, list)) or len(shape) != 2 or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape):
        raise bad(f"shape {str(shape)[:60]}")
    rows, cols = (int(s) for s in shape)
    if min(rows, cols) < 0 or max(rows, cols) > MAX_SPARSE_SIDE or rows * cols > MAX_SPARSE_DENSE:
        raise bad(f"declared shape {rows} x {cols} is over the limit of {MAX_SPARSE_DENSE} entries")
    arrays = {}
    for name, kinds in (("data", _NUMERIC_KINDS), ("indices", "iu"), ("indptr", "iu")):
        a = st.get(name)
        if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind not in kinds:
            raise bad(f"'{name}' is not a 1-D {'numeric' if name == 'data' else 'integer'} array")
        arrays[name] = a
    data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
    major, minor = (cols, rows) if kind == "csc" else (rows, cols)
    nnz = len(indices)
    if len(data) != nnz:
        raise bad(f"{len(data)} values for {nnz} indices")
    if len(indptr) != major + 1:
        raise bad(f"'indptr' has {len(indptr)} entries, expected {major + 1}")
    ip = indptr.astype(np.int64)
    if ip[0] != 0 or ip[-1] != nnz or np.any(np.diff(ip) < 0):
        raise bad("'indptr' is not increasing from 0 to the number of values")
    if nnz and (int(indices.min()) < 0 or int(indices.max()) >= minor):
        raise bad(f"an index is outside 0..{minor - 1}")
    cls = sp.csc_matrix if kind == "csc" else sp.csr_matrix
    return cls((data, indices.astype(np.int64), ip), shape=(rows, cols)).tocsr()


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
        return to_plain(obj, path)
    except HeadModelError:
        raise
    except _Refused as exc:
        raise HeadModelError(path, f"refused to load: the file holds {exc}, which is not plain "
                             "model data") from None
    except RecursionError:
        raise HeadModelError(path, "refused to load: data nested too deeply") from None
    except MemoryError:
        raise HeadModelError(path, "refused to load: the file asks for more memory than is "
                             "available") from None
    except EOFError as exc:
        raise HeadModelError(path, "the file is truncated (pickle ended early)") from exc
    except Exception as exc:  # noqa: BLE001 - corrupt data raises many types; report them as one
        msg = str(exc)[:120]
        if "truncated" in msg:
            raise HeadModelError(path, "the file is truncated (pickle ended early)") from exc
        raise HeadModelError(path, f"not a readable pickle ({type(exc).__name__}: {msg})") from exc
