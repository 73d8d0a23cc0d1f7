"""Speed and memory measurement helpers: wall time, peak resident memory, peak Python/numpy
allocations, peak CUDA memory. Measurements are reported, never asserted on."""

from __future__ import annotations

import resource
import sys
import time
import tracemalloc
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux: write 5 to /proc/self/clear_refs) so a stage's
    own peak can be read; False where unsupported (then the peak is the process lifetime's)."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size in MiB: VmHWM (resettable) or getrusage's lifetime maximum."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru / 1024.0 if sys.platform != "darwin" else ru / 1024.0**2  # KiB on Linux, bytes on macOS


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_rss_mb: float = 0.0           # process peak RSS during the block (lifetime if not resettable)
    rss_reset: bool = False            # whether peak_rss_mb is the block's own peak
    peak_traced_mb: float | None = None  # peak Python + numpy allocations (tracemalloc), if traced
    peak_cuda_mb: float | None = None    # torch.cuda.max_memory_allocated, on CUDA

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@contextmanager
def measure(trace_python: bool = False, cuda: bool = False) -> Iterator[Measurement]:
    """Time a block and record its peak memory. ``trace_python`` enables tracemalloc (numpy
    buffers are traced, torch CPU tensors are not; it slows allocation-heavy Python code)."""
    m = Measurement()
    m.rss_reset = reset_peak_rss()
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started_trace = trace_python and not tracemalloc.is_tracing()
    if started_trace:
        tracemalloc.start()
    elif trace_python:
        tracemalloc.reset_peak()
    t0 = time.perf_counter()
    try:
        yield m
    finally:
        if cuda:
            import torch

            torch.cuda.synchronize()
            m.peak_cuda_mb = torch.cuda.max_memory_allocated() / 1024**2
        m.seconds = time.perf_counter() - t0
        m.peak_rss_mb = peak_rss_mb()
        if trace_python:
            m.peak_traced_mb = tracemalloc.get_traced_memory()[1] / 1024**2
            if started_trace:
                tracemalloc.stop()
