"""The built zip installs into Blender 5.0.1 (bpy module, headless) and works on its bundled wheels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from isolated_blender import run_isolated

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parents[2]

INSTALL = """
import time
t0 = time.perf_counter()
res = bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default", enable_on_install=True)
RESULT["install"] = sorted(res)
RESULT["install_seconds"] = time.perf_counter() - t0
"""


def _script(body: str, zip_path: Path) -> str:
    return f"ZIP = {str(zip_path)!r}\n" + INSTALL + body + "\nemit()\n"


def test_zip_installs_enables_and_runs_bundled_torch(addon_zip: Path, tmp_path: Path) -> None:
    body = """
import addon_utils
pkg = "bl_ext.user_default.omg_avatar"
RESULT["enabled"] = pkg in bpy.context.preferences.addons
RESULT["ops"] = sorted(dir(bpy.ops.omg_avatar))
RESULT["panels"] = sorted(n for n in dir(bpy.types) if n.startswith("OMG_AVATAR_PT_"))
prefs = bpy.context.preferences.addons[pkg].preferences
RESULT["prefs"] = [prefs.flame_path, prefs.checkpoint_path, prefs.dinov2_path, prefs.device]
RESULT["check"] = sorted(bpy.ops.omg_avatar.check_backend())
RESULT["report"] = dict(bpy.context.window_manager["omg_avatar_backend_report"])
import torch
RESULT["torch_file"] = torch.__file__
RESULT["matmul"] = float((torch.ones(2, 3) @ torch.ones(3, 4)).sum())
# Disabling unregisters every class; re-enabling registers them again.
addon_utils.disable(pkg, default_set=True)
RESULT["ops_after_disable"] = hasattr(bpy.types, "OMG_AVATAR_PT_build")
addon_utils.enable(pkg, default_set=True)
RESULT["panels_after_enable"] = hasattr(bpy.types, "OMG_AVATAR_PT_build")
"""
    child = run_isolated(_script(body, addon_zip), tmp_path)
    assert child.returncode == 0, child.stderr[-4000:]
    r = child.result
    assert r["install"] == ["FINISHED"]
    assert r["enabled"]
    assert "check_backend" in r["ops"]
    assert set(r["panels"]) >= {"OMG_AVATAR_PT_build", "OMG_AVATAR_PT_lod", "OMG_AVATAR_PT_retarget",
                                "OMG_AVATAR_PT_preview"}
    assert r["prefs"] == ["", "", "", "auto"]
    assert r["check"] == ["FINISHED"]
    # torch comes from the extension's own wheels, not from the development venv.
    user = str(tmp_path / "blender-user")
    assert r["torch_file"].startswith(user) and r["report"]["torch_path"].startswith(user)
    assert r["report"]["torch"].startswith("2.13.0")
    assert r["matmul"] == 24.0
    assert r["ops_after_disable"] is False
    assert r["panels_after_enable"] is True
    assert "Traceback" not in child.stderr
    print(f"install took {r['install_seconds']:.1f} s; zip {addon_zip.stat().st_size / 1e6:.0f} MB")


def test_reinstall_over_existing_install(addon_zip: Path, tmp_path: Path) -> None:
    body = """
res = bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default", enable_on_install=True)
RESULT["reinstall"] = sorted(res)
RESULT["enabled"] = "bl_ext.user_default.omg_avatar" in bpy.context.preferences.addons
RESULT["check"] = sorted(bpy.ops.omg_avatar.check_backend())
"""
    child = run_isolated(_script(body, addon_zip), tmp_path)
    assert child.returncode == 0, child.stderr[-4000:]
    assert child.result["reinstall"] == ["FINISHED"]
    assert child.result["enabled"] and child.result["check"] == ["FINISHED"]


def test_manifest_passes_blenders_validator(addon_zip: Path) -> None:
    import build_addon

    tool = build_addon.blender_ext_tool()
    proc = subprocess.run([sys.executable, str(tool), "validate", str(addon_zip)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # And a broken manifest is rejected by the same validator (the check is not vacuous).
    staged = build_addon.stage(addon_zip.parent.parent / "build" / "stage" / "invalid" / "omg_avatar", [], None)
    manifest = staged / "blender_manifest.toml"
    manifest.write_text(manifest.read_text().replace('id = "omg_avatar"', 'id = "omg avatar!"'))
    bad = subprocess.run([sys.executable, str(tool), "validate", str(staged)], capture_output=True, text=True)
    assert bad.returncode != 0
