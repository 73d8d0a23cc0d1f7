"""The committed figure pages are exactly what `python -m backend figures` renders from the records."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backend.figures.pages import find_pages, render_all

ROOT = Path(__file__).resolve().parents[2]


def test_every_committed_page_reproduces_byte_for_byte() -> None:
    pages = render_all(ROOT)
    assert pages, "no page templates found"
    for rel, text in pages.items():
        assert (ROOT / rel).read_text() == text, f"{rel} differs from its records: run `python -m backend figures`"


def test_figures_check_command_passes_on_the_checkout() -> None:
    proc = subprocess.run([sys.executable, "-m", "backend", "figures", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_every_page_with_a_template_is_tracked_beside_it() -> None:
    for page in find_pages(ROOT):
        assert (ROOT / page.output).is_file(), f"{page.output} not rendered"


def test_every_committed_record_is_valid_and_quoted_by_a_page() -> None:
    from backend.figures.pages import RECORDS_DIR, Renderer
    from backend.figures.records import read_record

    renderer = Renderer(ROOT)
    used: set[str] = set()
    for page in find_pages(ROOT):
        renderer.render_page(page)
        used |= set(page.records_used)
    for path in sorted((ROOT / RECORDS_DIR).glob("*.json")):
        rec = read_record(path)  # raises, naming the file, when it is not a record
        assert rec.command != "unknown", f"{path.name}: a record needs the command that produced it"
        assert path.stem in used, f"{path.name} is quoted by no page template (docs/**/*.md.in)"


def test_every_figure_page_is_generated() -> None:
    """No hand-typed figure page: each .md under docs/figures and docs/report has its template
    (docs/figures/README.md, the how-to, quotes no figures)."""
    from backend.figures.pages import PAGE_ROOTS

    generated = {p.output for p in find_pages(ROOT)}
    pages = {p.relative_to(ROOT) for base in PAGE_ROOTS for p in (ROOT / base).rglob("*.md")}
    hand = sorted(str(p) for p in pages - generated - {Path("docs/figures/README.md")})
    assert not hand, f"pages without a template (X.md.in) and records: {hand}"
