"""Face capture interop: Live Link Face CSV and plain ARKit CSV/JSON in, the mapping onto the
stand-in's expressions and joints, takes written for Apply Track, and the CSV written back out."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from backend.cli import main as cli_main
from backend.errors import InputError
from backend.head.loader import load_head_model
from backend.motion import load_motion
from backend.motion.arkit import (ANGLE_NAMES, ARKIT_NAMES, MapEntry, default_mapping, save_mapping,
                                  sources_to_targets)
from backend.motion.capture import format_timecode, parse_timecode, read_capture, write_llf_csv
from backend.motion.takes import capture_to_motion, motion_to_capture

LLF_HEADER = ["Timecode", "BlendShapeCount"] + [n[0].upper() + n[1:] for n in ARKIT_NAMES] + list(ANGLE_NAMES)


@pytest.fixture(scope="module")
def standin():
    return load_head_model(None)


def _values(T: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = np.round(rng.uniform(0, 1, (T, 52)), 6)
    a = np.round(rng.uniform(-0.4, 0.4, (T, 9)), 6)
    return np.concatenate([w, a], 1)


def _write_llf(path, values, start="10:00:00:20", tc_rate=30, step=1.0, stamps=None, header=None):
    header = header or LLF_HEADER
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        h, m, s, f = (int(x) for x in start.split(":"))
        t0 = h * 3600 + m * 60 + s + f / tc_rate
        for i, row in enumerate(values):
            tc = stamps[i] if stamps else format_timecode(t0 + i * step / tc_rate, tc_rate)
            w.writerow([tc, 61, *(repr(float(v)) if isinstance(v, float) else v for v in row)])
    return path


def test_arkit_names_are_the_52_camelcase_shapes():
    assert len(ARKIT_NAMES) == 52 == len(set(ARKIT_NAMES))
    assert ARKIT_NAMES[0] == "eyeBlinkLeft" and ARKIT_NAMES[-1] == "tongueOut"
    assert all(n[0].islower() for n in ARKIT_NAMES)


def test_timecode_parse_and_format_agree():
    assert parse_timecode("01:02:03:15.500", 30) == pytest.approx(3723 + 15.5 / 30)
    for sec in (0.0, 12.3, 3599.99, 36000 + 20 / 30):
        assert parse_timecode(format_timecode(sec, 30), 30) == pytest.approx(sec, abs=1e-4)


def test_live_link_face_csv_imports_exactly_those_values_on_those_frames(tmp_path, standin):
    T = 45                                         # 1.5 s at 30 fps: crosses a second boundary
    vals = _values(T)
    path = _write_llf(tmp_path / "take.csv", vals)
    cap = read_capture(path)
    assert cap.fps == 30.0 and cap.n_frames == T and not cap.resampled
    assert cap.start_seconds == pytest.approx(36000 + 20 / 30)
    assert cap.names == list(ARKIT_NAMES) + list(ANGLE_NAMES)
    np.testing.assert_array_equal(cap.values, vals.astype(np.float32))
    names = list(standin.expr_names)
    motion, unused = capture_to_motion(cap, default_mapping(), names, standin.n_shape)
    col = {n: i for i, n in enumerate(cap.names)}
    expr = motion.params.expr
    # the stand-in's basis is ARKit-52: every shape lands on its namesake, except the joint
    # channels (jawOpen/Left/Right, eyeLook*), which turn the jaw and the eyes
    joint = {"jawOpen", "jawLeft", "jawRight"} | {n for n in ARKIT_NAMES if n.startswith("eyeLook")}
    for n in ARKIT_NAMES:
        if n not in joint:
            np.testing.assert_array_equal(expr[:, names.index(n)], vals[:, col[n]].astype(np.float32))
    assert not expr[:, [names.index(n) for n in joint]].any()
    np.testing.assert_allclose(motion.params.pose[:, 2, 0], 0.35 * vals[:, col["jawOpen"]], atol=1e-6)
    np.testing.assert_allclose(motion.params.pose[:, 3, 0], 0.35 * (vals[:, col["eyeLookDownLeft"]]
                                                                    - vals[:, col["eyeLookUpLeft"]]), atol=1e-6)
    np.testing.assert_allclose(motion.params.pose[:, 1, 1], vals[:, col["HeadYaw"]], atol=1e-6)
    # only the eye-angle columns are left over (the eyeLook* weights drive the eyes)
    assert sorted(unused) == sorted(n for n in ANGLE_NAMES if "Eye" in n)


def test_cli_import_writes_a_take_that_load_motion_reads(tmp_path, capsys):
    T = 40
    vals = _values(T, 1)
    path = _write_llf(tmp_path / "cap.csv", vals)
    out = tmp_path / "take.npz"
    assert cli_main(["import-capture", str(path), "-o", str(out)]) == 0
    motion = load_motion(out)
    assert motion.fps == 30.0 and motion.n_frames == T and motion.source == "cap.csv"
    assert motion.expr_names == list(ARKIT_NAMES) and motion.expr_names[0] == "eyeBlinkLeft"
    np.testing.assert_array_equal(motion.params.expr[:, 0], vals[:, 0].astype(np.float32))
    assert "LeftEyeYaw" in capsys.readouterr().err


def test_export_then_import_reproduces_the_take(tmp_path, standin):
    T = 40
    cap = read_capture(_write_llf(tmp_path / "a.csv", _values(T, 2)))
    names = list(standin.expr_names)
    motion, _ = capture_to_motion(cap, default_mapping(), names, standin.n_shape)
    back = motion_to_capture(motion, default_mapping(), names)
    assert back.values[:, :52].min() >= 0 and back.values[:, :52].max() <= 1
    write_llf_csv(tmp_path / "b.csv", back.values, back.names, back.fps, cap.start_seconds)
    cap2 = read_capture(tmp_path / "b.csv")
    assert cap2.fps == 30 and cap2.n_frames == T and cap2.start_seconds == pytest.approx(cap.start_seconds, abs=1e-4)
    motion2, _ = capture_to_motion(cap2, default_mapping(), names, standin.n_shape)
    np.testing.assert_allclose(motion2.params.expr, motion.params.expr, atol=2e-5)
    np.testing.assert_allclose(motion2.params.pose, motion.params.pose, atol=2e-5)
    # one-to-one channels (every shape but the joint ones) come back exactly (the CSV's 6 decimals)
    one = [i for i, n in enumerate(ARKIT_NAMES) if not (n.startswith(("jaw", "eyeLook")) and n != "jawForward")]
    assert len(one) == 41
    np.testing.assert_allclose(cap2.values[:, one], cap.values[:, one], atol=1e-6)


def test_cli_export_then_import_round_trip(tmp_path):
    vals = _values(40, 3)
    take = tmp_path / "take.npz"
    assert cli_main(["import-capture", str(_write_llf(tmp_path / "c.csv", vals)), "-o", str(take)]) == 0
    assert cli_main(["export-capture", str(take), "-o", str(tmp_path / "out.csv")]) == 0
    with open(tmp_path / "out.csv") as fh:
        assert next(csv.reader(fh)) == LLF_HEADER
    take2 = tmp_path / "take2.npz"
    assert cli_main(["import-capture", str(tmp_path / "out.csv"), "-o", str(take2)]) == 0
    a, b = load_motion(take), load_motion(take2)
    assert b.fps == a.fps and b.n_frames == a.n_frames
    np.testing.assert_allclose(b.params.expr, a.params.expr, atol=2e-5)
    np.testing.assert_allclose(b.params.pose, a.params.pose, atol=2e-5)


def test_60fps_capture_with_30fps_subframe_timecodes(tmp_path, standin):
    T = 90
    vals = _values(T, 4)
    path = _write_llf(tmp_path / "s.csv", vals, step=0.5)            # two rows per timecode frame
    cap = read_capture(path)
    assert cap.fps == 60.0 and cap.n_frames == T and not cap.resampled
    np.testing.assert_array_equal(cap.values, vals.astype(np.float32))
    motion, _ = capture_to_motion(cap, default_mapping(), list(standin.expr_names), standin.n_shape, fps=30.0)
    assert motion.fps == 30.0 and motion.n_frames == (T - 1) // 2 + 1
    np.testing.assert_allclose(motion.params.expr[:, 0], vals[::2, 0], atol=1e-6)   # eyeBlinkLeft on even rows


def test_dropped_row_is_interpolated_in_time(tmp_path):
    vals = _values(40, 5)
    keep = [i for i in range(40) if i != 17]
    stamps = [format_timecode(i / 30, 30) for i in keep]
    cap = read_capture(_write_llf(tmp_path / "d.csv", vals[keep], stamps=stamps))
    assert cap.n_frames == 40 and cap.resampled
    np.testing.assert_allclose(cap.values[17], 0.5 * (vals[16] + vals[18]), atol=1e-6)
    np.testing.assert_array_equal(cap.values[18], vals[18].astype(np.float32))


def test_plain_csv_and_json(tmp_path, standin):
    with open(tmp_path / "p.csv", "w") as fh:
        fh.write("frame,jawOpen,EyeBlinkLeft\n0,0.5,0.25\n1,1.0,0.75\n")
    cap = read_capture(tmp_path / "p.csv", fps=24)
    assert cap.fps == 24 and cap.names == ["jawOpen", "eyeBlinkLeft"]
    np.testing.assert_array_equal(cap.values, [[0.5, 0.25], [1.0, 0.75]])
    frames = [{"mouthSmileLeft": 0.2}, {"mouthSmileLeft": 0.4}]
    (tmp_path / "p.json").write_text(json.dumps({"fps": 50, "frames": frames}))
    cap = read_capture(tmp_path / "p.json")
    assert cap.fps == 50 and cap.values[:, 0].tolist() == pytest.approx([0.2, 0.4])
    expr, pose, _ = sources_to_targets(cap.values, cap.names, default_mapping(), list(standin.expr_names))
    assert expr[1, list(standin.expr_names).index("mouthSmileLeft")] == pytest.approx(0.4)


def test_custom_mapping_is_used_and_checked(tmp_path, standin, capsys):
    with open(tmp_path / "r.csv", "w") as fh:
        fh.write("frame,myBlink\n0,0.3\n")
    mp = tmp_path / "map.json"
    save_mapping([MapEntry("myBlink", "eyeBlinkRight", 2.0)], mp)
    take = tmp_path / "r.npz"
    assert cli_main(["import-capture", str(tmp_path / "r.csv"), "-o", str(take), "--mapping", str(mp)]) == 0
    assert load_motion(take).params.expr[0, list(standin.expr_names).index("eyeBlinkRight")] == pytest.approx(0.6)
    save_mapping([MapEntry("myBlink", "blinky", 1.0)], mp)
    capsys.readouterr()
    assert cli_main(["import-capture", str(tmp_path / "r.csv"), "-o", str(tmp_path / "r2.npz"),
                     "--mapping", str(mp)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: map.json: mapping myBlink -> blinky: unknown target 'blinky'") and "\n" not in err
    assert not (tmp_path / "r2.npz").exists()


def test_old_mapping_onto_the_24_expressions_is_carried_over(tmp_path, standin, capsys):
    """A mapping saved for the stand-in's old expressions (targets smile_L, blink_R, lips_press,
    jaw_open) keys the ARKit-52 shape keys by head.arkit_names.LEGACY_TO_ARKIT instead of failing;
    a target that is neither old nor new still gets the one-line error."""
    from backend.head.arkit_names import LEGACY_TO_ARKIT
    from backend.motion.arkit import load_mapping, upgrade_mapping

    names = list(standin.expr_names)
    old = [MapEntry("smileL", "smile_L", 1.0), MapEntry("blinkR", "blink_R", 0.5),
           MapEntry("press", "lips_press", 2.0), MapEntry("jaw", "jaw_open", 1.0),
           MapEntry("browL", "brow_up_L", 1.0), MapEntry("eyeBlinkLeft", "eyeBlinkLeft", 1.0),
           MapEntry("HeadYaw", "neck.y", 1.0)]
    new, converted = upgrade_mapping(old, names)
    assert converted == ["smile_L", "blink_R", "lips_press", "jaw_open", "brow_up_L"]
    assert [(e.source, e.target, e.gain) for e in new] == [
        ("smileL", "mouthSmileLeft", 1.0), ("blinkR", "eyeBlinkRight", 0.5),
        ("press", "mouthPressLeft", 2.0), ("press", "mouthPressRight", 2.0),
        ("jaw", "jawOpen", pytest.approx(0.25 / 0.35)),
        ("browL", "browOuterUpLeft", 1.0), ("browL", "browInnerUp", 0.5),
        ("eyeBlinkLeft", "eyeBlinkLeft", 1.0), ("HeadYaw", "neck.y", 1.0)]
    assert {t for e in LEGACY_TO_ARKIT.values() for t, _ in e} <= set(names)   # the table is complete
    assert upgrade_mapping(old, [f"exp_{i:03d}" for i in range(10)]) == (old, [])  # FLAME: untouched

    # through the command line: the old file imports, with those key values
    with open(tmp_path / "r.csv", "w") as fh:
        fh.write("frame,smileL,press,blinkR\n0,0.3,0.2,0.8\n1,0.6,0.1,0.0\n")
    mp = tmp_path / "old_map.json"
    save_mapping(old[:3], mp)
    take, written = tmp_path / "r.npz", tmp_path / "new_map.json"
    capsys.readouterr()
    assert cli_main(["import-capture", str(tmp_path / "r.csv"), "-o", str(take), "--mapping", str(mp),
                     "--write-mapping", str(written)]) == 0
    assert "old stand-in targets carried over to ARKit-52 (smile_L, blink_R, lips_press)" in capsys.readouterr().err
    e = load_motion(take).params.expr
    np.testing.assert_allclose(e[:, names.index("mouthSmileLeft")], [0.3, 0.6], atol=1e-6)
    np.testing.assert_allclose(e[:, names.index("mouthPressRight")], [0.4, 0.2], atol=1e-6)
    np.testing.assert_allclose(e[:, names.index("eyeBlinkRight")], [0.4, 0.0], atol=1e-6)
    assert {x.target for x in load_mapping(written)} == {"mouthSmileLeft", "mouthPressLeft", "mouthPressRight",
                                                         "eyeBlinkRight"}
    # an unknown name among old ones: still one clear line naming the file and the target
    save_mapping(old[:3] + [MapEntry("grin", "grin_L", 1.0)], mp)
    assert cli_main(["import-capture", str(tmp_path / "r.csv"), "-o", str(tmp_path / "r2.npz"),
                     "--mapping", str(mp)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: old_map.json: mapping grin -> grin_L: unknown target 'grin_L'") and "\n" not in err
    assert not (tmp_path / "r2.npz").exists()


def test_old_mapping_exports_through_the_arkit_keys(standin):
    """Export with an old mapping writes the ARKit keys' values back onto the mapping's sources."""
    from backend.head.params import HeadParams
    from backend.motion.files import Motion

    names = list(standin.expr_names)
    expr = np.zeros((2, 52), np.float32)
    expr[:, names.index("eyeBlinkLeft")] = [0.25, 0.75]
    p = HeadParams(np.zeros(standin.n_shape, np.float32), expr, np.zeros((2, 5, 3), np.float32),
                   np.zeros((2, 3), np.float32))
    cap = motion_to_capture(Motion(p, 30.0, "t", None, None, names), [MapEntry("eyeBlinkLeft", "blink_L", 1.0)], names)
    np.testing.assert_allclose(cap.values[:, cap.names.index("eyeBlinkLeft")], [0.25, 0.75], atol=1e-4)


@pytest.mark.parametrize("case, pattern", [
    ("missing", r"bad.csv: Live Link Face CSV without the column mouthClose"),
    ("unknown", r"bad.csv: unknown column 'Grin'"),
    ("nan", r"bad.csv: line 5, column eyeBlinkLeft: value is NaN"),
    ("range", r"bad.csv: line 4, column jawOpen: value 1.5 is outside \[0, 1\]"),
    ("order", r"bad.csv: line 7: the timecode does not increase"),
])
def test_bad_csv_gives_one_clear_line(tmp_path, case, pattern):
    vals = _values(10, 6).astype(object)
    header = list(LLF_HEADER)
    stamps = [format_timecode(i / 30, 30) for i in range(10)]
    if case == "missing":
        k = header.index("MouthClose")
        header.pop(k)
        vals = np.delete(vals, k - 2, 1)
    elif case == "unknown":
        header.append("Grin")
        vals = np.concatenate([vals, np.zeros((10, 1))], 1)
    elif case == "nan":
        vals[3, 0] = "nan"
    elif case == "range":
        vals[2, ARKIT_NAMES.index("jawOpen")] = 1.5
    elif case == "order":
        stamps[5] = stamps[3]
    path = _write_llf(tmp_path / "bad.csv", vals, stamps=stamps, header=header)
    with pytest.raises(InputError, match=pattern) as exc:
        read_capture(path)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("text, pattern", [
    ("time\n0.0\n0.1\n", r"bad.csv: no weight or angle columns"),           # a time column alone
    ('{"fps": 24, "names": [], "weights": [[0.5]]}', r"bad.csv: frame 0: 1 weights for 0 names"),
    ('{"fps": 24, "names": ["jawOpen"], "weights": [[0.5], [0.5, 0.2]]}', r"bad.csv: frame 1: 2 weights for 1 names"),
])
def test_a_capture_without_weight_columns_or_with_ragged_frames_gives_one_clear_line(tmp_path, text, pattern):
    """Found by the fuzzer (tests/fuzz, capture): these raised ValueError from max() or were read with
    a frame's extra weights dropped."""
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(InputError, match=pattern) as exc:
        read_capture(tmp_path / "bad.csv")
    assert "\n" not in str(exc.value)


def test_export_of_a_flame_take_warns_that_only_joints_are_written(tmp_path, capsys):
    from backend.head.params import HeadParams
    from backend.motion.files import Motion
    from backend.motion.takes import save_take

    pose = np.zeros((5, 5, 3), np.float32)
    pose[:, 2, 0] = 0.175                                    # jaw half open
    p = HeadParams(np.zeros(3), np.full((5, 4), 0.2), pose, np.zeros((5, 3)))
    save_take(Motion(p, 25.0, "x", None, None, [f"exp_{i:03d}" for i in range(4)]), tmp_path / "f.npz")
    assert cli_main(["export-capture", str(tmp_path / "f.npz"), "-o", str(tmp_path / "f.csv")]) == 0
    assert "f.npz: no expression column of the track is a mapping target" in capsys.readouterr().err
    cap = read_capture(tmp_path / "f.csv", timecode_fps=25)
    assert cap.fps == 25 and cap.values[:, cap.names.index("jawOpen")] == pytest.approx(0.5, abs=1e-5)


def test_legacy_standin_takes_load_in_the_arkit_basis(tmp_path, standin):
    """A take written against the stand-in's old 24-expression basis loads as ARKit weights."""
    from backend.head.arkit_names import LEGACY_STANDIN_NAMES
    from backend.head.params import HeadParams

    T = 3
    expr = np.zeros((T, 24), np.float32)
    expr[:, LEGACY_STANDIN_NAMES.index("smile_L")] = [0.2, 0.5, 0.9]
    expr[:, LEGACY_STANDIN_NAMES.index("lips_press")] = 0.4
    p = HeadParams(np.zeros(standin.n_shape, np.float32), expr, np.zeros((T, 5, 3), np.float32),
                   np.zeros((T, 3), np.float32))
    path = tmp_path / "old.npz"
    meta = {"format": "omg-head-params", "fps": 30.0, "expr_names": list(LEGACY_STANDIN_NAMES)}
    np.savez(path, shape=p.shape, expr=p.expr, pose=p.pose, transl=p.transl, metadata=json.dumps(meta))
    m = load_motion(path)
    assert m.expr_names == list(ARKIT_NAMES) and m.params.expr.shape == (T, 52)
    names = list(ARKIT_NAMES)
    np.testing.assert_allclose(m.params.expr[:, names.index("mouthSmileLeft")], [0.2, 0.5, 0.9])
    np.testing.assert_allclose(m.params.expr[:, names.index("mouthPressLeft")], 0.4)
    assert m.params.expr[:, names.index("mouthSmileRight")].max() == 0


def test_legacy_standin_avatar_expression_is_carried_over():
    """An .omgavatar built on the old stand-in stores 24 expression coefficients for its source
    frame: the loader carries them to ARKit-52; FLAME avatars' coefficients are left alone."""
    from backend.avatar.fileformat import _current_expr
    from backend.head.arkit_names import LEGACY_STANDIN_NAMES

    old = np.zeros((1, 24), np.float32)
    old[0, LEGACY_STANDIN_NAMES.index("blink_R")] = 0.7
    old[0, LEGACY_STANDIN_NAMES.index("jaw_open")] = 0.35
    new = _current_expr({"head_model": {"name": "standin", "path": None}}, old)
    assert new.shape == (1, 52)
    assert new[0, ARKIT_NAMES.index("eyeBlinkRight")] == pytest.approx(0.7)
    assert new[0, ARKIT_NAMES.index("jawOpen")] == pytest.approx(0.25)
    flame = np.ones((1, 24), np.float32)
    np.testing.assert_array_equal(_current_expr({"head_model": {"name": "flame", "path": "/x/f.pkl"}}, flame), flame)
