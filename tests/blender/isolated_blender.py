"""Run a script in a fresh Python with bpy (Blender as a module) but none of the dev venv's other packages.

The add-on must run on what its zip bundles, so the child process sees only bpy and numpy (which
Blender itself ships) from the venv, plus an empty temporary BLENDER_USER_RESOURCES so nothing
touches a user's Blender config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy

_SITE = Path(numpy.__file__).resolve().parent.parent
# Blender as a module plus what Blender bundles itself.
_VISIBLE = ("bpy", "numpy", "numpy.libs")

PRELUDE = """
import json, os, sys
sys.path[:0] = [os.environ["OMG_TEST_SITE"]]
import bpy
RESULT = {}
def emit():
    sys.stdout.write("\\n@@RESULT@@" + json.dumps(RESULT) + "\\n")
    sys.stdout.flush()
"""


@dataclass
class ChildResult:
    returncode: int
    stdout: str
    stderr: str
    result: dict


def make_site(tmp: Path) -> Path:
    """A folder that exposes only bpy and numpy from the venv's site-packages (symlinks)."""
    site = tmp / "visible-site"
    site.mkdir(parents=True, exist_ok=True)
    for name in _VISIBLE:
        src = _SITE / name
        if src.exists() and not (site / name).exists():
            (site / name).symlink_to(src)
    return site


def run_isolated(script: str, tmp: Path, timeout: float = 900, resources: Path | None = None) -> ChildResult:
    """Run ``script`` (after PRELUDE: bpy imported, RESULT dict, emit()) in an isolated Python."""
    resources = resources or (tmp / "blender-user")
    resources.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "BLENDER_USER_RESOURCES": str(resources),
        "OMG_TEST_SITE": str(make_site(tmp)),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    code = PRELUDE + textwrap.dedent(script)
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=tmp)
    result: dict = {}
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            result = json.loads(line[len("@@RESULT@@"):])
    return ChildResult(proc.returncode, proc.stdout, proc.stderr, result)
