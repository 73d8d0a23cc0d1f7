"""single_blas_thread: one OpenBLAS thread inside the scope in every loaded OpenBLAS (also one
loaded inside it, after limit_new_blas), the counts before restored when the last scope ends, and
a build under it byte-equal to one with two BLAS threads."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from backend import blas_threads
from backend.blas_threads import blas_threads as counts

pytestmark = pytest.mark.skipif(not counts(), reason="numpy is not linked against OpenBLAS here")


def test_scope_limits_every_openblas_and_restores_in_a_fresh_process():
    # a fresh process: scipy's OpenBLAS is not loaded yet when the scope starts
    code = textwrap.dedent("""
        import json
        import numpy
        from backend.blas_threads import blas_threads, limit_new_blas, single_blas_thread
        for setter, _ in __import__("backend.blas_threads", fromlist=["x"])._controls().values():
            setter(3)
        seen = {"before": blas_threads()}
        with single_blas_thread():
            with single_blas_thread():
                seen["nested"] = blas_threads()
            seen["outer"] = blas_threads()
            import scipy.linalg
            seen["loaded"] = blas_threads()
            limit_new_blas()
            seen["limited"] = blas_threads()
        seen["after"] = blas_threads()
        print(json.dumps(seen))
    """)
    import json

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["before"] and set(seen["before"].values()) == {3}
    assert set(seen["nested"].values()) == {1} and set(seen["outer"].values()) == {1}
    scipy_libs = set(seen["loaded"]) - set(seen["before"])
    if scipy_libs:  # scipy bundles its own OpenBLAS: default count on load, one after limit_new_blas
        assert set(seen["limited"].values()) == {1}
    assert all(v == 3 for v in seen["after"].values()) and set(seen["after"]) == set(seen["limited"])


@contextlib.contextmanager
def _two_blas_threads():
    controls = blas_threads._controls()
    before = {p: get() for p, (_, get) in controls.items()}
    for setter, _ in controls.values():
        setter(2)
    try:
        yield
    finally:
        for p, (setter, _) in controls.items():
            setter(before[p])


def test_build_with_one_blas_thread_equals_two(monkeypatch):
    import backend.avatar.build as build

    opts = build.BuildOptions(lods=(0, 1), refine=False, metrics=False)
    one = build.build_avatar(None, opts).avatar
    monkeypatch.setattr(build, "single_blas_thread", _two_blas_threads)
    monkeypatch.setattr(build, "limit_new_blas", lambda: None)
    two = build.build_avatar(None, opts).avatar
    for lvl in (0, 1):
        for f in ("means", "quats", "scales", "opacities", "colors"):
            np.testing.assert_array_equal(getattr(one.lods[lvl], f), getattr(two.lods[lvl], f), err_msg=f"{lvl} {f}")
    for p, q in zip(one.parts, two.parts):
        np.testing.assert_array_equal(p.gaussians.colors, q.gaussians.colors)
        np.testing.assert_array_equal(p.gaussians.means, q.gaussians.means)
