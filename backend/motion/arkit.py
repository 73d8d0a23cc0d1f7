"""ARKit-52 face-capture channels and the mapping from them onto the head model's parameters.

The stand-in head's expression basis is ARKit's 52 shapes under their own names (FLAME's is not:
its ``exp_000...`` need a custom mapping). A capture is *mapped* (each source channel adds
``gain * value`` to one target: an expression column or one axis-angle component of a joint), and
an export inverts that map as far as it is defined (see :func:`targets_to_sources`). The default
mapping is the identity onto the stand-in's shape keys, except the channels that turn a joint
(jawOpen, jawLeft/Right, eyeLook*: ``JOINT_CHANNELS``), which go to the jaw and eye joints so the
lower teeth, tongue and eyeballs follow. Pure numpy (scipy for the bounded least squares).

Sides: ARKit's "Left" is the subject's left, as our ``_L`` (+X is the subject's left).
Joint axes (head-model frame, +Y up, +Z out of the face): a positive rotation about X turns the
face (or chin, or gaze) down; a positive rotation about Y turns it towards +X (the subject's left).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..head.arkit_names import ARKIT_NAMES, JOINT_CHANNELS, LEGACY_TO_ARKIT
from ..head.model import JOINT_NAMES

#: Live Link Face's head and eye rotation columns (radians), after the 52 weights.
ANGLE_NAMES: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)
SOURCE_NAMES: tuple[str, ...] = ARKIT_NAMES + ANGLE_NAMES
MAPPING_FORMAT = "omg-arkit-mapping"


def canonical_name(name: str) -> str:
    """An ARKit name as spelled in our tables: Live Link Face writes ``EyeBlinkLeft``, ARKit and
    most tools ``eyeBlinkLeft``; both (any case) give the camelCase name. Other names unchanged."""
    key = name.strip().lower()
    for n in SOURCE_NAMES:
        if n.lower() == key:
            return n
    return name.strip()


def source_range(name: str) -> tuple[float, float]:
    """Valid values of a source channel: [0, 1] for blendshape weights, [-pi, pi] radians for the
    head/eye angles and any custom channel named in a mapping."""
    return (0.0, 1.0) if name in ARKIT_NAMES else (-float(np.pi), float(np.pi))


@dataclass(frozen=True)
class MapEntry:
    """One line of a mapping: target += gain * source. target: an expression name ("mouthSmileLeft") or
    a joint channel "<joint>.<x|y|z>" (axis-angle radians per unit of source)."""

    source: str
    target: str
    gain: float = 1.0


def default_mapping() -> list[MapEntry]:
    """ARKit-52 onto the stand-in: every shape onto the shape key of the same name, except the
    joint channels (JOINT_CHANNELS: jawOpen -> jaw.x 0.35 rad, jawLeft/Right -> jaw.y +-0.1,
    eyeLook* -> eye_L/eye_R .x +-0.35 / .y +-0.45 rad), and the head angles onto the neck. The
    eye-angle columns stay unmapped (the eyeLook* weights drive the eyes; mapping both would count
    the gaze twice)."""
    joint = {name: (j, axis, gain) for name, j, axis, gain in JOINT_CHANNELS}
    m: list[MapEntry] = []
    for name in ARKIT_NAMES:
        if name in joint:
            j, axis, gain = joint[name]
            m.append(MapEntry(name, f"{j}.{'xyz'[axis]}", gain))
        else:
            m.append(MapEntry(name, name))
    m += [MapEntry("HeadPitch", "neck.x"), MapEntry("HeadYaw", "neck.y"), MapEntry("HeadRoll", "neck.z")]
    return m


def joint_channel(target: str) -> tuple[int, int] | None:
    """(joint index, axis index) of a "<joint>.<x|y|z>" target, or None for an expression name."""
    joint, dot, axis = target.rpartition(".")
    if not dot or joint not in JOINT_NAMES or axis not in ("x", "y", "z"):
        return None
    return JOINT_NAMES.index(joint), "xyz".index(axis)


def upgrade_mapping(mapping: list[MapEntry], expr_names: list[str]) -> tuple[list[MapEntry], list[str]]:
    """A mapping saved for the stand-in's old 24 expressions (targets ``smile_L``, ``blink_R``, ...,
    in .blend tables and JSON files of 2026-11) carried over to the ARKit-52 shape keys by the one
    table that also converts old takes and avatars (head.arkit_names.LEGACY_TO_ARKIT): each old
    target becomes its nearest ARKit shapes, the gain times the table's weight (``lips_press`` ->
    mouthPressLeft and mouthPressRight). Only targets that are not already one of ``expr_names`` or a
    joint channel are converted, and only when ``expr_names`` hold the ARKit shapes (FLAME's
    ``exp_*`` have no such names); anything else stays as it was for :func:`check_mapping` to name.
    Returns the mapping and the old target names converted (empty: nothing to do)."""
    if not set(ARKIT_NAMES) <= set(expr_names):
        return list(mapping), []
    out: list[MapEntry] = []
    converted: list[str] = []
    for e in mapping:
        if e.target in expr_names or joint_channel(e.target) is not None or e.target not in LEGACY_TO_ARKIT:
            out.append(e)
            continue
        out += [MapEntry(e.source, new, e.gain * w) for new, w in LEGACY_TO_ARKIT[e.target]]
        if e.target not in converted:
            converted.append(e.target)
    return out, converted


def resolve_mapping(mapping: list[MapEntry], expr_names: list[str], path: str | Path | None = None,
                    ) -> list[MapEntry]:
    """The mapping a capture is keyed with: old stand-in targets converted (:func:`upgrade_mapping`),
    then checked (:func:`check_mapping`: InputError naming ``path`` on a target still unknown)."""
    mapping, _ = upgrade_mapping(mapping, expr_names)
    check_mapping(mapping, expr_names, path)
    return mapping


def check_mapping(mapping: list[MapEntry], expr_names: list[str], path: str | Path | None = None) -> None:
    """InputError (naming ``path``, the mapping's file) on a target that is neither one of
    ``expr_names`` nor a joint channel, or a non-finite gain."""
    for e in mapping:
        if joint_channel(e.target) is None and e.target not in expr_names:
            raise InputError(path, f"mapping {e.source} -> {e.target}: unknown target {e.target!r} (expected "
                                   f"one of the shape keys {', '.join(expr_names[:6])}, ... or a joint "
                                   f"channel such as jaw.x; joints {', '.join(JOINT_NAMES)})")
        if not np.isfinite(e.gain):
            raise InputError(path, f"mapping {e.source} -> {e.target}: gain {e.gain} is not a number")


def load_mapping(path: str | Path) -> list[MapEntry]:
    """Read a mapping JSON: {"format": "omg-arkit-mapping", "entries": [{"source", "target",
    "gain"}, ...]}. InputError names the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != MAPPING_FORMAT:
            raise ValueError(f"expected a JSON object with \"format\": \"{MAPPING_FORMAT}\"")
        out = [MapEntry(canonical_name(str(e["source"])), str(e["target"]).strip(), float(e.get("gain", 1.0)))
               for e in data["entries"]]
    except FileNotFoundError:
        raise InputError(path, "mapping file not found") from None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable mapping ({type(exc).__name__}: {str(exc)[:120]})") from None
    return out


def save_mapping(mapping: list[MapEntry], path: str | Path) -> None:
    """Write ``mapping`` as :func:`load_mapping` reads it (atomically)."""
    from ..output_safety import atomic_write_text

    entries = [{"source": e.source, "target": e.target, "gain": e.gain} for e in mapping]
    atomic_write_text(path, json.dumps({"format": MAPPING_FORMAT, "entries": entries}, indent=1) + "\n")


def sources_to_targets(values: np.ndarray, names: list[str], mapping: list[MapEntry], expr_names: list[str],
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Apply ``mapping`` to a capture. values: (T, C) float, column c named ``names[c]``.
    Returns expr (T, E) float32 in ``expr_names`` order, pose (T, 5, 3) float32 axis-angle radians,
    and the capture columns no mapping entry uses (dropped)."""
    T = values.shape[0]
    expr = np.zeros((T, len(expr_names)), np.float64)
    pose = np.zeros((T, len(JOINT_NAMES), 3), np.float64)
    col = {n: i for i, n in enumerate(names)}
    used: set[str] = set()
    for e in mapping:
        if e.source not in col:
            continue
        used.add(e.source)
        v = values[:, col[e.source]].astype(np.float64)
        jc = joint_channel(e.target)
        if jc is None:
            expr[:, expr_names.index(e.target)] += e.gain * v
        else:
            pose[:, jc[0], jc[1]] += e.gain * v
    return expr.astype(np.float32), pose.astype(np.float32), [n for n in names if n not in used]


def targets_to_sources(expr: np.ndarray, pose: np.ndarray, mapping: list[MapEntry], expr_names: list[str],
                       sources: tuple[str, ...] = SOURCE_NAMES) -> np.ndarray:
    """The inverse of :func:`sources_to_targets` as far as it is defined: per frame, the source values
    in their ranges (:func:`source_range`) that reproduce the mapped targets, the smallest such
    (a 1e-4 ridge) where several sources share a target. Lossy: unmapped sources come out 0, targets
    no source reaches are dropped, shares of a target are split evenly, and two sources of
    opposite gains on one joint axis (jawLeft / jawRight) come out as the one the sign says. expr (T, E), pose (T, 5, 3) -> (T, len(sources)) float32."""
    from scipy.optimize import lsq_linear

    T = expr.shape[0]
    tnames = sorted({e.target for e in mapping if e.source in sources})
    A = np.zeros((len(tnames), len(sources)))
    for e in mapping:
        if e.source in sources:
            A[tnames.index(e.target), sources.index(e.source)] += e.gain
    tv = np.zeros((T, len(tnames)))
    for k, t in enumerate(tnames):
        jc = joint_channel(t)
        tv[:, k] = expr[:, expr_names.index(t)] if jc is None else pose[:, jc[0], jc[1]]
    active = np.flatnonzero(np.abs(A).sum(0) > 0)
    out = np.zeros((T, len(sources)), np.float32)
    if active.size == 0:
        return out
    lo, hi = np.array([source_range(sources[i]) for i in active]).T
    ridge = 1e-4
    M = np.vstack([A[:, active], ridge * np.eye(active.size)])
    for t in range(T):   # one small bounded least squares per frame (C <= 61 unknowns)
        b = np.concatenate([tv[t], np.zeros(active.size)])
        out[t, active] = lsq_linear(M, b, bounds=(lo, hi), method="bvls").x
    return out
