"""``python -m backend figures``: re-render docs/figures and docs/report from their JSON records.

``python -m backend figures [--check]``
    render every page ``X.md`` from its template ``X.md.in`` and ``docs/figures/records/*.json``
    (``--check``: write nothing, exit 1 when a committed page differs).
``python -m backend figures record NAME [--replace] [--note TEXT] -- COMMAND ... --json {json} ...``
    run COMMAND in the repository root and keep its JSON output as ``docs/figures/records/NAME.json``
    with the command, UTC date, git commit and machine (CPU, cores, load average at start and end, GPU).
``python -m backend figures plots NAME [DIR] [--replace]``
    make the evaluation report's PNG plots from the ``eval --json`` record NAME in DIR (default
    docs/report), for a report page rendered from that record. Plots already in a DIR other than the
    project's docs/report are kept (the command stops, naming them) unless ``--replace``.
See docs/figures/README.md.
"""

from __future__ import annotations

import argparse

from ..errors import OMGError

HELP = "re-render the figure pages from their records, or run a command and record its figures"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a committed page differs from its records")
    sub = parser.add_subparsers(dest="action", metavar="[record | plots]")
    rec = sub.add_parser("record", help="run a measuring command and write its figure record",
                         description="run COMMAND (with {json} where its --json path goes) and write "
                                     "docs/figures/records/NAME.json")
    rec.add_argument("name", help="record name: lower-case letters, digits, '_'")
    rec.add_argument("--replace", action="store_true", help="re-measure an existing record")
    rec.add_argument("--note", default="", help="a sentence kept with the record (e.g. why it was re-run)")
    rec.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ... {json} ...")
    plots = sub.add_parser("plots", help="make an eval record's report plots (PNG)",
                           description="write the evaluation report's plots of record NAME into DIR")
    plots.add_argument("name", help="an eval record in docs/figures/records")
    plots.add_argument("dir", nargs="?", default="docs/report", help="output folder (default docs/report)")
    plots.add_argument("--replace", action="store_true",
                       help="replace plots of the same names already in DIR (docs/report's are always remade)")


def _split_options(tokens: list[str], replace: bool, note: str) -> tuple[bool, str, list[str]]:
    """argparse's REMAINDER also swallows the record's own options written after NAME: take
    ``--replace`` / ``--note TEXT`` from before the ``--``; everything after it is the command."""
    if "--" not in tokens:
        return replace, note, tokens
    cut = tokens.index("--")
    own, cmd = tokens[:cut], tokens[cut + 1:]
    while own:
        opt = own.pop(0)
        if opt == "--replace":
            replace = True
        elif opt == "--note" and own:
            note = own.pop(0)
        elif opt.startswith("--note="):
            note = opt.split("=", 1)[1]
        else:
            raise OMGError(f"figures record: unknown option {opt!r} before '--'")
    return replace, note, cmd


def _check_plots_dir(out, report_dir, replace: bool) -> None:
    """Refuse, before anything is written, to replace plot files in a folder other than the
    project's own report folder (whose plots the command exists to remake) without ``replace``."""
    import os

    from ..eval.report import PLOT_FILES
    from ..output_safety import OutputError, check_output_dir

    check_output_dir(out)
    if replace or (out.exists() and report_dir.exists() and os.path.samefile(out, report_dir)):
        return
    there = [name for name in PLOT_FILES if (out / name).exists()]
    if there:
        raise OutputError(out, f"already holds {', '.join(there)}; pass --replace to overwrite them, "
                               "or choose another folder")


def run(args: argparse.Namespace) -> int:
    from ..figures.run import main_render, record_run

    if getattr(args, "action", None) == "record":
        replace, note, cmd = _split_options(list(args.cmd), args.replace, args.note)
        path = record_run(args.name, cmd, replace=replace, note=note)
        print(f"wrote {path}; now reference it in a page template and run `python -m backend figures`")
        return 0
    if getattr(args, "action", None) == "plots":
        from pathlib import Path

        from ..eval.report import write_plots
        from ..eval.results import results_from_dict
        from ..figures.records import read_record
        from ..figures.run import REPO_ROOT

        rec = read_record(REPO_ROOT / "docs/figures/records" / f"{args.name}.json")
        out = Path(args.dir)
        _check_plots_dir(out, REPO_ROOT / "docs/report", args.replace)
        made = write_plots(results_from_dict(rec.figures), out)
        print("wrote " + ", ".join(f"{args.dir}/{f}" for f in made.values() if f) + f" from record {args.name}")
        return 0
    return main_render(check=args.check)
