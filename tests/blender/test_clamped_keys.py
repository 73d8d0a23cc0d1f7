"""The parts' clamped shape keys (SkinnedPart.clamped: ``max(e - start, 0) * delta``) in Blender,
with the INSTALLED extension (bpy headless): the astronaut avatar (its mouth parts carry the
funnel's and the lower lip's extra jaw drop beyond the photo's own values) is put in the scene; each
clamped key is a shape key on the Gaussian LOD driven by ``max(head - start, 0)`` of its
expression's head key, a simple expression (no Python: it runs with auto-run off). With the rig at
the photo's pose and the expressions set below, at and above the photo's values, the evaluated
part points equal the backend's posing (1e-5 m), the clamped keys stay at 0 at and below their
start, and reading the scene back (what previews render) keeps them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from isolated_blender import installed_script, run_isolated

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "preview"))
from synthetic import astronaut_avatar, same_standin  # noqa: E402

pytestmark = [pytest.mark.blender, pytest.mark.slow]

SCRIPT = """
import dataclasses
import numpy as np
avatar, model, rig = avatar_rig(AVATAR, "Astro")
posing, axes = mod("backend.avatar.posing"), mod("omg_blender_addon.axes")
HP = mod("backend.head.params").HeadParams
ply_io, scene_read = mod("omg_blender_addon.ply_io"), mod("omg_blender_addon.scene_read")
lod = scene_write.lod_objects(rig)[0]
keys = lod.data.shape_keys
RESULT["clamped"] = [list(lod["omg_clamped"]), list(lod["omg_clamped_exprs"]), list(lod["omg_clamped_starts"])]
RESULT["key_names"] = [kb.name for kb in keys.key_blocks]
RESULT["drivers"] = {}
for name in lod["omg_clamped"]:
    fc = keys.animation_data.drivers.find('key_blocks["%s"].value' % name)
    RESULT["drivers"][name] = [fc.driver.type, fc.driver.expression, fc.driver.is_simple_expression,
                               fc.driver.is_valid]
names = list(model.expr_names)
src = np.asarray(avatar.params.expr[0], np.float32)
pose0, transl0 = np.asarray(avatar.params.pose[0]), np.asarray(avatar.params.transl[0])
bare = dataclasses.replace(avatar, parts=[dataclasses.replace(p, clamped={}) for p in avatar.parts])
rows = slice(len(avatar.lods[0]), None)
cases = {}
for tag, delta in (("far below", -0.3), ("below", -0.05), ("at", 0.0), ("above", 0.3), ("far above", 0.6)):
    e = src.copy()
    for ex in set(lod["omg_clamped_exprs"]):
        e[names.index(ex)] = src[names.index(ex)] + delta
    scene_write.set_pose(rig, e, pose0, transl0)
    bpy.context.view_layer.update()
    got = ply_io.evaluated_positions(lod, bpy.context.evaluated_depsgraph_get())
    hp = HP(avatar.params.shape, e[None], pose0[None], transl0[None])
    exp = axes.points_to_blender(posing.pose(avatar, model, hp, 0)[0])
    without = axes.points_to_blender(posing.pose(bare, model, hp, 0)[0])
    cases[tag] = {"err": float(np.abs(got[rows] - exp[rows]).max()),
                  "clamped_moves": float(np.abs(exp[rows] - without[rows]).max()),
                  "values": [keys.key_blocks[n].value for n in lod["omg_clamped"]],
                  "expected": [max(float(e[names.index(x)]) - s, 0.0)
                               for x, s in zip(lod["omg_clamped_exprs"], lod["omg_clamped_starts"])]}
    if tag == "far above":
        back = scene_read.gaussian_avatar(scene_read.read_rig(rig), scene_read.read_lod(rig, 0), model)
        RESULT["read_back_clamped"] = {p.name: sorted(p.clamped) for p in back.parts if p.clamped}
        RESULT["read_back_err"] = float(np.abs(axes.points_to_blender(posing.pose(back, model, hp, 0)[0])[rows]
                                               - exp[rows]).max())
RESULT["cases"] = cases
RESULT["avatar_clamped"] = {p.name: sorted(p.clamped) for p in avatar.parts if p.clamped}
"""


def test_clamped_keys_are_driven_shape_keys_that_pose_like_the_backend(addon_zip: Path, tmp_path: Path) -> None:
    _, _, avatar_path = astronaut_avatar(tmp_path)
    script = installed_script(addon_zip, SCRIPT, same_standin(), AVATAR=str(avatar_path))
    child = run_isolated(script, tmp_path, timeout=600)
    assert child.returncode == 0, child.stderr[-4000:]
    r = child.result
    assert r["install"] == ["FINISHED"]
    keys, exprs, starts = r["clamped"]
    # the astronaut's mouth parts: the funnel's key (lower teeth, tongue, cavity...) and the lower
    # lip's (lower teeth and gums), each a shape key after the expressions and correctives
    assert "mouthFunnel" in exprs and {"mouthLowerDownLeft", "mouthLowerDownRight"} <= set(exprs)
    assert r["avatar_clamped"]["teeth_lower"] == sorted(set(exprs))
    assert r["key_names"][-len(keys):] == keys
    for name, (kind, expression, simple, valid) in r["drivers"].items():
        assert kind == "SCRIPTED" and simple and valid, (name, expression)
        assert expression.startswith("max(head - (") and expression.endswith("), 0)")
    for tag, c in r["cases"].items():
        assert c["err"] < 1e-5, (tag, c)                       # Blender = the backend's posing
        np.testing.assert_allclose(c["values"], c["expected"], atol=1e-6)  # max(e - s, 0)
        if tag in ("far below", "below", "at"):
            assert c["clamped_moves"] < 1e-7 and max(c["values"]) == 0.0, (tag, c)  # flat
        else:
            assert c["clamped_moves"] > 1e-3, (tag, c)          # beyond the start the parts drop
    assert r["read_back_clamped"] == r["avatar_clamped"]
    assert r["read_back_err"] < 1e-5
