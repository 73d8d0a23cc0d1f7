"""The repository root is the extension package: the Blender wing imports from the tree itself.

Blender imports the extension as ``bl_ext.<repo>.omg_avatar``; a checkout must work the same way
with nothing staged, so IDEs, linters and import-graph tools see one connected package.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import build_addon

ROOT = Path(__file__).resolve().parent.parent
WING = ("omg_blender_addon", "operators", "panels")

# Imports every module of the wing as <package>.<sub>.<module>, then registers and unregisters the
# add-on's classes with bpy (Blender as a module) and reports what it saw.
CHILD = """
import importlib, json, pkgutil, sys
import bpy
pkg = importlib.import_module(PKG)
mods = []
for sub in WING:
    sub_pkg = importlib.import_module(PKG + "." + sub)
    for info in pkgutil.iter_modules(sub_pkg.__path__):
        mods.append(importlib.import_module(f"{PKG}.{sub}.{info.name}").__name__)
pkg.register()
registered = hasattr(bpy.types, "OMG_AVATAR_PT_build") and hasattr(bpy.types, "OMG_AVATAR_OT_build_from_photo")
pkg.unregister()
print(json.dumps({"mods": mods, "registered": registered, "after": hasattr(bpy.types, "OMG_AVATAR_PT_build"),
                  "top_level_backend": "backend" in sys.modules,
                  "backend_file": sys.modules[PKG + ".backend"].__file__}))
"""


def _package_dir(tmp_path: Path) -> tuple[Path, str]:
    """(cwd, package name): the repository's parent directory when the checkout's folder name is a
    Python identifier, else a temporary folder holding a link named ``omg_avatar`` to the checkout."""
    if ROOT.name.isidentifier():
        return ROOT.parent, ROOT.name
    (tmp_path / "omg_avatar").symlink_to(ROOT, target_is_directory=True)
    return tmp_path, "omg_avatar"


def test_wing_imports_and_registers_from_the_tree(tmp_path: Path) -> None:
    cwd, name = _package_dir(tmp_path)
    code = f"PKG = {name!r}\nWING = {WING!r}\n" + CHILD
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = sorted(f"{name}.{sub}.{p.stem}" for sub in WING for p in (ROOT / sub).glob("*.py")
                      if p.stem != "__init__")
    assert sorted(out["mods"]) == expected
    assert out["registered"] and not out["after"]
    # The wing reaches the backend relatively, inside the package, never as a top-level ``backend``.
    assert not out["top_level_backend"]
    assert Path(out["backend_file"]).resolve() == (ROOT / "backend" / "__init__.py").resolve()


def test_load_tree_names_the_package_like_blender() -> None:
    pkg = build_addon.load_tree("omg_avatar_tree_test")
    try:
        import importlib

        axes = importlib.import_module("omg_avatar_tree_test.omg_blender_addon.axes")
        assert axes.__name__ == "omg_avatar_tree_test.omg_blender_addon.axes"
        assert Path(axes.__file__).resolve() == (ROOT / "omg_blender_addon" / "axes.py").resolve()
        assert callable(pkg.register) and callable(pkg.unregister)
    finally:
        for mod in [m for m in sys.modules if m == "omg_avatar_tree_test" or m.startswith("omg_avatar_tree_test.")]:
            del sys.modules[mod]


def test_staged_package_is_the_tree(tmp_path: Path) -> None:
    staged = build_addon.stage(tmp_path / "omg_avatar", [], None)
    assert (staged / "__init__.py").read_bytes() == (ROOT / "__init__.py").read_bytes()
    for package in build_addon.PACKAGES:
        tree = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*.py"))
        copy = sorted(p.relative_to(staged).as_posix() for p in (staged / package).rglob("*.py"))
        assert copy == tree
