"""Run a script in a fresh Python with bpy (Blender as a module) but none of the dev venv's other packages.

The add-on must run on what its zip bundles, so the child process sees only bpy and numpy (which
Blender itself ships) from the venv, plus an empty temporary BLENDER_USER_RESOURCES so nothing
touches a user's Blender config.
"""

from __future__ import annotations

import json
import os
import shutil
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


# Installs the built zip (ZIP) and enables it; then ``mod("omg_blender_addon.scene_write")`` imports
# a module of the installed extension and ``avatar_rig(path, name)`` loads a .omgavatar with the
# stand-in head model and puts it in the scene: (GaussianAvatar, HeadModel, rig object).
INSTALL = """
import importlib, math, time
INSTALL_T0 = time.perf_counter()
res = bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default", enable_on_install=True)
RESULT["install"] = sorted(res)
RESULT["install_seconds"] = time.perf_counter() - INSTALL_T0
pkg = "bl_ext.user_default.omg_avatar"
mod = lambda name: importlib.import_module(pkg + "." + name)
scene_write, scene_data = mod("omg_blender_addon.scene_write"), mod("omg_blender_addon.scene_data")
def avatar_rig(path, name):
    avatar = mod("backend.avatar").load_avatar(path)
    model = mod("backend.head.loader").load_head_model(None)
    return avatar, model, scene_write.create_avatar(bpy.context, scene_data.scene_data(avatar, model, name))
"""


def installed_script(zip_path: Path, body: str, prefix: str = "", **values) -> str:
    """A child script: ``ZIP`` and every keyword as a constant, ``prefix`` (code), INSTALL, ``body``,
    then emit()."""
    consts = f"ZIP = {str(zip_path)!r}\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())
    return consts + prefix + INSTALL + textwrap.dedent(body) + "\nemit()\n"


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


def drop_installed_extensions(resources: Path) -> None:
    """Delete what installing the extension put under ``resources`` (about 2 GB: its wheels and the
    site-packages unpacked from them), so that a suite run does not fill the disk (eight installs are
    16 GB, and pytest keeps the temporary folders of several runs)."""
    shutil.rmtree(resources / "extensions", ignore_errors=True)


def run_isolated(script: str, tmp: Path, timeout: float = 900, resources: Path | None = None,
                 keep_install: bool = False) -> ChildResult:
    """Run ``script`` (after PRELUDE: bpy imported, RESULT dict, emit()) in an isolated Python.

    The installed extension is deleted when the child ends unless ``keep_install`` (a later child
    that reopens a saved .blend needs it); files the script wrote elsewhere under ``tmp`` stay."""
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
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=tmp)
    finally:
        if not keep_install:
            drop_installed_extensions(resources)
    result: dict = {}
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            result = json.loads(line[len("@@RESULT@@"):])
    return ChildResult(proc.returncode, proc.stdout, proc.stderr, result)
