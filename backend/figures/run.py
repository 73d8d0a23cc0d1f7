"""Run a measuring command and keep its JSON output as a figure record; write/check the pages."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import InputError, OMGError
from ..output_safety import atomic_write_text, check_output_file
from .machine import end_load, machine_record
from .pages import RECORDS_DIR, render_all
from .records import NAME_RE, FigureRecord, git_state, utc_now, write_record

JSON_PLACEHOLDER = "{json}"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _shown(argv: list[str]) -> str:
    """The command as a reader would type it: the interpreter's path shown as ``python``."""
    shown = list(argv)
    if shown and Path(shown[0]).name.startswith("python"):
        shown[0] = "python"
    return shlex.join(shown).replace("'{json}'", "{json}")


def record_run(name: str, argv: list[str], root: Path = REPO_ROOT, replace: bool = False,
               note: str = "") -> Path:
    """Run ``argv`` in ``root`` (``{json}`` in it = where the command writes its JSON) and write
    ``root/docs/figures/records/<name>.json``. Nothing is written when the command fails."""
    if not NAME_RE.match(name):
        raise OMGError(f"record name {name!r}: use lower-case letters, digits and '_' only")
    target = root / RECORDS_DIR / f"{name}.json"
    if target.exists() and not replace:
        raise InputError(target, "record exists; pass --replace to re-measure it")
    check_output_file(target)  # before the (long) run, not after it
    if not argv:
        raise OMGError("figures record: give the command after '--'")
    if not any(JSON_PLACEHOLDER in a for a in argv):
        raise OMGError(f"figures record: put {JSON_PLACEHOLDER} where the command takes its JSON output path "
                       "(e.g. --json {json})")
    with tempfile.TemporaryDirectory(prefix="omg_figures_") as tmp:
        out = Path(tmp) / "figures.json"
        run_argv = [a.replace(JSON_PLACEHOLDER, str(out)) for a in argv]
        machine = machine_record()
        date = utc_now()
        commit, dirty = git_state(root)
        rc = subprocess.run(run_argv, cwd=root).returncode
        machine["load_average_end"] = end_load()
        if rc != 0:
            raise OMGError(f"figures record: the command exited with {rc}; no record written")
        if not out.is_file():
            raise OMGError(f"figures record: the command wrote nothing at {JSON_PLACEHOLDER}; no record written")
        try:
            figures = json.loads(out.read_text())
        except json.JSONDecodeError as exc:
            raise OMGError(f"figures record: the command's JSON is invalid (line {exc.lineno}: {exc.msg})") from None
    record = FigureRecord(command=_shown(argv), date=date, commit=commit, dirty=dirty, machine=machine,
                          figures=figures, note=note)
    return write_record(target, record)


def write_pages(root: Path = REPO_ROOT, check: bool = False) -> list[Path]:
    """Render every page; write them (or, with ``check``, only compare). Returns the pages that
    differed from the files on disk before."""
    changed = []
    for rel, text in render_all(root).items():
        path = root / rel
        old = path.read_text() if path.is_file() else None
        if old != text:
            changed.append(rel)
            if not check:
                atomic_write_text(path, text)
    return changed


def main_render(check: bool, root: Path = REPO_ROOT) -> int:
    changed = write_pages(root, check=check)
    for rel in changed:
        print(f"{'differs' if check else 'wrote'}: {rel}", file=sys.stderr if check else sys.stdout)
    if check and changed:
        print(f"{len(changed)} page(s) differ from their records: run `python -m backend figures`",
              file=sys.stderr)
        return 1
    return 0
