"""Crafted FLAME pickles that crash a naive loader (segfault) are refused with one line.

Every crafted file is loaded in a child process with a memory limit, so a crash fails the test
(negative return code) instead of killing pytest.
"""

from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.head import HeadModelError, load_head_model
from backend.head.loader import load_model_for_avatar

from test_loader import flame_dict

REPO = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 1536 * 2**20  # address space of the child: far below what a 2**31-square matrix needs


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def load_in_child(path: Path, plain_pickle: bool = False) -> subprocess.CompletedProcess:
    """Load ``path`` with our loader (or, to prove the payload is real, with plain pickle) in a
    child process; prints 'ERROR <message>' for our one-line error, 'OK' otherwise."""
    if plain_pickle:
        code = ("import pickle,sys; d=pickle.load(open(sys.argv[1],'rb'));"
                "[str(n) for n in d.get('expr_names', [])]; d['J_regressor'].toarray(); print('OK')")
    else:
        code = ("import sys\nfrom backend.head import load_head_model, HeadModelError\n"
                "try:\n    load_head_model(sys.argv[1]); print('OK')\n"
                "except HeadModelError as e:\n    print('ERROR', e)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          timeout=120, env=env, preexec_fn=_limits, cwd=REPO)


class ObjectArrayFromBytes:
    """Pickles as ``numpy.ndarray((4,), dtype, raw_bytes)``: elements are attacker-chosen pointers."""

    def __init__(self, dtype):
        self.dtype = dtype

    def __reduce__(self):
        return (np.ndarray, ((4,), self.dtype, b"\x41" * 32))


def test_object_array_from_raw_bytes_is_refused(tmp_path):
    d = flame_dict()
    d["expr_names"] = ObjectArrayFromBytes(np.dtype("O"))
    path = tmp_path / "evil_object.pkl"
    path.write_bytes(pickle.dumps(d, protocol=2))
    naive = load_in_child(path, plain_pickle=True)
    assert naive.returncode < 0, "the crafted file must really crash a naive loader"
    res = load_in_child(path)
    assert res.returncode == 0 and res.stdout.startswith("ERROR evil_object.pkl: refused"), res
    assert "dtype 'O8'" in res.stdout and "Traceback" not in res.stderr
    # the same with a plain dtype: the buffer constructor itself is refused
    d["expr_names"] = ObjectArrayFromBytes("f8")
    path.write_bytes(pickle.dumps(d, protocol=2))
    res = load_in_child(path)
    assert "numpy.ndarray constructed from a buffer" in res.stdout, res


def test_object_dtype_through_array_state_is_refused(tmp_path):
    """_reconstruct + BUILD((shape, dtype('O'), raw bytes)): the other way to an object array."""
    arr = np.arange(4.0)
    good = pickle.dumps({"x": arr}, protocol=2)
    raw = good.replace(b"X\x02\x00\x00\x00f8", b"X\x02\x00\x00\x00O8")
    assert raw != good
    path = tmp_path / "evil_state.pkl"
    path.write_bytes(raw)
    with pytest.raises(HeadModelError, match="evil_state.pkl: refused.*dtype 'O8'"):
        load_head_model(path)


def test_sparse_with_out_of_range_indices_is_refused(tmp_path):
    for field, value in (("indices", 10**9), ("indptr", 10**6)):
        d = flame_dict()
        getattr(d["J_regressor"], field)[-1] = value
        path = tmp_path / f"evil_{field}.pkl"
        path.write_bytes(pickle.dumps(d, protocol=2))
        if field == "indices":
            naive = load_in_child(path, plain_pickle=True)
            assert naive.returncode < 0, "the crafted file must really crash a naive loader"
        res = load_in_child(path)
        assert res.returncode == 0, res
        assert res.stdout.startswith(f"ERROR evil_{field}.pkl: 'J_regressor' is a damaged sparse "
                                     "matrix"), res.stdout


def test_huge_declared_sparse_shape_is_refused_without_allocating(tmp_path):
    d = flame_dict()
    d["J_regressor"]._shape = (2**31, 2**31)  # the stored arrays stay tiny
    path = tmp_path / "huge_sparse.pkl"
    path.write_bytes(pickle.dumps(d, protocol=2))
    res = load_in_child(path)  # the child has 1.5 GB of address space: dense would need 32 EB
    assert res.returncode == 0, res
    assert "ERROR huge_sparse.pkl: 'J_regressor' is a damaged sparse matrix (declared shape " \
           "2147483648 x 2147483648 is over the limit" in res.stdout


def test_sparse_indptr_not_monotonic_and_nnz_mismatch(tmp_path):
    d = flame_dict()
    J = d["J_regressor"]
    J.indptr[1], J.indptr[2] = J.indptr[2], J.indptr[1]
    path = tmp_path / "bad_indptr.pkl"
    path.write_bytes(pickle.dumps(d, protocol=2))
    if J.indptr[1] != J.indptr[2]:
        with pytest.raises(HeadModelError, match="'indptr' is not increasing"):
            load_head_model(path)
    d = flame_dict()
    d["J_regressor"].data = d["J_regressor"].data[:-1]
    path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(HeadModelError, match="values for .* indices"):
        load_head_model(path)


def test_deep_nesting_and_cycles_are_one_line_errors(tmp_path):
    path = tmp_path / "deep.pkl"
    path.write_bytes(b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b".")  # lists nested 200k deep
    with pytest.raises(HeadModelError, match="deep.pkl: refused to load: data nested"):
        load_head_model(path)
    d = flame_dict()
    loop: list = []
    loop.append(loop)
    d["extra"] = loop
    path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(HeadModelError, match="nested more than"):
        load_head_model(path)


def test_build_state_on_dtype_and_callables_is_refused(tmp_path):
    # GLOBAL numpy.dtype 'f8' -> dtype stub; BUILD with a structured state
    raw = (b"\x80\x02cnumpy\ndtype\nq\x00X\x02\x00\x00\x00f8q\x01\x89\x88\x87q\x02Rq\x03"
           b"(K\x03X\x01\x00\x00\x00<q\x04NX\x01\x00\x00\x00aq\x05NJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x06b.")
    path = tmp_path / "dtype_state.pkl"
    path.write_bytes(raw)
    with pytest.raises(HeadModelError, match="refused.*structured or unusual dtype"):
        load_head_model(path)
    # BUILD on an allowed callable (would set attributes on our own objects)
    path.write_bytes(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n}X\x01\x00\x00\x00aK\x01sb.")
    with pytest.raises(HeadModelError, match="dtype_state.pkl|not a readable pickle"):
        load_head_model(path)
    from backend.head import safe_pickle

    assert not hasattr(safe_pickle._NUMPY_ALLOWED[("numpy.core.multiarray", "_reconstruct")], "a")


def test_head_model_named_in_avatar_is_never_opened_silently(tmp_path, standin):
    target = tmp_path / "evil.pkl"
    target.write_bytes(b"\x80\x02crandom\nrandom\n)R.")
    with pytest.raises(HeadModelError, match="avatar.omgavatar: was built on head model 'flame2023' "
                                              r".*evil.pkl\); .*pass --head-model PATH"):
        load_model_for_avatar("avatar.omgavatar", "flame2023", str(target))
    assert load_model_for_avatar("a.omgavatar", "standin", None).n_verts == standin.n_verts
    with pytest.raises(HeadModelError, match="evil.pkl: refused"):  # the user's own choice loads
        load_model_for_avatar("a.omgavatar", "flame2023", None, requested=target)
