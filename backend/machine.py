"""Describe the machine a report was measured on (CPU model, cores, memory, GPU, versions)."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class MachineInfo:
    cpu_model: str
    logical_cores: int
    usable_cores: int           # cores this process may run on (affinity / container limits)
    memory_gb: float | None
    gpu: str | None             # CUDA device name, None on CPU-only machines
    os: str
    python: str
    torch: str
    torch_threads: int
    load_average: tuple[float, float, float] | None = None  # 1/5/15-min load when measured

    def as_dict(self) -> dict:
        return asdict(self)

    def one_line(self) -> str:
        mem = f", {self.memory_gb:.0f} GB RAM" if self.memory_gb else ""
        gpu = f", GPU {self.gpu}" if self.gpu else ", no GPU"
        return (f"{self.cpu_model} ({self.usable_cores} usable of {self.logical_cores} logical cores{mem}{gpu}); "
                f"{self.os}; Python {self.python}, torch {self.torch} ({self.torch_threads} threads)")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def load_average() -> tuple[float, float, float] | None:
    """The OS's 1/5/15-minute load averages (other processes sharing the CPU skew timings)."""
    try:
        return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]
    except (AttributeError, OSError):
        return None


def machine_info() -> MachineInfo:
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return MachineInfo(
        cpu_model=_cpu_model(),
        logical_cores=os.cpu_count() or 1,
        usable_cores=usable,
        memory_gb=_memory_gb(),
        gpu=gpu,
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version() if sys.version_info else "",
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        load_average=load_average(),
    )
