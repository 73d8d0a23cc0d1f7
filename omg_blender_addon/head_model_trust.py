"""Which head-model files the add-on may open: only those this Blender session chose.

A .blend stores each avatar's head-model path (``Object.omg_avatar.head_model_path``), and a .blend
can come from anyone. Opening whatever path it names would let a shared file make the preview and
retarget operators read an arbitrary file of ours (a pickle loader among them for FLAME .pkl). So a
recorded path is opened only when this session chose it: it is the add-on preferences' FLAME path,
or it was set in this session (the build writes it, the user edits it; the property's update
records it through ``remember``). Loading a .blend sets properties without update callbacks, so
a path that came in with a file stays untrusted until the user chooses it again; the operators
then use the bundled stand-in and say so (``refused_message``). No bpy here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_CHOSEN: set[str] = set()  # normalised absolute paths chosen in this session


def _key(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


def remember(path: str | None) -> None:
    """Record ``path`` (absolute) as chosen in this session (empty: nothing)."""
    if path:
        _CHOSEN.add(_key(path))


def forget_all() -> None:
    """Forget the session's choices (add-on unregister)."""
    _CHOSEN.clear()


@dataclass(frozen=True)
class HeadModelChoice:
    """path: the head model to open (None: the bundled stand-in); refused: the recorded path that
    was not opened because this session did not choose it (None when nothing was refused)."""

    path: str | None
    refused: str | None = None


def resolve(recorded: str | None, preferences_path: str | None) -> HeadModelChoice:
    """The head model to open for an avatar whose scene records ``recorded`` (absolute path or
    empty), given the preferences' FLAME path (absolute or empty)."""
    if not recorded:
        return HeadModelChoice(None)
    key = _key(recorded)
    if (preferences_path and key == _key(preferences_path)) or key in _CHOSEN:
        return HeadModelChoice(recorded)
    return HeadModelChoice(None, recorded)


def refused_message(path: str) -> str:
    return (f"{path}: head model recorded in the .blend, not chosen in this session; using the bundled "
            f"stand-in (set it as the FLAME model in the add-on preferences, or choose it again in the "
            f"avatar's Head model path, to use it)")
