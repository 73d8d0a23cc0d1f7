"""Writes the ``--json PATH`` figures files that every measuring subcommand produces."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    return value


def write_json(path: str | Path | None, figures: dict[str, Any]) -> None:
    """Write ``figures`` as pretty JSON (numpy values converted; NaN/inf become null)."""
    if path is None:
        return
    from .output_safety import atomic_write_text

    atomic_write_text(path, json.dumps(_plain(figures), indent=2, sort_keys=True) + "\n")
