"""The files a diagnostic's ``prepare`` keeps for one clip, and reading them back.

scripts/mouth_reenactment.py and scripts/akd_diagnosis.py build a clip's avatar once and keep it in
their ``--work`` folder as ``<clip>.omgavatar`` (read with ``load_avatar``) beside ``<clip>.npz``
(plain arrays, read without pickle), so later ``score`` runs compare variants on the same avatar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def prepared_files(work: Path, clip: str) -> tuple[Path, Path]:
    """The avatar file and the arrays file that ``prepare`` writes for ``clip`` in ``work``."""
    return work / f"{clip}.omgavatar", work / f"{clip}.npz"


def claim_prepared_files(work: Path, clip: str, force: bool) -> tuple[Path, Path]:
    """prepared_files(work, clip), refused (SystemExit naming the file) where one exists already and
    ``force`` is off: a prepare never overwrites an earlier one's files unasked."""
    files = prepared_files(work, clip)
    taken = [p for p in files if p.exists()]
    if taken and not force:
        raise SystemExit(f"{taken[0]}: exists (an earlier prepare?); pass --force to replace it")
    return files


def load_prepared(work: Path, clip: str) -> tuple[Any, Any, dict[str, np.ndarray]]:
    """-> (GaussianAvatar, its HeadModel, {name: array} of the .npz) kept by ``prepare``."""
    from backend.avatar.fileformat import load_avatar
    from backend.head.loader import load_model_for_avatar

    avatar_file, arrays_file = prepared_files(work, clip)
    avatar = load_avatar(avatar_file)
    model = load_model_for_avatar(avatar_file, avatar.head_model_name, avatar.head_model_path)
    with np.load(arrays_file, allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    return avatar, model, arrays
