"""The numba kernels are compiled once per install: cached on disk, also when the installed
package folder is read-only (a system-wide Blender extension), where numba falls back to the
user's cache folder. Two fresh processes on a read-only copy of the backend: the first compiles
and writes the cache, the second loads every kernel from it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys
import numpy as np
from backend.render.preload import preload_kernels
from backend.render import _kernels, _kernels_simd, depth, projection
preload_kernels()
stats = {}
for mod in (_kernels, _kernels_simd, depth, projection):
    for name in dir(mod):
        f = getattr(mod, name)
        if hasattr(f, "stats") and hasattr(f, "signatures") and f.signatures:
            stats[f"{mod.__name__}.{name}"] = [f.stats.cache_hits and sum(f.stats.cache_hits.values()),
                                               f.stats.cache_misses and sum(f.stats.cache_misses.values())]
print(json.dumps(stats))
"""


def _read_only(tree: Path) -> None:
    for p in [tree, *tree.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_kernels_cache_to_the_user_folder_when_the_package_is_read_only(tmp_path):
    pkg = tmp_path / "install"
    shutil.copytree(ROOT / "backend", pkg / "backend",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc"))
    # read-only permission bits do not stop root (these tests may run as root): a file named
    # __pycache__ in every package folder makes the in-tree cache unusable for anyone
    for d in [pkg / "backend", *(p for p in (pkg / "backend").rglob("*") if p.is_dir())]:
        (d / "__pycache__").write_text("not a folder: the install is read-only")
    _read_only(pkg)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=str(pkg),
               PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = runs
    # helpers that only other kernels call (depth_order inside bin_tiles) are compiled with their
    # caller in the first run and never touched again once the caller loads from the cache
    entry = {"backend.render._kernels.bin_tiles", "backend.render._kernels.rasterize_image",
             "backend.render.projection.project_fwd", "backend.render.depth._zbuffer",
             "backend.render._kernels_simd.rasterize_image_simd"}
    assert first and entry <= set(second) <= set(first), (first, second)
    assert all(misses for hits, misses in first.values()), first     # compiled (nothing cached yet)
    assert all(hits and not misses for hits, misses in second.values()), second  # all loaded from disk
    cached = list((home / ".cache").rglob("*.nbi"))
    assert cached, "no numba index files in the user's cache folder"
    assert not list(pkg.rglob("*.nbi"))  # nothing written into the install
