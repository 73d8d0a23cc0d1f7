"""One BLAS thread while a build runs: ``single_blas_thread()``.

numpy's and scipy's bundled OpenBLAS start one worker per core and split every product or dot
product of a few thousand elements over them; a waiting worker spins. The build already keeps
both cores busy with its own threads (head levels, parts, previews, files), so those workers only
took turns with the build's threads: on the 2-core machine under load a build without refinement
took 14.4 s of CPU and 21.6 s of wall with the default BLAS threads, 5.4 s and 8.4 s with one
(the same photo, minutes apart; the outputs byte-identical). Nothing in the build is a product
large enough to gain from BLAS threads.

The count is set through OpenBLAS's own ``openblas_set_num_threads`` on every OpenBLAS the
process has loaded (found in /proc/self/maps, or beside numpy and scipy where there is no /proc),
and put back when the last of the nested or concurrent scopes ends. A library that loads inside a
scope (scipy's, on the build's preload thread) is limited by calling ``limit_new_blas()`` after
loading it; when the scope ends it gets the count numpy's had before. Where no OpenBLAS is found
(another BLAS), nothing changes.
"""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# (set, get) symbol pairs: the plain build, numpy's 64-bit-integer build, scipy's prefixed build
_SYMBOLS = (("openblas_set_num_threads", "openblas_get_num_threads"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"))

_lock = threading.Lock()
_depth = 0                         # scopes open now
_limit = 1                         # the count the open scopes asked for
_saved: dict[str, int] = {}        # library path -> its count before the first scope


def _library_paths() -> list[str]:
    """Paths of the OpenBLAS libraries loaded in this process (or bundled beside numpy/scipy)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            fields = [line.split(None, 5) for line in f]
        paths = {f[5].strip() for f in fields if len(f) == 6}   # lines with a mapped file
        return sorted(p for p in paths if "openblas" in Path(p).name.lower())
    except OSError:
        pass
    found = []
    for pkg in ("numpy", "scipy"):
        try:
            root = Path(__import__(pkg).__file__).parent
        except ImportError:
            continue
        for folder in (root.parent / f"{pkg}.libs", root / ".dylibs"):
            if folder.is_dir():
                found += [str(p) for p in folder.iterdir() if "openblas" in p.name.lower()]
    return sorted(found)


def _controls() -> dict[str, tuple]:
    """path -> (set_num_threads, get_num_threads) ctypes functions, for each loaded OpenBLAS."""
    out = {}
    for path in _library_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            setter, getter = getattr(lib, set_name, None), getattr(lib, get_name, None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                out[path] = (setter, getter)
                break
    return out


def blas_threads() -> dict[str, int]:
    """Thread count of each loaded OpenBLAS: library path -> count."""
    return {path: int(get()) for path, (_, get) in _controls().items()}


def limit_new_blas() -> None:
    """Inside an open ``single_blas_thread`` scope: limit the OpenBLAS libraries loaded since it
    began (their count before is taken as numpy's). Outside one: nothing."""
    with _lock:
        if _depth == 0:
            return
        controls = _controls()
        reference = max(_saved.values(), default=None)
        for path, (setter, getter) in controls.items():
            if path not in _saved:
                _saved[path] = reference if reference is not None else int(getter())
                setter(_limit)


@contextmanager
def single_blas_thread(n: int = 1) -> Iterator[None]:
    """Run the body with ``n`` BLAS threads in every loaded OpenBLAS; the counts before come back
    when the last open scope ends (scopes nest and may overlap across threads)."""
    global _depth, _limit
    with _lock:
        if _depth == 0:
            _limit = int(n)
            _saved.clear()
            for path, (setter, getter) in _controls().items():
                _saved[path] = int(getter())
                setter(_limit)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for path, (setter, _) in _controls().items():
                    if path in _saved:
                        setter(_saved[path])
                _saved.clear()
