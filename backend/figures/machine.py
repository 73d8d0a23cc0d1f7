"""The machine part of a figure record: CPU, cores, load average, GPU (+ memory, OS, versions)."""

from __future__ import annotations

from typing import Any

from ..machine import load_average, machine_info


def machine_record() -> dict[str, Any]:
    """This machine now, as a record's ``machine`` object. ``load_average`` = 1/5/15-min load at the
    call (the machine is shared: a high load makes wall times upper bounds)."""
    m = machine_info()
    return {
        "cpu": m.cpu_model,
        "cores": m.usable_cores,
        "logical_cores": m.logical_cores,
        "load_average": list(m.load_average) if m.load_average else "unknown",
        "gpu": m.gpu,
        "memory_gb": round(m.memory_gb, 1) if m.memory_gb else "unknown",
        "os": m.os,
        "python": m.python,
        "torch": m.torch,
    }


def end_load() -> list[float] | str:
    """The load average when a run ended (stored as ``machine.load_average_end``)."""
    la = load_average()
    return list(la) if la else "unknown"


def describe(machine: dict[str, Any]) -> str:
    """One line for a page: 'AMD EPYC, 2 cores, load average 1.1 / 0.9 / 0.7 (end 1.9 / ...), no GPU'."""
    def load(v: Any) -> str:
        if isinstance(v, (list, tuple)) and v:
            return " / ".join(f"{float(x):.2f}" for x in v)
        return "unknown"

    cpu, cores = machine.get("cpu", "unknown"), machine.get("cores", "unknown")
    parts = ["CPU unknown" if cpu == "unknown" else str(cpu),
             "cores unknown" if cores == "unknown" else f"{cores} cores"]
    la = f"load average {load(machine.get('load_average'))}"
    if "load_average_end" in machine:
        la += f" (at the end {load(machine.get('load_average_end'))})"
    parts.append(la)
    gpu = machine.get("gpu")
    parts.append("no GPU" if gpu is None else "GPU unknown" if gpu == "unknown" else f"GPU {gpu}")
    return ", ".join(parts)
