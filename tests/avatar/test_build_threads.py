"""The analytic build makes the portrait parts on a second thread while it samples the head, and
samples the head's finer levels on two threads after LOD 0, each level's shape attributes beside its
colours, and fits the silhouette on two threads: the avatar is bit-identical to the one a build gets
doing everything on one thread."""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np

from backend.avatar.build import BuildOptions, build_avatar

FIELDS = ("means", "quats", "scales", "opacities", "colors")


class _Inline:
    """An executor that runs each job at once on the calling thread."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __enter__(self) -> "_Inline":
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def submit(self, fn, *args, **kwargs) -> cf.Future:
        fut: cf.Future = cf.Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


def test_threaded_build_equals_one_thread(monkeypatch):
    opts = BuildOptions(lods=(0,), refine=False, metrics=False)
    threaded = build_avatar(None, opts).avatar
    monkeypatch.setattr(cf, "ThreadPoolExecutor", _Inline)
    serial = build_avatar(None, opts).avatar
    assert [p.name for p in threaded.parts] == [p.name for p in serial.parts] and len(serial.parts) >= 4
    for p, q in zip(threaded.parts, serial.parts):
        np.testing.assert_array_equal(p.weights, q.weights)
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(p.gaussians, f), getattr(q.gaussians, f), err_msg=f"{p.name}.{f}")
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(threaded.lods[0], f), getattr(serial.lods[0], f))


def test_finer_levels_on_two_threads_equal_one_thread(monkeypatch):
    """LOD 1 is sampled on a second thread while LOD 2 is sampled on the first (both start from
    LOD 0's colours, solved first even when not asked for): the same Gaussians as one thread."""
    opts = BuildOptions(lods=(1, 2), refine=False, metrics=False, fit_silhouette=False)
    threaded = build_avatar(None, opts).avatar
    monkeypatch.setattr(cf, "ThreadPoolExecutor", _Inline)
    serial = build_avatar(None, opts).avatar
    assert threaded.levels == serial.levels == [1, 2]
    for lvl in (1, 2):
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(threaded.lods[lvl], f), getattr(serial.lods[lvl], f),
                                          err_msg=f"LOD {lvl} {f}")
