"""Back-to-front order of splats for alpha blending, and the quad index buffer it becomes.

Pure numpy (no bpy, no gpu): the draw handler runs ``depth_order`` on a worker thread (numpy's
argsort releases the GIL) while the viewport keeps drawing with the previous order.

Each splat is drawn as one quad of 4 vertices (splat ``i`` owns vertices ``4i .. 4i + 3``), so a
new order only rebuilds the index buffer; the vertex data (positions, covariances, colours) stays
on the GPU until the pose changes.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

# two triangles per quad; corners (-1,-1), (1,-1), (1,1), (-1,1) are vertices 0..3 of a splat
_QUAD_TRIS = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
QUAD_CORNERS = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], np.float32)


def view_depths(means: np.ndarray, viewmat: np.ndarray) -> np.ndarray:
    """(N,) float32 camera depth (metres along the view axis) of world points ``means`` (N, 3)
    under ``viewmat`` (4, 4) world -> camera, OpenCV axes (camera looks along +z)."""
    v = np.asarray(viewmat, np.float32)
    return np.asarray(means, np.float32) @ v[2, :3] + v[2, 3]


def depth_order(means: np.ndarray, viewmat: np.ndarray) -> np.ndarray:
    """(N,) int32 splat ids, farthest first (back to front, for "over" blending).

    Ties keep the lower id first (stable sort), so equal depths draw in a fixed order."""
    d = view_depths(means, viewmat)
    return np.argsort(-d, kind="stable").astype(np.int32)


def quad_indices(order: np.ndarray) -> np.ndarray:
    """(2 N, 3) int32 triangle indices drawing the quads of ``order`` (N,) in that order."""
    base = 4 * np.asarray(order, np.int32)
    return (base[:, None, None] + _QUAD_TRIS[None]).reshape(-1, 3)


@dataclass
class SortJob:
    """A depth sort in flight: ``key`` identifies the view and data it was started for."""

    key: tuple
    future: Future


class Sorter:
    """Sorts on one worker thread; at most one job at a time (newer requests wait for the next
    draw). ``request`` returns immediately; ``take`` returns a finished (key, order) once."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._job: SortJob | None = None
        self._lock = threading.Lock()

    def request(self, key: tuple, means: np.ndarray, viewmat: np.ndarray, on_done=None) -> bool:
        """Start sorting ``means`` for ``viewmat`` unless a job is running. ``on_done()`` runs on
        the worker when it finishes (e.g. to ask Blender for a redraw). True when started."""
        with self._lock:
            if self._job is not None and not self._job.future.done():
                return False
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omg-splat-sort")
            fut = self._pool.submit(depth_order, np.array(means, np.float32), np.array(viewmat, np.float32))
            if on_done is not None:
                fut.add_done_callback(lambda _f: on_done())
            self._job = SortJob(key, fut)
            return True

    def pending(self) -> bool:
        with self._lock:
            return self._job is not None and not self._job.future.done()

    def take(self) -> tuple[tuple, np.ndarray] | None:
        """(key, order) of a finished job (once), or None."""
        with self._lock:
            job = self._job
            if job is None or not job.future.done():
                return None
            self._job = None
        return job.key, job.future.result()

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool, self._job = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
