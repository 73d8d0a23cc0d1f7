"""glibc's allocator set for a one-shot build: freed memory is reused instead of given back and
faulted in again (Linux with glibc only; elsewhere nothing changes).

A build allocates and frees arrays of megabytes all along (the 512x512 images and their float64
temporaries, LOD 2's 84,000-vertex arrays, the hair's voxel grid, the previews' splat buffers) on
three or four threads. With glibc's defaults each thread that allocates while another holds the
main arena gets an arena of its own, blocks above the (dynamic) mmap threshold are mapped and
unmapped on every allocation, and the heap top is trimmed back to the kernel when it frees: every
new array then page-faults its memory in again, and the kernel zeroes each page. A perf profile of
one build (load 8) put ~15 % of the build's CPU in the kernel, 7 % of it page faults and page
clearing (``clear_page_erms``, the largest single symbol after the sparse products).

``reuse_freed_memory()`` sets, through ``mallopt``: one arena for all threads (the build's threads
do seconds of numpy work between allocations; the arena's lock is not contended), an mmap
threshold of 1 GiB (blocks come from the heap and go back to it), no trimming of the heap top and
64 MiB of padding when it grows. The astronaut's CLI build (paired with main at load 16-18):
114,000-133,000 page faults in its span -> 69,000-70,000, sys time 0.39-0.53 -> 0.22-0.35 s, peak
RSS 747-803 -> 691-697 MB, the same files. The CLI calls it in a fresh process only
(``commands/build.py``): a caller's process (Blender, the tests) keeps its own allocator settings.
"""

from __future__ import annotations

import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

# (parameter, value); values are C ints
_SETTINGS = (
    (M_ARENA_MAX, 1),
    (M_MMAP_THRESHOLD, 1 << 30),
    (M_TRIM_THRESHOLD, (1 << 31) - 1),
    (M_TOP_PAD, 64 << 20),
)


def reuse_freed_memory() -> bool:
    """Apply the settings above to this process's glibc allocator (see the module docstring).

    Returns whether every setting was accepted: False off Linux, without glibc (musl, ...), or
    where glibc refused one (those it accepted stay set)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all([bool(mallopt(param, value)) for param, value in _SETTINGS])
