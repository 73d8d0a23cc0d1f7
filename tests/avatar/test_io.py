"""Avatar file format and 3DGS .ply import/export (no head model or photo needed)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from backend.avatar.fileformat import FORMAT_VERSION, load_avatar, read_header, save_avatar
from backend.avatar.gaussians import ClampedShape, GaussianAvatar, GaussianSet, SkinnedPart
from backend.avatar.ply import C0, gaussians_from_columns, ply_columns, read_ply, write_ply
from backend.avatar.posing import body_weights
from backend.errors import InputError
from backend.head.params import HeadParams
from backend.render.camera import Camera

REFERENCE_LAYOUT = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
                    + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])


def random_set(n: int, rng: np.random.Generator, features: int = 0) -> GaussianSet:
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return GaussianSet(
        means=rng.normal(scale=0.1, size=(n, 3)), quats=q,
        scales=rng.uniform(1e-4, 1e-2, size=(n, 3)), opacities=rng.uniform(0.01, 0.99, size=n),
        colors=rng.uniform(0, 1, size=(n, 3)),
        features=rng.normal(size=(n, features)) if features else None)


def random_avatar(rng: np.random.Generator) -> GaussianAvatar:
    V = 40
    params = HeadParams(rng.normal(size=10), rng.normal(size=(1, 7)), rng.normal(size=(1, 5, 3)) * 0.1,
                        rng.normal(size=(1, 3)) * 0.01)
    cam = Camera.look_at((0, 0, 0.6), width=512, height=512, fov_y_deg=20)
    lods = {0: random_set(V, rng, features=4), 1: random_set(V * 4, rng)}
    return GaussianAvatar("standin", None, params, cam, rng.normal(size=(V, 3)) * 1e-3, lods,
                          {k: rng.normal(size=(len(g), 3)) * 1e-3 for k, g in lods.items()},
                          [SkinnedPart("body", random_set(25, rng), body_weights(25)),
                           SkinnedPart("teeth_lower", random_set(7, rng), rng.dirichlet(np.ones(5), 7),
                                       {"jawOpen": rng.normal(size=(7, 3)), "tongueOut": rng.normal(size=(7, 3))},
                                       {"mouthFunnel": ClampedShape(0.3125, rng.normal(size=(7, 3))),
                                        "jawOpen": ClampedShape(-0.1, rng.normal(size=(7, 3)))})],
                          options={"lods": [0, 1], "refine_seconds": 3.0})


def test_avatar_file_round_trip_is_exact(tmp_path):
    av = random_avatar(np.random.default_rng(0))
    path = save_avatar(av, tmp_path / "a")
    assert path.suffix == ".omgavatar"
    back = load_avatar(path)
    assert back.head_model_name == "standin" and back.head_model_path is None
    assert back.options == av.options and back.method == "analytic"
    for name in ("shape", "expr", "pose", "transl"):
        np.testing.assert_array_equal(getattr(back.params, name), getattr(av.params, name))
    np.testing.assert_array_equal(back.camera.K, av.camera.K)
    np.testing.assert_array_equal(back.camera.viewmat, av.camera.viewmat)
    assert (back.camera.width, back.camera.height) == (512, 512)
    np.testing.assert_array_equal(back.vertex_offsets, av.vertex_offsets)
    assert back.levels == [0, 1]
    for lvl in (0, 1):
        for k, v in av.lods[lvl].arrays().items():
            np.testing.assert_array_equal(back.lods[lvl].arrays()[k], v)
        np.testing.assert_array_equal(back.lod_offsets[lvl], av.lod_offsets[lvl])
    assert back.lods[0].features.shape == (40, 4) and back.lods[1].features is None
    assert [p.name for p in back.parts] == ["body", "teeth_lower"]
    for part, orig in zip(back.parts, av.parts):
        for k, v in orig.gaussians.arrays().items():
            np.testing.assert_array_equal(part.gaussians.arrays()[k], v)
        np.testing.assert_array_equal(part.weights, orig.weights)
        assert list(part.shapes) == list(orig.shapes)   # shape keys: names in order, exact values
        for k, v in orig.shapes.items():
            np.testing.assert_array_equal(part.shapes[k], v)
        assert list(part.clamped) == list(orig.clamped)  # clamped keys: names in order, starts, values
        for k, c in orig.clamped.items():
            assert part.clamped[k].start == c.start
            np.testing.assert_array_equal(part.clamped[k].delta, c.delta)
    assert back.parts[0].shapes == {} and len(back.parts[1].shapes) == 2
    assert back.parts[0].clamped == {} and len(back.parts[1].clamped) == 2
    hdr = read_header(path)
    assert hdr["version"] == FORMAT_VERSION == 2 and hdr["parts"] == ["body", "teeth_lower"]
    assert hdr["counts"]["1"] == {"head": 160, "parts": 32, "total": 192}


def test_version_1_file_loads_shoulders_as_body_part(tmp_path):
    """A file written before skinned parts (version 1: one ``shoulders.*`` set) loads with the
    shoulders as the part "body", weighted like the old shoulder transform."""
    from safetensors.numpy import save_file

    from backend.avatar.fileformat import _digest, avatar_tensors

    av = random_avatar(np.random.default_rng(3))
    body = av.parts[0].gaussians
    t = {k: v for k, v in avatar_tensors(av).items() if not k.startswith("part")}
    t.update({f"shoulders.{k}": np.ascontiguousarray(v) for k, v in body.arrays().items()})
    header = {"format": "omgavatar", "version": 1, "method": "analytic",
              "head_model": {"name": "standin", "path": None}, "lods": [0, 1],
              "camera": {"width": 512, "height": 512}, "options": {}, "sha256": _digest(t)}
    path = tmp_path / "old.omgavatar"
    save_file(t, str(path), metadata={"omgavatar": json.dumps(header)})
    back = load_avatar(path)
    assert [p.name for p in back.parts] == ["body"]
    np.testing.assert_array_equal(back.parts[0].gaussians.means, body.means)
    np.testing.assert_array_equal(back.parts[0].gaussians.colors, body.colors)
    np.testing.assert_allclose(back.parts[0].weights[:, :2], np.tile([0.75, 0.25], (25, 1)))
    assert np.all(back.parts[0].weights[:, 2:] == 0)
    np.testing.assert_array_equal(back.rest_set(1).means[160:], body.means)


def test_file_without_clamped_keys_loads_with_none(tmp_path):
    """A version 2 file written before clamped keys (no ``part_clamped`` header entry, no
    ``part{i}.clamped`` tensor) loads with parts that have none and poses as written."""
    from safetensors.numpy import save_file

    from backend.avatar.fileformat import _digest, avatar_tensors

    av = random_avatar(np.random.default_rng(4))
    for p in av.parts:
        p.clamped = {}
    t = avatar_tensors(av)
    assert not any(k.endswith(".clamped") for k in t)
    header = {"format": "omgavatar", "version": 2, "method": "analytic",
              "head_model": {"name": "standin", "path": None}, "lods": [0, 1], "parts": ["body", "teeth_lower"],
              "part_shapes": [[], ["jawOpen", "tongueOut"]],
              "camera": {"width": 512, "height": 512}, "options": {}, "sha256": _digest(t)}
    path = tmp_path / "before_clamped.omgavatar"
    save_file(t, str(path), metadata={"omgavatar": json.dumps(header)})
    back = load_avatar(path)
    assert [p.clamped for p in back.parts] == [{}, {}]
    assert list(back.parts[1].shapes) == ["jawOpen", "tongueOut"]
    np.testing.assert_array_equal(back.parts[1].shapes["jawOpen"], av.parts[1].shapes["jawOpen"])


def _rewrite_header(src, dst, edit):
    """Rewrite a safetensors file's JSON header (8-byte length + JSON) with ``edit`` applied."""
    raw = src.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    meta = json.loads(head["__metadata__"]["omgavatar"])
    edit(meta)
    head["__metadata__"]["omgavatar"] = json.dumps(meta)
    new = json.dumps(head).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    dst.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])


def test_future_version_and_corrupt_files_are_refused(tmp_path):
    path = save_avatar(random_avatar(np.random.default_rng(1)), tmp_path / "a.omgavatar")
    future = tmp_path / "future.omgavatar"
    _rewrite_header(path, future, lambda m: m.update(version=FORMAT_VERSION + 1))
    with pytest.raises(InputError, match="newer"):
        load_avatar(future)
    foreign = tmp_path / "foreign.omgavatar"
    _rewrite_header(path, foreign, lambda m: m.update(format="something"))
    with pytest.raises(InputError, match="not an .omgavatar"):
        load_avatar(foreign)
    raw = bytearray(path.read_bytes())
    (tmp_path / "trunc.omgavatar").write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(InputError, match="trunc.omgavatar"):
        load_avatar(tmp_path / "trunc.omgavatar")
    raw[-7] ^= 0xFF  # one flipped byte in the tensor data
    (tmp_path / "flip.omgavatar").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="checksum"):
        load_avatar(tmp_path / "flip.omgavatar")
    (tmp_path / "junk.omgavatar").write_bytes(b"hello world, not an avatar")
    with pytest.raises(InputError, match="junk.omgavatar"):
        load_avatar(tmp_path / "junk.omgavatar")
    with pytest.raises(InputError, match="not found"):
        load_avatar(tmp_path / "missing.omgavatar")


def test_non_finite_vertex_offsets_are_refused(tmp_path):
    """A file with a valid checksum but NaN vertex offsets (crafted) is refused by name, not
    tracked into NaN frames."""
    from safetensors.numpy import save_file

    from backend.avatar.fileformat import _digest, avatar_tensors

    path = save_avatar(random_avatar(np.random.default_rng(5)), tmp_path / "ok.omgavatar")
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(json.loads(raw[8:8 + n])["__metadata__"]["omgavatar"])
    t = avatar_tensors(load_avatar(path))
    t["vertex_offsets"] = t["vertex_offsets"].copy()
    t["vertex_offsets"][3, 1] = np.nan
    header["sha256"] = _digest(t)
    bad = tmp_path / "nan.omgavatar"
    save_file(t, str(bad), metadata={"omgavatar": json.dumps(header)})
    with pytest.raises(InputError, match="nan.omgavatar.*non-finite vertex offsets"):
        load_avatar(bad)


def test_ply_layout_and_round_trip(tmp_path):
    gs = random_set(500, np.random.default_rng(2))
    path = write_ply(tmp_path / "g.ply", gs)
    ply = PlyData.read(str(path))
    assert ply.text is False and ply.byte_order == "<"
    assert [e.name for e in ply.elements] == ["vertex"]
    props = ply["vertex"].properties
    assert [p.name for p in props] == REFERENCE_LAYOUT
    assert all(p.val_dtype in ("f4", "float32", "float") for p in props)
    d = ply["vertex"].data
    np.testing.assert_array_equal(d["nx"], 0)
    np.testing.assert_allclose(d["f_dc_1"], (gs.colors[:, 1] - 0.5) / C0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-d["opacity"])), gs.opacities, rtol=1e-5)
    np.testing.assert_allclose(np.exp(d["scale_2"]), gs.scales[:, 2], rtol=1e-6)
    q = np.stack([d[f"rot_{i}"] for i in range(4)], 1)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1, atol=1e-6)
    back = read_ply(path)
    np.testing.assert_array_equal(back.means, gs.means)  # positions are stored verbatim
    # the other attributes pass through SH / logit / log encodings in float32: 1e-6 relative
    np.testing.assert_allclose(back.colors, gs.colors, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back.opacities, gs.opacities, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(back.scales, gs.scales, rtol=1e-6)
    np.testing.assert_allclose(back.quats, gs.quats, atol=1e-6)
    # a second export of the imported set reproduces the file byte for byte
    again = write_ply(tmp_path / "g2.ply", back)
    assert ply_columns(back).keys() == ply_columns(gs).keys()
    np.testing.assert_allclose(PlyData.read(str(again))["vertex"].data["opacity"], d["opacity"], rtol=1e-5)


def test_column_codec_round_trip_and_clipping():
    """One codec (avatar/ply.py) for files and the Blender scene: decode(encode(gs)) == gs; DC colours
    beyond [0, 1] are clipped; a zero quaternion is the identity; no opacity column = opaque."""
    gs = random_set(200, np.random.default_rng(5))
    cols = ply_columns(gs)
    back = gaussians_from_columns(gs.means, cols)
    np.testing.assert_allclose(back.colors, gs.colors, atol=1e-6)
    np.testing.assert_allclose(back.opacities, gs.opacities, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(back.scales, gs.scales, rtol=1e-6)
    np.testing.assert_allclose(back.quats, gs.quats, atol=1e-6)
    cols = dict(cols)
    cols["f_dc_0"] = np.array([-10.0, 10.0] + [0.0] * 198, np.float32)
    cols["rot_0"], cols["rot_1"], cols["rot_2"], cols["rot_3"] = (np.zeros(200, np.float32),) * 4
    del cols["opacity"]
    odd = gaussians_from_columns(gs.means, cols)
    np.testing.assert_array_equal(odd.colors[:2, 0], [0.0, 1.0])
    np.testing.assert_allclose(odd.colors[2:, 0], 0.5)
    np.testing.assert_array_equal(odd.quats, np.tile([1.0, 0, 0, 0], (200, 1)))
    np.testing.assert_array_equal(odd.opacities, 1.0)


def test_ply_import_any_standard_file(tmp_path):
    """f_rest present, shuffled property order, ascii, unnormalised quaternions."""
    rng = np.random.default_rng(3)
    n = 30
    names = REFERENCE_LAYOUT + [f"f_rest_{i}" for i in range(45)]
    order = list(rng.permutation(names))
    vals = {k: rng.normal(size=n).astype(np.float32) for k in names}
    vals["rot_0"] = vals["rot_0"] + 3.0
    arr = np.empty(n, dtype=[(k, "f4") for k in order])
    for k in order:
        arr[k] = vals[k]
    for text in (False, True):
        p = tmp_path / f"x{text}.ply"
        PlyData([PlyElement.describe(arr, "vertex")], text=text).write(str(p))
        gs = read_ply(p)
        np.testing.assert_allclose(gs.means[:, 1], vals["y"], rtol=1e-6)
        np.testing.assert_allclose(gs.colors[:, 2], np.clip(vals["f_dc_2"] * C0 + 0.5, 0, 1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gs.scales[:, 0], np.exp(vals["scale_0"]), rtol=1e-5)
        q = np.stack([vals[f"rot_{i}"] for i in range(4)], 1)
        np.testing.assert_allclose(gs.quats, q / np.linalg.norm(q, axis=1, keepdims=True), atol=1e-6)
    bad = np.empty(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(bad, "vertex")]).write(str(tmp_path / "pts.ply"))
    with pytest.raises(InputError, match="scale_0"):
        read_ply(tmp_path / "pts.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply")
    with pytest.raises(InputError, match="junk.ply"):
        read_ply(tmp_path / "junk.ply")
