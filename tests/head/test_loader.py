"""Loader: our .npz, FLAME 2023 (numpy) and 2020 (chumpy) pickles, and hostile/broken files."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp

from backend.errors import InputError
from backend.head import (HeadModelError, LandmarkEmbedding, load_head_model,
                          load_landmark_embedding, save_head_model, save_landmark_embedding)



ROOT = 2**32 - 1  # FLAME's kintree_table marks the root's parent with this


def flame_dict(V: int = 30, n_shape: int = 300, n_expr: int = 100, seed: int = 1) -> dict:
    """A synthetic dictionary in FLAME's pickle layout (shapes and dtypes as in the real files)."""
    rng = np.random.default_rng(seed)
    w = rng.random((V, 5)) ** 3
    J = rng.random((5, V)) * (rng.random((5, V)) < 0.3)
    J[:, 0] += 1e-3
    return {
        "v_template": rng.normal(0, 0.05, (V, 3)),
        "f": np.stack([np.arange(V - 2), np.arange(1, V - 1), np.arange(2, V)], 1).astype(np.uint32),
        "shapedirs": rng.normal(0, 0.01, (V, 3, n_shape + n_expr)),
        "posedirs": rng.normal(0, 0.01, (V, 3, 36)),
        "J_regressor": sp.csc_matrix(J / J.sum(1, keepdims=True)),
        "weights": w / w.sum(1, keepdims=True),
        "kintree_table": np.array([[ROOT, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64),
        "bs_style": "lbs", "bs_type": "lrotmin",
    }


def check_same(model, d: dict, n_shape: int = 300) -> None:
    np.testing.assert_allclose(model.v_template, d["v_template"], atol=1e-7)
    np.testing.assert_array_equal(model.faces, d["f"])
    np.testing.assert_allclose(model.shapedirs, d["shapedirs"][..., :n_shape], atol=1e-7)
    np.testing.assert_allclose(model.exprdirs, d["shapedirs"][..., n_shape:], atol=1e-7)
    np.testing.assert_allclose(model.J_regressor, d["J_regressor"].toarray(), atol=1e-7)
    np.testing.assert_allclose(model.weights, d["weights"], atol=1e-7)
    assert model.parents.tolist() == [-1, 0, 1, 1, 1]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_flame2023_numpy_pickle(tmp_path, protocol):
    d = flame_dict()
    path = tmp_path / "flame2023.pkl"
    path.write_bytes(pickle.dumps(d, protocol=protocol))
    m = load_head_model(path)
    check_same(m, d)
    assert (m.n_shape, m.n_expr, m.name) == (300, 100, "flame2023")
    assert m.expr_names[:2] == ["exp_000", "exp_001"] and len(m.expr_names) == 100
    assert not m.landmarks.valid.any()  # FLAME files carry no mediapipe embedding


@pytest.fixture
def fake_chumpy():
    """Register a minimal 'chumpy' package so test pickles reference chumpy.ch.Ch, like FLAME 2020;
    it is removed again before loading, so the loader runs without any chumpy module."""
    ch_mod, re_mod, pkg = (types.ModuleType(n) for n in ("chumpy.ch", "chumpy.reordering", "chumpy"))

    class Ch:  # chumpy keeps the value in .x plus bookkeeping in __dict__
        def __init__(self, x):
            self.x = np.asarray(x)
            self._dirty_vars = set()
            self.label = None

    class Select:
        def __init__(self, a, idxs):
            self.a, self.idxs = a, idxs

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    Select.__module__, Select.__qualname__ = "chumpy.reordering", "Select"
    ch_mod.Ch, re_mod.Select = Ch, Select
    pkg.ch, pkg.reordering = ch_mod, re_mod
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch", "chumpy.reordering")}
    sys.modules.update({"chumpy": pkg, "chumpy.ch": ch_mod, "chumpy.reordering": re_mod})
    yield Ch, Select

    def remove():
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    remove()


@pytest.mark.parametrize("protocol", [0, 2])
def test_flame2020_chumpy_pickle(tmp_path, fake_chumpy, protocol):
    Ch, Select = fake_chumpy
    d = flame_dict(seed=protocol)
    d2 = dict(d)
    for k in ("v_template", "shapedirs", "posedirs", "weights"):
        d2[k] = Ch(d[k])
    d2["posedirs"] = Select(Ch(d["posedirs"]), np.arange(3))  # reordering wrapper around a Ch
    lazy = Select(None, np.arange(3))  # a chumpy expression with no stored value, unused by us
    del lazy.a
    d2["J"] = lazy
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps(d2, protocol=protocol))
    for k in ("chumpy", "chumpy.ch", "chumpy.reordering"):
        sys.modules.pop(k, None)  # the loader must not need chumpy
    m = load_head_model(path)
    check_same(m, d)
    assert m.name == "flame2020"
    np.testing.assert_allclose(m.posedirs, d["posedirs"], atol=1e-7)
    # the same lazy object where a model array belongs is a clear error
    d2["weights"] = lazy
    sys.modules.update({"chumpy": types.ModuleType("chumpy")})
    sys.modules["chumpy.reordering"] = types.ModuleType("chumpy.reordering")
    sys.modules["chumpy.reordering"].Select = Select
    sys.modules["chumpy.ch"] = types.ModuleType("chumpy.ch")
    sys.modules["chumpy.ch"].Ch = Ch
    path.write_bytes(pickle.dumps(d2, protocol=protocol))
    for k in ("chumpy", "chumpy.ch", "chumpy.reordering"):
        sys.modules.pop(k, None)
    with pytest.raises(HeadModelError, match="'weights' is a chumpy.reordering.Select object"):
        load_head_model(path)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    d = flame_dict()
    d["payload"] = Evil()
    path = tmp_path / "flame2023.pkl"
    path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(HeadModelError) as exc:
        load_head_model(path)
    msg = str(exc.value)
    assert "flame2023.pkl" in msg and "system" in msg and "refused" in msg
    assert not marker.exists()
    # a plain naive pickle.load would have run it: proves the payload is real
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("target", ["builtins.eval", "subprocess.Popen", "numpy.load",
                                    "scipy.sparse.coo_matrix"])
def test_other_classes_refused(tmp_path, target):
    module, name = target.rsplit(".", 1)
    path = tmp_path / "x.pkl"
    # hand-written protocol-2 pickle: GLOBAL 'module name', EMPTY_TUPLE, REDUCE, STOP
    path.write_bytes(b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R.")
    with pytest.raises(HeadModelError, match=f"x.pkl.*{module}.{name}"):
        load_head_model(path)


def test_truncated_not_pickle_missing_key_wrong_shape(tmp_path):
    d = flame_dict()
    raw = pickle.dumps(d, protocol=4)
    bad = tmp_path / "truncated.pkl"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(HeadModelError, match="truncated"):
        load_head_model(bad)
    txt = tmp_path / "notes.pkl"
    txt.write_text("hello, not a model")
    with pytest.raises(HeadModelError, match="not a pickle"):
        load_head_model(txt)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(HeadModelError, match="empty"):
        load_head_model(empty)
    d_missing = dict(d)
    del d_missing["posedirs"]
    p = tmp_path / "missing.pkl"
    p.write_bytes(pickle.dumps(d_missing))
    with pytest.raises(HeadModelError, match="missing.pkl.*'posedirs'"):
        load_head_model(p)
    d_shape = dict(d, weights=d["weights"][:, :4])
    p = tmp_path / "shape.pkl"
    p.write_bytes(pickle.dumps(d_shape))
    with pytest.raises(HeadModelError, match=r"'weights' has shape \(30, 4\), expected \(30, 5\)"):
        load_head_model(p)
    p = tmp_path / "list.pkl"
    p.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(HeadModelError, match="dictionary"):
        load_head_model(p)
    with pytest.raises(HeadModelError, match="no such"):
        load_head_model(tmp_path / "absent.pkl")
    assert issubclass(HeadModelError, InputError)


def test_damaged_standin_cache_is_regenerated(tmp_path, monkeypatch, standin):
    from backend.head.standin import cache_dir, generator_key

    monkeypatch.setenv("OMG_AVATAR_CACHE", str(tmp_path))
    damaged = cache_dir() / f"standin_{generator_key()}.npz"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"PK\x03\x04" + bytes(1000))  # e.g. a disk that filled up mid-write
    m = load_head_model(None)
    np.testing.assert_array_equal(m.v_template, standin.v_template)
    assert load_head_model(damaged).n_verts == standin.n_verts  # the cache file is whole again


def test_npz_roundtrip_and_errors(tmp_path, make_model):
    m = make_model(E=3)
    m.expr_names = ["smile_L", "blink_R", "jaw_open"]
    m.landmarks = LandmarkEmbedding(np.arange(478) % m.n_faces, np.full((478, 3), 1 / 3, np.float32),
                                    np.ones(478, bool))
    p = tmp_path / "mine.npz"
    save_head_model(p, m)
    m2 = load_head_model(p)
    for k in ("v_template", "faces", "shapedirs", "exprdirs", "posedirs", "J_regressor", "weights",
              "parents"):
        np.testing.assert_array_equal(getattr(m2, k), getattr(m, k))
    assert m2.expr_names == m.expr_names and m2.name == "random"
    np.testing.assert_array_equal(m2.landmarks.face_idx, m.landmarks.face_idx)
    # a damaged .npz (cut in half) and one lacking arrays
    raw = p.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(HeadModelError):
        load_head_model(tmp_path / "cut.npz")
    np.savez(tmp_path / "thin.npz", v_template=m.v_template)
    with pytest.raises(HeadModelError, match="thin.npz.*missing"):
        load_head_model(tmp_path / "thin.npz")


def test_landmark_embedding_file(tmp_path):
    d = flame_dict()
    pkl = tmp_path / "flame2023.pkl"
    pkl.write_bytes(pickle.dumps(d))
    F = len(d["f"])
    fi = np.arange(478) % F
    fi[470:] = -1  # iris not embedded on this model
    bary = np.tile(np.array([0.2, 0.3, 0.5], np.float32), (478, 1))
    emb = tmp_path / "mediapipe_embedding.npz"
    np.savez(emb, face_idx=fi, bary=bary)
    m = load_head_model(pkl, landmarks=emb)
    assert m.landmarks.valid.sum() == 470 and m.landmarks.face_idx.max() < F
    pts = m.landmarks.points(m.v_template, m.faces)
    expect = np.einsum("lkc,k->lc", m.v_template[m.faces[fi[:470]]], [0.2, 0.3, 0.5])
    np.testing.assert_allclose(pts[:470], expect, atol=1e-6)
    # round trip through save_landmark_embedding
    save_landmark_embedding(tmp_path / "again.npz", m.landmarks)
    again = load_landmark_embedding(tmp_path / "again.npz")
    np.testing.assert_array_equal(again.valid, m.landmarks.valid)
    # wrong row count / indexes past the model's faces / wrong keys
    np.savez(tmp_path / "short.npz", face_idx=fi[:100], bary=bary[:100])
    with pytest.raises(HeadModelError, match="short.npz.*478"):
        load_landmark_embedding(tmp_path / "short.npz")
    np.savez(tmp_path / "far.npz", face_idx=np.full(478, 10**6), bary=bary)
    with pytest.raises(HeadModelError, match="far.npz"):
        load_head_model(pkl, landmarks=tmp_path / "far.npz")
    np.savez(tmp_path / "keys.npz", idx=fi)
    with pytest.raises(HeadModelError, match="face_idx"):
        load_landmark_embedding(tmp_path / "keys.npz")


def test_standin_through_flame_pickle_path(tmp_path, standin):
    """The stand-in, written in FLAME's pickle layout, reads back identically through that path."""
    m = standin
    d = {"v_template": m.v_template, "f": m.faces,
         "shapedirs": np.concatenate([m.shapedirs, m.exprdirs], 2), "posedirs": m.posedirs,
         "J_regressor": sp.csc_matrix(m.J_regressor), "weights": m.weights,
         "kintree_table": np.array([[ROOT, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
         "expr_names": list(m.expr_names), "lmk_face_idx": m.landmarks.face_idx,
         "lmk_bary": m.landmarks.bary}
    p = tmp_path / "standin_flame_layout.pkl"
    p.write_bytes(pickle.dumps(d, protocol=2))
    m2 = load_head_model(p, n_shape=m.n_shape)
    np.testing.assert_array_equal(m2.v_template, m.v_template)
    np.testing.assert_array_equal(m2.exprdirs, m.exprdirs)
    np.testing.assert_allclose(m2.J_regressor, m.J_regressor, atol=1e-7)
    assert m2.expr_names == m.expr_names
    np.testing.assert_array_equal(m2.landmarks.face_idx, m.landmarks.face_idx)


def test_npz_keeps_the_landmark_directions(tmp_path, make_model):
    """HeadModel.landmark_exprdirs survive save/load; a file whose names and directions disagree, or
    that names an expression the model lacks, is refused with a message."""
    m = make_model(E=3)
    m.expr_names = ["a", "b", "c"]
    d = np.random.default_rng(1).normal(0, 0.01, (m.n_verts, 3)).astype(np.float32)
    m.landmark_exprdirs = {"b": d}
    p = tmp_path / "dirs.npz"
    save_head_model(p, m)
    m2 = load_head_model(p)
    assert list(m2.landmark_exprdirs) == ["b"]
    np.testing.assert_array_equal(m2.landmark_exprdirs["b"], d)
    with np.load(p) as z:
        files = {k: z[k] for k in z.files}
    np.savez(tmp_path / "bad.npz", **{**files, "lmk_exprdirs": files["lmk_exprdirs"][..., :0]})
    with pytest.raises(HeadModelError, match="lmk_exprdirs"):
        load_head_model(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", **{**files, "lmk_exprdir_names": np.array(["z"])})
    with pytest.raises(HeadModelError, match="'z'"):
        load_head_model(tmp_path / "other.npz")
