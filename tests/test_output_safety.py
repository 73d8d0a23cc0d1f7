"""backend.output_safety: outputs checked before the work, written atomically, inputs never lost."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from backend.cli import main
from backend.errors import InputError
from backend.output_safety import (TMP_MARK, AtomicFile, OutputError, atomic_path, atomic_write_text,
                                   check_output_dir, check_output_file, fresh_dir_name, inside)

UNWRITABLE = Path("/proc/omg-avatar-out")  # not creatable even by root (the CI user here)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if TMP_MARK in p.name]


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".json" and TMP_MARK in tmp.name
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing at the target changes before the end
    assert target.read_text() == "new" and not leftovers(tmp_path)
    for exc in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with atomic_path(target) as tmp:
                tmp.write_text("half")
                raise exc
        assert target.read_text() == "new" and not leftovers(tmp_path)
    # a write error becomes one line naming the target; nothing replaced
    with pytest.raises(OutputError, match="a.json: cannot write the file .*nothing was replaced"):
        with atomic_path(target) as tmp:
            raise OSError(28, "No space left on device")
    assert target.read_text() == "new" and not leftovers(tmp_path)


def test_atomic_file_commit_and_discard(tmp_path):
    target = tmp_path / "sub" / "v.mp4"
    f = AtomicFile(target)
    assert f.tmp.parent.is_dir() and f.tmp.suffix == ".mp4"
    f.tmp.write_bytes(b"x")
    assert f.commit() == target and target.read_bytes() == b"x"
    assert f.commit() == target  # idempotent
    g = AtomicFile(target)
    g.tmp.write_bytes(b"y")
    g.discard()
    g.discard()
    assert target.read_bytes() == b"x" and not g.tmp.exists()
    with pytest.raises(RuntimeError):
        g.commit()
    atomic_write_text(target, "z")
    assert target.read_text() == "z"


def test_checks(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"clip")
    link = tmp_path / "alias.mp4"
    link.symlink_to(clip)
    with pytest.raises(OutputError, match="clip.mp4: the output video is also an input"):
        check_output_file(clip, [clip], what="output video")
    with pytest.raises(OutputError, match="also an input"):  # the same file through a link
        check_output_file(link, [clip])
    with pytest.raises(OutputError, match="existing folder"):
        check_output_file(tmp_path, [])
    with pytest.raises(OutputError, match="must end in .mp4"):
        check_output_file(tmp_path / "x.avi", [], suffixes=(".mp4",))
    with pytest.raises(OutputError, match="existing file, not a folder"):
        check_output_dir(clip)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_dir(clip / "sub")
    with pytest.raises(OutputError, match="cannot write in /proc"):
        check_output_dir(UNWRITABLE)
    deep = tmp_path / "a" / "b" / "c"
    assert check_output_dir(deep) == deep and not (tmp_path / "a").exists()  # creates nothing
    assert check_output_file(tmp_path / "n" / "x.ply") == tmp_path / "n" / "x.ply"
    assert not (tmp_path / "n").exists()
    for bad in ("../x", "a/b", "..", "", "/etc/x"):
        with pytest.raises(OutputError, match="plain file name"):
            inside(tmp_path, bad)
    assert inside(tmp_path, "ok") == tmp_path / "ok"
    d = fresh_dir_name(tmp_path, "eval-report")
    assert not d.exists() and d.parent == tmp_path and d.name.startswith("eval-report-")
    assert not leftovers(tmp_path)


def _fast_fail(argv: list[str], match: str, capsys) -> None:
    t0 = time.perf_counter()
    rc = main(argv)
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 1 and match in err and "Traceback" not in err, err
    # the tripwires below prove no work started; the time is printed, not gated (timing is for benchmarks)
    print(f"{argv[0]} refused its output in {seconds:.2f} s")


def test_unusable_outputs_fail_before_any_work(tmp_path, capsys, monkeypatch):
    import backend.avatar.build as build_mod
    import backend.face.track as track_mod

    def must_not_run(*a, **k):
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr(build_mod, "build_avatar", must_not_run)  # a tripwire, not a stand-in
    monkeypatch.setattr(track_mod, "track_video", must_not_run)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(os.urandom(1000))
    before = clip.read_bytes()
    photo = tmp_path / "me.png"
    photo.write_bytes(b"png")
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep")
    _fast_fail(["retarget", "avatar.omgavatar", str(clip), "-o", str(clip)], "also an input", capsys)
    _fast_fail(["retarget", "avatar.omgavatar", str(clip), "-o", str(tmp_path / "r.mp4"),
                "--save-track", str(clip)], "also an input", capsys)
    _fast_fail(["build", str(photo), "-o", str(a_file)], "existing file, not a folder", capsys)
    _fast_fail(["build", str(photo), "-o", str(UNWRITABLE)], "cannot write in /proc", capsys)
    _fast_fail(["build", str(photo), "-o", str(tmp_path), "--name", "../../x"], "plain file name", capsys)
    _fast_fail(["build", str(photo), "-o", str(tmp_path), "--json", str(photo)], "also an input", capsys)
    _fast_fail(["track", str(clip), "-o", str(clip)], "also an input", capsys)
    _fast_fail(["track", str(clip), "-o", str(tmp_path)], "existing folder", capsys)
    kept = tmp_path / "kept.cal.npz"          # a kept calibration is an input: no output may replace it
    kept.write_bytes(b"calibration")
    _fast_fail(["track", str(clip), "-o", str(kept), "--avatar", "a.omgavatar", "--calibration", str(kept)],
               "also an input", capsys)
    _fast_fail(["retarget", "avatar.omgavatar", str(clip), "-o", str(tmp_path / "r.mp4"), "--calibration", str(kept),
                "--json", str(kept)], "also an input", capsys)
    assert kept.read_bytes() == b"calibration"
    _fast_fail(["render", "a.omgavatar", str(clip), "-o", str(clip)], "existing file", capsys)
    _fast_fail(["export-ply", "a.omgavatar", "-o", str(UNWRITABLE)], "cannot write", capsys)
    _fast_fail(["export-ply", "a.omgavatar", "-o", str(tmp_path), "--name", "../x"], "plain file name",
               capsys)
    assert clip.read_bytes() == before and photo.read_bytes() == b"png" and a_file.read_text() == "keep"
    assert not (Path("..") / "x.omgavatar").exists()


def test_build_into_a_folder_with_an_earlier_avatar_needs_force(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"me.omgavatar": os.urandom(300), "me_lod1.ply": os.urandom(200),
               "me_preview_source.png": os.urandom(100), "other.omgavatar": os.urandom(50)}
    for name, data in earlier.items():
        (out / name).write_bytes(data)
    photo = tmp_path / "me.png"
    photo.write_bytes(b"not read")
    _fast_fail(["build", str(photo), "-o", str(out)], "already holds an avatar named 'me'", capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier


def test_eval_defaults_to_a_fresh_folder(tmp_path, monkeypatch):
    from backend.cli import build_parser

    args = build_parser().parse_args(["eval"])
    assert args.out is None  # never docs/report unless named
    monkeypatch.chdir(tmp_path)
    from backend.commands import eval as eval_cmd

    # --from-json re-renders from a figures file; the default output is a new folder here
    (tmp_path / "docs" / "report").mkdir(parents=True)
    (tmp_path / "docs" / "report" / "README.md").write_text("committed")
    args = build_parser().parse_args(["eval", "--from-json", str(tmp_path / "absent.json")])
    with pytest.raises(InputError, match="absent.json: not a readable eval figures file"):
        eval_cmd.run(args)
    assert str(args.out).startswith("eval-report-")
    assert (tmp_path / "docs" / "report" / "README.md").read_text() == "committed"


def test_build_sample_name_matches_the_sample():
    from backend.avatar.sample_portrait import SAMPLE_NAME
    from backend.commands import build

    assert build.SAMPLE_NAME == SAMPLE_NAME
