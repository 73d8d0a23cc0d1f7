"""A head-model path saved in a .blend is opened only when this session chose it (issue 15).

The rule itself (head_model_trust.resolve) is checked in-process; the child process checks it end
to end with the installed extension: a path set in the session is used, the same path read back
from a saved .blend in a fresh add-on session is refused (Render Preview falls back to the
stand-in, warns, and never opens the file), and choosing it again or setting it as the
preferences' FLAME model makes it used again.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from isolated_blender import installed_script, run_isolated

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "preview"))
from synthetic import astronaut_avatar, same_standin  # noqa: E402

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def trust():
    import build_addon

    build_addon.load_tree("omg_avatar")
    return importlib.import_module("omg_avatar.omg_blender_addon.head_model_trust")


def test_only_paths_chosen_in_this_session_are_opened(trust, tmp_path: Path) -> None:
    trust.forget_all()
    a, b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    assert trust.resolve(None, None) == trust.HeadModelChoice(None)
    assert trust.resolve(a, None) == trust.HeadModelChoice(None, a)   # recorded in a file: refused
    assert trust.resolve(a, a) == trust.HeadModelChoice(a)            # the preferences' FLAME model
    assert trust.resolve(a, b).path is None
    trust.remember(a)
    assert trust.resolve(a, None) == trust.HeadModelChoice(a)
    assert trust.resolve(str(tmp_path / "sub" / ".." / "a.npz"), None).path is not None  # same file
    assert trust.resolve(b, None).refused == b
    trust.forget_all()
    assert trust.resolve(a, None).path is None
    assert "stand-in" in trust.refused_message(a) and a in trust.refused_message(a)


SCRIPT = """
import addon_utils
scene_read = mod("omg_blender_addon.scene_read")
avatar, model, rig = avatar_rig(AVATAR, "Astro")
rig_name = rig.name
rig.omg_avatar.head_model_path = DECOY  # set in this session: trusted
RESULT["session"] = scene_read.read_rig(rig).head_model_path
bpy.ops.wm.save_as_mainfile(filepath=BLEND)

# a new add-on session opens the .blend (disabling the add-on forgets the session's choices)
addon_utils.disable(pkg)
bpy.ops.wm.read_homefile(use_empty=True)
addon_utils.enable(pkg)
scene_read = mod("omg_blender_addon.scene_read")
bpy.ops.wm.open_mainfile(filepath=BLEND)
rig = bpy.data.objects[rig_name]
info = scene_read.read_rig(rig)
RESULT["reopened"] = [rig.omg_avatar.head_model_path, info.head_model_path, info.head_model_refused]
RESULT["preview"] = sorted(bpy.ops.omg_avatar.render_preview(avatar="Astro", frame_start=1, frame_end=1,
                           camera="SOURCE", resolution=(32, 32), filepath=OUT + "/refused"))
RESULT["preview_pngs"] = len(dict(bpy.context.window_manager["omg_avatar_preview_report"])["pngs"])

# chosen again by the user: now it is opened (and, not being a head model, refused with its name)
rig.omg_avatar.head_model_path = DECOY
def preview(tag):
    try:
        return sorted(bpy.ops.omg_avatar.render_preview(avatar="Astro", frame_start=1, frame_end=1,
                      camera="SOURCE", resolution=(32, 32), filepath=OUT + "/" + tag))
    except RuntimeError as exc:
        return str(exc)
RESULT["chosen"] = preview("chosen")

# or set as the preferences' FLAME model
addon_utils.disable(pkg)
addon_utils.enable(pkg)
bpy.ops.wm.open_mainfile(filepath=BLEND)
scene_read = mod("omg_blender_addon.scene_read")
RESULT["reopened_again"] = scene_read.read_rig(bpy.data.objects[rig_name]).head_model_path
bpy.context.preferences.addons[pkg].preferences.flame_path = DECOY
RESULT["prefs"] = scene_read.read_rig(bpy.data.objects[rig_name]).head_model_path
"""


def test_a_head_model_path_from_a_blend_is_not_opened(addon_zip: Path, tmp_path: Path) -> None:
    _, _, avatar_path = astronaut_avatar(tmp_path)
    decoy = tmp_path / "someone_elses.npz"
    decoy.write_bytes(b"not a head model: opening it makes the preview fail")
    script = installed_script(addon_zip, SCRIPT, same_standin(), AVATAR=str(avatar_path), DECOY=str(decoy),
                              BLEND=str(tmp_path / "shared.blend"), OUT=str(tmp_path))
    child = run_isolated(script, tmp_path, timeout=600)
    assert child.returncode == 0, child.stderr[-4000:]
    r = child.result
    assert r["install"] == ["FINISHED"]
    assert r["session"] == str(decoy)
    recorded, used, refused = r["reopened"]
    assert recorded == str(decoy) and used is None and refused == str(decoy)
    assert r["preview"] == ["FINISHED"] and r["preview_pngs"] == 1     # the stand-in rendered it
    assert "not chosen in this session" in child.stdout + child.stderr  # the operator's warning
    assert isinstance(r["chosen"], str) and "someone_elses.npz" in r["chosen"]  # opened once chosen
    assert r["reopened_again"] is None
    assert r["prefs"] == str(decoy)
