"""Figure records and the page renderer: round trips, placeholders, errors, running a command."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

from backend.errors import InputError, OMGError
from backend.figures.pages import RECORDS_DIR, Renderer, TemplateError, find_pages, render_all
from backend.figures.records import FigureRecord, dumps, read_record, write_record
from backend.figures.run import record_run, write_pages

MACHINE = {"cpu": "Test CPU", "cores": 2, "load_average": [1.5, 1.0, 0.5], "gpu": None}


def _record(figures, **kw) -> FigureRecord:
    return FigureRecord(command=kw.get("command", "python -m backend bench x --json {json}"),
                        date=kw.get("date", "2026-12-01T10:00:00Z"), commit=kw.get("commit", "unknown"),
                        machine=kw.get("machine", dict(MACHINE)), figures=figures, note=kw.get("note", ""))


def _site(tmp_path: Path, records: dict[str, FigureRecord], templates: dict[str, str]) -> Path:
    for name, rec in records.items():
        write_record(tmp_path / RECORDS_DIR / f"{name}.json", rec)
    for rel, text in templates.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_record_round_trip_is_byte_stable_and_nan_becomes_null(tmp_path: Path) -> None:
    rec = _record({"fps": [39.36, float("nan")], "n": 5, "pair": (1, 2)})
    path = write_record(tmp_path / "r.json", rec)
    text = path.read_text()
    assert json.loads(text)["figures"] == {"fps": [39.36, None], "n": 5, "pair": [1, 2]}
    back = read_record(path)
    assert dumps(back) == text
    assert list(json.loads(text)) == ["command", "date", "commit", "dirty", "machine", "figures"]


@pytest.mark.parametrize("broken, words", [
    ({"command": "x", "date": "2026-12-01", "commit": "unknown", "machine": MACHINE}, "lacks figures"),
    ({"command": "x", "date": "yesterday", "commit": "unknown", "machine": MACHINE, "figures": {}}, "date"),
    ({"command": "x", "date": "unknown", "commit": "unknown", "machine": {"cpu": "c"}, "figures": {}},
     "machine lacks cores, load_average, gpu"),
    ({"command": "", "date": "unknown", "commit": "unknown", "machine": MACHINE, "figures": {}}, "'command'"),
])
def test_bad_record_names_file_and_problem(tmp_path: Path, broken: dict, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(InputError) as err:
        read_record(path)
    assert "bad.json" in str(err.value) and words in str(err.value)


def test_placeholders_paths_aggregates_loops_and_footer(tmp_path: Path) -> None:
    figs = {"runs": [{"lod": 0, "fps": 74.16, "n": 14060}, {"lod": 1, "fps": 26.1, "n": 29420},
                     {"lod": 2, "fps": 8.08, "n": 90860}],
            "seconds": {"0": 0.047, "2": 0.0945}, "sampling + shoulders": 1.01, "none": None}
    tpl = ("# T\n\n{{! a comment }}\n"
           "LOD 2: {{ r:runs[lod=2].fps | .1f }} fps; {{r:runs[2].n | ,}} Gaussians; "
           "{{ r:seconds.2 * 1000 | .1f }} ms; {{ r:[\"sampling + shoulders\"] }} s; {{ r:none | .2f }}\n"
           "min {{min(r:runs[*].fps) | .2f}}, max {{max(r:runs[*].fps)|.2f}}, "
           "mean {{mean(r:runs[?lod=1].fps, r:runs[?lod=2].fps) | .2f}}, count {{len(r:runs)}}, "
           "not 0: {{len(r:runs[?lod!=0])}}\n\n"
           "| LOD | fps |\n|---|---|\n{{#each r:runs}}\n| {{.lod}} | {{ .fps | .1f }} |\n{{/each}}\n\n"
           "{{#each r:seconds}}{{@key}}={{. | .3f}};{{/each}}\n"
           "{{source r}}\n")
    root = _site(tmp_path, {"r": _record(figs, note="Reconstructed.")}, {"docs/figures/t.md.in": tpl})
    pages = render_all(root)
    text = pages[Path("docs/figures/t.md")]
    assert "LOD 2: 8.1 fps; 90,860 Gaussians; 94.5 ms; 1.01 s; n/a\n" in text
    assert "min 8.08, max 74.16, mean 17.09, count 3, not 0: 2\n" in text
    assert "| LOD | fps |\n|---|---|\n| 0 | 74.2 |\n| 1 | 26.1 |\n| 2 | 8.1 |\n\n" in text
    assert "0=0.047;2=0.095;\n" in text
    assert "comment" not in text
    src = "`python -m backend bench x --json {json}`; run 2026-12-01T10:00:00Z (UTC), commit unknown; " \
          "Test CPU, 2 cores, load average 1.50 / 1.00 / 0.50, no GPU. Reconstructed."
    assert text.count(src) == 2  # inline and in the footer's list of records
    assert "[`r`](records/r.json)" in text
    assert render_all(root) == pages  # no clock: the same bytes again


@pytest.mark.parametrize("placeholder, words", [
    ("{{ r:runs[lod=7].fps }}", "matches 0 items"),
    ("{{ r:runs[*].fps }}", "not one value"),
    ("{{ r:nope }}", "no key 'nope'"),
    ("{{ q:runs }}", "no record"),
    ("{{ .fps }}", "only valid inside"),
    ("{{ __import__('os') }}", "unknown name"),
    ("{{#each r:runs}} x", "without {{/each}}"),
])
def test_bad_placeholder_names_template_and_placeholder(tmp_path: Path, placeholder: str, words: str) -> None:
    root = _site(tmp_path, {"r": _record({"runs": [{"lod": 0, "fps": 1.0}]})},
                 {"docs/figures/bad.md.in": f"x {placeholder}\n"})
    with pytest.raises(TemplateError) as err:
        render_all(root)
    assert "bad.md.in" in str(err.value) and words in str(err.value)


def test_write_pages_writes_then_check_finds_nothing_to_change(tmp_path: Path) -> None:
    root = _site(tmp_path, {"r": _record({"v": 2.5})},
                 {"docs/report/a.md.in": "v = {{r:v}}\n", "docs/figures/sub/b.md.in": "w = {{r:v|.2f}}\n"})
    assert [p.output for p in find_pages(root)] == [Path("docs/figures/sub/b.md"), Path("docs/report/a.md")]
    assert sorted(write_pages(root)) == [Path("docs/figures/sub/b.md"), Path("docs/report/a.md")]
    assert "w = 2.50\n" in (root / "docs/figures/sub/b.md").read_text()
    assert "[`r`](../records/r.json)" in (root / "docs/figures/sub/b.md").read_text()
    assert "[`r`](../figures/records/r.json)" in (root / "docs/report/a.md").read_text()
    assert write_pages(root, check=True) == []
    (root / "docs/report/a.md").write_text("hand-edited\n")
    assert write_pages(root, check=True) == [Path("docs/report/a.md")]


def test_record_run_keeps_command_output_and_machine(tmp_path: Path) -> None:
    code = "import json,sys; json.dump({'fps': 12.5, 'n': [1, 2]}, open(sys.argv[1], 'w'))"
    path = record_run("demo", [sys.executable, "-c", code, "{json}"], root=tmp_path, note="test run")
    rec = read_record(path)
    assert path == tmp_path / RECORDS_DIR / "demo.json"
    assert rec.figures == {"fps": 12.5, "n": [1, 2]}
    assert rec.command.startswith("python -c ") and rec.command.endswith(" {json}")
    assert rec.commit == "unknown" and rec.dirty is None  # tmp_path is no git checkout
    assert rec.note == "test run"
    assert rec.machine["cores"] >= 1 and len(rec.machine["load_average"]) == 3
    assert "load_average_end" in rec.machine and "gpu" in rec.machine
    assert rec.date.endswith("Z") and rec.date[:2] == "20"
    with pytest.raises(InputError, match="record exists"):
        record_run("demo", [sys.executable, "-c", code, "{json}"], root=tmp_path)
    assert read_record(path).figures == rec.figures


def test_record_run_writes_nothing_when_the_command_fails(tmp_path: Path) -> None:
    with pytest.raises(OMGError, match="exited with 3; no record written"):
        record_run("fail", [sys.executable, "-c", "import sys; sys.exit(3)", "{json}"], root=tmp_path)
    with pytest.raises(OMGError, match="put {json}"):
        record_run("fail", [sys.executable, "-c", "pass"], root=tmp_path)
    assert not (tmp_path / RECORDS_DIR).exists() or not any((tmp_path / RECORDS_DIR).iterdir())


def test_record_options_after_the_name_are_not_taken_for_the_command() -> None:
    from backend.cli import build_parser
    from backend.commands.figures import _split_options

    args = build_parser().parse_args(["figures", "record", "x", "--replace", "--note", "why", "--",
                                      "python", "-m", "backend", "bench", "fit", "--json", "{json}"])
    replace, note, cmd = _split_options(list(args.cmd), args.replace, args.note)
    assert (replace, note, cmd) == (True, "why", ["python", "-m", "backend", "bench", "fit", "--json", "{json}"])
    with pytest.raises(OMGError, match="unknown option '--bogus'"):
        _split_options(["--bogus", "--", "python"], False, "")


def test_eval_report_puts_another_records_summary_or_baseline_beside_it(tmp_path: Path) -> None:
    """``{{eval_report NAME before=OTHER[:baseline]}}``: the headline gains a *before* column from the
    other record (its summary, labelled with its commit and date, or the baseline it carries)."""
    repo = Path(__file__).resolve().parents[2] / RECORDS_DIR
    now, old = read_record(repo / "eval_portrait_session17_start.json"), read_record(repo / "eval_portrait_cpu.json")
    old.commit = "ff75156" + "0" * 33
    root = _site(tmp_path, {"now": now, "old": old}, {
        "docs/report/a.md.in": "{{eval_report now before=old}}\n",
        "docs/report/b.md.in": "{{eval_report now before=old:baseline}}\n",
        "docs/report/c.md.in": "{{eval_report now}}\n"})
    pages = render_all(root)
    a, b, c = (pages[Path(f"docs/report/{k}.md")] for k in "abc")
    row = "| source view PSNR full | {} | {} |"
    now_v = now.figures["summary"]["lod2"]["reconstruction"]["psnr_full"]
    assert row.format(f"{old.figures['summary']['lod2']['reconstruction']['psnr_full']:.2f}", f"{now_v:.2f}") in a
    assert "*before* = the same evaluation on commit ff75156, run 2026-12-03" in a
    assert row.format(f"{old.figures['baseline']['lod2']['reconstruction']['psnr_full']:.2f}", f"{now_v:.2f}") in b
    assert "| before, LOD2 | now, LOD2 |" in a and "before, LOD2" not in c
    assert "[`old`](../figures/records/old.json)" in a  # the other record is listed as used
    for bad, words in (("before=old:summary", "only RECORD or RECORD:baseline"), ("after=old", "unknown option"),
                       ("before=now:baseline", "carries no baseline")):
        (root / "docs/report/d.md.in").write_text(f"{{{{eval_report now {bad}}}}}\n")
        with pytest.raises(TemplateError) as err:
            render_all(root)
        assert "d.md.in" in str(err.value) and words in str(err.value)
        (root / "docs/report/d.md.in").unlink()


def test_figures_plots_makes_an_eval_records_report_plots(tmp_path: Path, capsys) -> None:
    """``figures plots NAME DIR``: the report's plots of a committed eval record, the same bytes as
    the committed docs/report ones made from it; an unknown record is a message naming it."""
    import argparse

    from backend.commands import figures as cmd

    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    repo = Path(__file__).resolve().parents[2]
    # the record the committed report is rendered from (its template's eval_report line)
    name = re.search(r"\{\{eval_report (\w+)", (repo / "docs/report/README.md.in").read_text()).group(1)
    assert cmd.run(p.parse_args(["plots", name, str(tmp_path)])) == 0
    for png in ("reconstruction.png", "self_reenactment.png"):
        assert (tmp_path / png).read_bytes() == (repo / "docs/report" / png).read_bytes(), png
    with pytest.raises((InputError, OMGError)) as err:
        cmd.run(p.parse_args(["plots", "no_such_record", str(tmp_path / "x")]))
    assert "no_such_record" in str(err.value)


def test_figures_plots_keeps_a_folders_own_files_without_replace(tmp_path: Path) -> None:
    """In a folder other than docs/report, plots of the same names are the user's: the command
    stops before writing, naming them, and replaces them only with --replace."""
    import argparse

    from backend.commands import figures as cmd

    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    mine = tmp_path / "self_reenactment.png"
    mine.write_bytes(b"my own plot")
    with pytest.raises(InputError) as err:
        cmd.run(p.parse_args(["plots", "eval_portrait_session17_start", str(tmp_path)]))
    assert "self_reenactment.png" in str(err.value) and "--replace" in str(err.value)
    assert mine.read_bytes() == b"my own plot" and not (tmp_path / "reconstruction.png").exists()
    assert cmd.run(p.parse_args(["plots", "eval_portrait_session17_start", str(tmp_path), "--replace"])) == 0
    assert mine.read_bytes().startswith(b"\x89PNG") and (tmp_path / "reconstruction.png").exists()
    assert not [f for f in tmp_path.iterdir() if ".omg-tmp-" in f.name]
