"""Figure records: one JSON file per measuring run, holding what was run, when, where and what came out.

A record is the only source of a number in docs/figures and docs/report: pages are rendered from
records (``backend.figures.pages``), never typed by hand. Layout of a record file::

    {
      "command": "python -m backend bench splat --size 512 --json {json}",
      "date": "2026-12-01T15:20:03Z",          # UTC start of the run, or "unknown"
      "commit": "58100bd...",                  # git HEAD of the run, or "unknown"
      "dirty": false,                          # tracked files differed from HEAD (null: unknown)
      "machine": {"cpu": ..., "cores": ..., "load_average": [1, 5, 15 min] | "unknown",
                  "load_average_end": [...] | "unknown", "gpu": "NVIDIA ..." | null | "unknown", ...},
      "note": "how the record was made when it was not written by `figures record`",
      "figures": { ... the command's own --json output ... }
    }

Fields that were not captured are the string ``"unknown"``, never a guess.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

UNKNOWN = "unknown"
REQUIRED = ("command", "date", "commit", "machine", "figures")
MACHINE_FIELDS = ("cpu", "cores", "load_average", "gpu")
NAME_RE = re.compile(r"^[a-z0-9_]+$")


@dataclass
class FigureRecord:
    """One measuring run. ``figures`` is the command's JSON output, kept as the command wrote it."""

    command: str
    date: str                                   # "YYYY-MM-DDTHH:MM:SSZ" (UTC) or "unknown"
    commit: str                                 # 40-hex git commit or "unknown"
    machine: dict[str, Any]                     # cpu, cores, load_average, gpu (+ optional extras)
    figures: Any
    dirty: bool | None = None                   # uncommitted changes to tracked files at run time
    note: str = ""                              # provenance when not written by `figures record`
    extra: dict[str, Any] = field(default_factory=dict)  # further top-level keys, kept verbatim

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"command": self.command, "date": self.date, "commit": self.commit,
                             "dirty": self.dirty, "machine": self.machine}
        if self.note:
            d["note"] = self.note
        d.update(self.extra)
        d["figures"] = self.figures
        return d


def _clean(x: Any) -> Any:
    """NaN/inf -> None and tuples -> lists, so the file is strict JSON and round-trips unchanged."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def dumps(record: FigureRecord) -> str:
    """Deterministic text of a record: 1-space indent, keys in the order above, trailing newline."""
    return json.dumps(_clean(record.as_dict()), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def write_record(path: str | Path, record: FigureRecord) -> Path:
    """Write ``record`` to ``path`` (a ``.json`` under a records folder); returns the path."""
    from ..output_safety import atomic_write_text, check_output_file

    path = Path(path)
    validate(record.as_dict(), path)
    check_output_file(path, suffixes=(".json",), what="figure record")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, dumps(record))


def validate(d: Any, path: Path) -> None:
    """Raise InputError naming ``path`` when ``d`` is not a record."""
    if not isinstance(d, dict):
        raise InputError(path, "a figure record must be a JSON object")
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise InputError(path, f"figure record lacks {', '.join(missing)}")
    for k in ("command", "date", "commit"):
        if not isinstance(d[k], str) or not d[k]:
            raise InputError(path, f"figure record field '{k}' must be a non-empty string ('unknown' if not known)")
    if d["date"] != UNKNOWN and not re.match(r"^\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d)?Z)?$", d["date"]):
        raise InputError(path, f"figure record date {d['date']!r} is not YYYY-MM-DD[THH:MM[:SS]Z] (UTC) or 'unknown'")
    m = d["machine"]
    if not isinstance(m, dict):
        raise InputError(path, "figure record field 'machine' must be an object")
    missing = [k for k in MACHINE_FIELDS if k not in m]
    if missing:
        raise InputError(path, f"figure record machine lacks {', '.join(missing)} (write 'unknown' if not known)")


def read_record(path: str | Path) -> FigureRecord:
    """Load and check one record file."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(path, f"cannot read figure record ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    validate(d, path)
    known = {"command", "date", "commit", "dirty", "machine", "note", "figures"}
    return FigureRecord(command=d["command"], date=d["date"], commit=d["commit"], machine=d["machine"],
                        figures=d["figures"], dirty=d.get("dirty"), note=d.get("note", ""),
                        extra={k: v for k, v in d.items() if k not in known})


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def git_state(repo: str | Path | None = None) -> tuple[str, bool | None]:
    """(HEAD commit, tracked files modified?) of the repository around ``repo``; 'unknown' outside git."""
    cwd = str(repo) if repo is not None else str(Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN, None
    return head or UNKNOWN, bool(status.strip())
