"""Face-capture files: Live Link Face CSV, and plain CSV / JSON of ARKit weights per frame.

Live Link Face CSV (the iPhone app's take export)::

    Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,
    LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll
    14:51:03:07.443,61,0.1,...

Timecode is HH:MM:SS:FF.mmm: FF the frame within the second at the timecode rate, .mmm the
sub-frame in thousandths of a frame. Weights are in [0, 1], angles radians.
Plain CSV: an optional ``frame`` (integer) or ``time`` (seconds) column, then channel columns.
Plain JSON: {"fps": F, "names": [...], "weights": [[...], ...]} or {"fps": F, "frames": [{name: v}, ...]}.

All readers return a :class:`Capture` sampled on a uniform grid (rows that fall on it are kept
exactly; others are interpolated linearly in time). Pure numpy.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .arkit import ANGLE_NAMES, ARKIT_NAMES, canonical_name, source_range

TIMECODE_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 100.0, 120.0)
_TC = re.compile(r"^(\d+):(\d{2}):(\d{2})[:;](\d+)(?:\.(\d+))?$")


@dataclass
class Capture:
    """values: (T, C) float32, column c named ``names[c]`` (canonical ARKit names); fps: frames per
    second of the rows; start_seconds: time of row 0 (from the timecode; 0 when none); source:
    file name; resampled: True when rows were interpolated onto the uniform grid."""

    values: np.ndarray
    names: list[str]
    fps: float
    start_seconds: float = 0.0
    source: str = ""
    resampled: bool = False

    @property
    def n_frames(self) -> int:
        return int(self.values.shape[0])


def parse_timecode(text: str, rate: float) -> float:
    """Seconds of an HH:MM:SS:FF(.mmm) timecode at ``rate`` frames per second; ValueError if malformed."""
    m = _TC.match(text.strip())
    if not m:
        raise ValueError(f"timecode {text!r} is not HH:MM:SS:FF.mmm")
    h, mi, s, f = (int(g) for g in m.groups()[:4])
    sub = float("0." + m.group(5)) if m.group(5) else 0.0
    return h * 3600 + mi * 60 + s + (f + sub) / rate


def format_timecode(seconds: float, rate: float) -> str:
    """HH:MM:SS:FF.mmm of ``seconds`` at an integer timecode ``rate``."""
    total_frames = seconds * rate
    whole = int(np.floor(total_frames + 1e-6))
    sub = int(round((total_frames - whole) * 1000))
    if sub >= 1000:
        whole, sub = whole + 1, 0
    r = int(round(rate))
    f, s = whole % r, whole // r
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{f:02d}.{max(sub, 0):03d}"


def _bad(path: Path, msg: str) -> InputError:
    return InputError(path, msg)


def _numbers(path: Path, rows: list[list[str]], cols: list[int], names: list[str], first_line: int) -> np.ndarray:
    """(T, len(cols)) float64 of the given columns; InputError naming line and column on a non-number,
    NaN or a value outside the channel's range."""
    if not cols:
        raise _bad(path, "no weight or angle columns (only a time or frame column, or no names)")
    out = np.empty((len(rows), len(cols)), np.float64)
    for r, row in enumerate(rows):
        if len(row) < max(cols) + 1:
            raise _bad(path, f"line {first_line + r}: {len(row)} values, the header has more columns")
        for k, c in enumerate(cols):
            try:
                out[r, k] = float(row[c])
            except ValueError:
                raise _bad(path, f"line {first_line + r}, column {names[k]}: {row[c]!r} is not a number") from None
    bad = ~np.isfinite(out)
    if bad.any():
        r, k = np.argwhere(bad)[0]
        raise _bad(path, f"line {first_line + r}, column {names[k]}: value is {row_text(out[r, k])} (NaN or infinite)")
    lo, hi = np.array([source_range(n) for n in names]).T
    tol = 1e-6
    bad = (out < lo - tol) | (out > hi + tol)
    if bad.any():
        r, k = np.argwhere(bad)[0]
        raise _bad(path, f"line {first_line + r}, column {names[k]}: value {out[r, k]:g} is outside "
                         f"[{lo[k]:g}, {hi[k]:g}]")
    return np.clip(out, lo, hi)


def row_text(v: float) -> str:
    return "NaN" if np.isnan(v) else str(v)


def _uniform(path: Path, times: np.ndarray, values: np.ndarray, fps: float | None, what: str,
             first_line: int) -> tuple[np.ndarray, float, bool]:
    """Rows at ``times`` (seconds) on a uniform grid at ``fps`` (None: the rows' own median rate,
    snapped to a standard rate within 1%). InputError when the times do not increase."""
    dt = np.diff(times)
    if dt.size and (dt <= 0).any():
        r = int(np.flatnonzero(dt <= 0)[0]) + 1
        raise _bad(path, f"line {first_line + r}: {what} does not increase (row {r} is not after row {r - 1}); "
                         f"timecodes must be strictly increasing")
    if fps is None:
        if not dt.size:
            fps = 30.0
        else:
            fps = 1.0 / float(np.median(dt))
            near = min(TIMECODE_RATES, key=lambda r: abs(r - fps))
            fps = near if abs(near - fps) <= 0.01 * near else round(fps, 3)
    n = int(np.floor((times[-1] - times[0]) * fps + 1e-4)) + 1
    grid = times[0] + np.arange(n) / fps
    i1 = np.clip(np.searchsorted(times, grid, side="left"), 0, len(times) - 1)
    i0 = np.maximum(i1 - 1, 0)
    span = np.maximum(times[i1] - times[i0], 1e-12)
    u = np.clip((grid - times[i0]) / span, 0.0, 1.0)
    eps = 1e-6 * fps                                    # within a microsecond: that row, exactly
    on0, on1 = np.abs(grid - times[i0]) * fps < eps, np.abs(grid - times[i1]) * fps < eps
    u[on1] = 1.0
    u[on0] = 0.0
    out = (1 - u)[:, None] * values[i0] + u[:, None] * values[i1]
    exact = bool(np.all(on0 | on1)) and n == len(times)
    return out, float(fps), not exact


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InputError(path, "capture file not found")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(path, "not a text file (expected a Live Link Face CSV, or a CSV/JSON of "
                               "ARKit weights)") from None


def _check_names(path: Path, names: list[str], known: set[str]) -> None:
    for n in names:
        if n not in known:
            raise _bad(path, f"unknown column {n!r}: not an ARKit-52 name or head/eye angle (add it to a "
                             f"mapping with --mapping to use it)")
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise _bad(path, f"column {sorted(dup)[0]!r} appears twice")


def read_capture(path: str | Path, fps: float | None = None, timecode_fps: float | None = None,
                 extra_names: tuple[str, ...] = ()) -> Capture:
    """Read a capture file (kind chosen by content: a ``Timecode`` column = Live Link Face, a JSON
    object = plain JSON, else plain CSV). fps: the rows' rate (None = from their times; a plain CSV
    without times assumes 30); timecode_fps: Live Link Face's timecode rate (None = from the largest
    frame field when the take crosses a second, else 30); extra_names: custom channel names a
    mapping uses. InputError names the file and the problem."""
    path = Path(path)
    text = _read_text(path)
    known = set(ANGLE_NAMES) | set(ARKIT_NAMES) | set(extra_names)
    if text.lstrip().startswith("{"):
        return _read_json(path, text, fps, known)
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise _bad(path, "the file is empty")
    header = [canonical_name(h) for h in rows[0]]
    body = rows[1:]
    if not body:
        raise _bad(path, "the file has a header but no frames")
    low = [h.lower() for h in header]
    if "timecode" in low:
        return _read_llf(path, header, body, fps, timecode_fps, known)
    tcol = low.index("time") if "time" in low else (low.index("frame") if "frame" in low else None)
    names = [h for i, h in enumerate(header) if i != tcol]
    _check_names(path, names, known)
    cols = [i for i in range(len(header)) if i != tcol]
    vals = _numbers(path, body, cols, names, 2)
    if tcol is None:
        return Capture(vals.astype(np.float32), names, float(fps or 30.0), 0.0, path.name)
    t = _numbers_plain(path, body, tcol, header[tcol])
    if low[tcol] == "frame":
        t = t / float(fps or 30.0)
    rate_in = fps if low[tcol] == "time" else float(fps or 30.0)
    out, rate, res = _uniform(path, t, vals, rate_in, header[tcol], 2)
    return Capture(out.astype(np.float32), names, rate, float(t[0]), path.name, res)


def _numbers_plain(path: Path, rows: list[list[str]], col: int, name: str) -> np.ndarray:
    try:
        t = np.array([float(r[col]) for r in rows])
    except (ValueError, IndexError):
        raise _bad(path, f"column {name}: not all values are numbers") from None
    if not np.isfinite(t).all():
        raise _bad(path, f"column {name}: NaN or infinite value")
    return t


def _read_llf(path: Path, header: list[str], body: list[list[str]], fps: float | None,
              timecode_fps: float | None, known: set[str]) -> Capture:
    low = [h.lower() for h in header]
    missing = [n for n in ("Timecode", "BlendShapeCount", *ARKIT_NAMES) if n.lower() not in low]
    if missing:
        raise _bad(path, f"Live Link Face CSV without the column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    tc, bc = low.index("timecode"), low.index("blendshapecount")
    names = [h for i, h in enumerate(header) if i not in (tc, bc)]
    _check_names(path, names, known)
    cols = [i for i in range(len(header)) if i not in (tc, bc)]
    vals = _numbers(path, body, cols, names, 2)
    stamps = [r[tc] if len(r) > tc else "" for r in body]
    fields = []
    for r, s in enumerate(stamps):
        m = _TC.match(s.strip())
        if not m:
            raise _bad(path, f"line {r + 2}: timecode {s!r} is not HH:MM:SS:FF.mmm")
        fields.append(int(m.group(4)))
    if timecode_fps is None:
        secs = [s.strip().rsplit(":", 1)[0] for s in stamps]
        crosses = len(set(secs)) > 1
        top = max(fields)
        timecode_fps = next((r for r in TIMECODE_RATES if r > top), float(top + 1)) if crosses else 30.0
        if not crosses and top >= 30:
            timecode_fps = next((r for r in TIMECODE_RATES if r > top), float(top + 1))
    if max(fields) >= timecode_fps:
        raise _bad(path, f"timecode frame {max(fields)} is not below the timecode rate {timecode_fps:g}")
    t = np.array([parse_timecode(s, timecode_fps) for s in stamps])
    out, rate, res = _uniform(path, t, vals, fps, "the timecode", 2)
    return Capture(out.astype(np.float32), names, rate, float(t[0]), path.name, res)


def _read_json(path: Path, text: str, fps: float | None, known: set[str]) -> Capture:
    try:
        data = json.loads(text)
        rate = float(data.get("fps", fps or 30.0)) if fps is None else float(fps)
        if "weights" in data:
            names = [canonical_name(str(n)) for n in data["names"]]
            rows = [[str(v) for v in row] for row in data["weights"]]
            short = [i for i, row in enumerate(data["weights"]) if len(row) != len(names)]
            if short:
                raise _bad(path, f"frame {short[0]}: {len(data['weights'][short[0]])} weights for "
                                 f"{len(names)} names")
        else:
            frames = data["frames"]
            names = []
            for f in frames:
                names += [canonical_name(k) for k in f if canonical_name(k) not in names]
            keyed = [{canonical_name(k): v for k, v in f.items()} for f in frames]
            missing = [(i, n) for i, f in enumerate(keyed) for n in names if n not in f]
            if missing:
                i, n = missing[0]
                raise _bad(path, f"frame {i}: missing column {n!r} (every frame needs the same names)")
            rows = [[str(f[n]) for n in names] for f in keyed]
    except InputError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _bad(path, f"not a capture JSON ({type(exc).__name__}: {str(exc)[:100]}); expected "
                         "{\"fps\": F, \"names\": [...], \"weights\": [[...]]}") from None
    if not rows:
        raise _bad(path, "the capture has no frames")
    if not rate > 0:
        raise _bad(path, f"fps {rate:g} must be positive")
    _check_names(path, names, known)
    vals = _numbers(path, rows, list(range(len(names))), names, 0)
    return Capture(vals.astype(np.float32), names, rate, 0.0, path.name)


def write_llf_csv(path: str | Path, values: np.ndarray, names: list[str], fps: float,
                  start_seconds: float = 0.0) -> None:
    """Write a Live Link Face CSV: the 52 weights and 9 angles (columns of ``values`` (T, C) named
    ``names``; absent ones written as 0), timecodes from ``start_seconds`` at ``fps`` with the
    timecode rate round(fps). Atomic."""
    from ..output_safety import atomic_write_text

    llf = [n[0].upper() + n[1:] for n in ARKIT_NAMES] + list(ANGLE_NAMES)
    full = np.zeros((values.shape[0], len(ARKIT_NAMES) + len(ANGLE_NAMES)), np.float64)
    order = list(ARKIT_NAMES) + list(ANGLE_NAMES)
    for c, n in enumerate(names):
        if n in order:
            full[:, order.index(n)] = values[:, c]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Timecode", "BlendShapeCount", *llf])
    rate = float(max(round(fps), 1))
    for t in range(full.shape[0]):
        tc = format_timecode(start_seconds + t / fps, rate)
        w.writerow([tc, len(llf), *(f"{v:.6f}" for v in full[t])])
    atomic_write_text(path, buf.getvalue())
