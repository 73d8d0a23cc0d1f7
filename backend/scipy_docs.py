"""Import scipy's modules without rewriting their docstrings (a one-shot command's start-up).

SciPy 1.15+ decorates many functions at import time (``scipy._lib._array_api.xp_capabilities``,
``scipy._lib._util._apply_over_batch``): each decorator parses the function's whole docstring
with its numpydoc parser (``scipy._lib._docscrape.FunctionDoc``), appends a note (the array-API
backends it supports, or that it takes batches) and prints the docstring back. A build imports
scipy.linalg (numba's BLAS check imports it), scipy.ndimage and scipy.special (through
scipy.ndimage) in its own span, where this parsing was about 0.08-0.1 s of Python-bound CPU of
their ~0.19 s (imports of scipy.linalg, scipy.ndimage and scipy.spatial in a fresh process, three
pairs here). The functions themselves are the same either way: only the help text lacks the
appended note.

``skip_docstring_notes()`` gives those two decorators a stand-in that keeps each docstring as it
is, for the rest of the process. The CLI calls it in a fresh process only (``commands/build.py``,
beside its ``gc.freeze``): where scipy is imported already (a caller's process, Blender, the tests)
nothing is left to gain, and the help text there stays SciPy's own.
"""

from __future__ import annotations

from typing import Any

# the modules whose decorators parse docstrings at import time, each holding ``FunctionDoc``
_DECORATOR_MODULES = ("scipy._lib._array_api", "scipy._lib._util")


class _KeptDoc:
    """Stands in for ``scipy._lib._docscrape.FunctionDoc`` in the decorators: sections read as
    empty lists (the notes they append go nowhere) and ``str`` gives back a signature line, which
    the decorators strip, and the docstring unchanged."""

    def __init__(self, func: Any, *args: Any, **kwargs: Any) -> None:
        self._doc = getattr(func, "__doc__", None) or ""
        self._sections: dict[str, list] = {}

    def __getitem__(self, name: str) -> list:
        return self._sections.setdefault(name, [])

    def __setitem__(self, name: str, value: list) -> None:
        self._sections[name] = value

    def __str__(self) -> str:
        return "signature\n" + self._doc


def skip_docstring_notes() -> bool:
    """Give scipy's import-time docstring decorators the stand-in above (see the module docstring).

    Returns whether it was applied: False when this scipy has neither decorator module with a
    ``FunctionDoc`` (another version), which then imports as it always did."""
    import importlib

    done = False
    for name in _DECORATOR_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "FunctionDoc"):
            module.FunctionDoc = _KeptDoc
            done = True
    return done
