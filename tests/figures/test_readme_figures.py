"""README's "Measured figures" quotes only numbers that appear in the generated pages it links to."""

from __future__ import annotations

import re
from pathlib import Path

from backend.figures.pages import find_pages

ROOT = Path(__file__).resolve().parents[2]
# a number token: 5,286 / 0.84 / 1.6e-3 / 33 / the 7.17 of 7.17M; not the digits after a letter (H100, 512x512)
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:e-?\d+)?(?![\d.]\d|\d)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def canonical(token: str) -> str:
    """'5,286' -> '5286', '1.6e-03' -> '1.6e-3', '-0' stays: the same number written two ways matches."""
    t = token.replace(",", "")
    if "e" in t:
        mant, exp = t.split("e")
        return f"{mant}e{int(exp)}"
    return t


def numbers(text: str) -> set[str]:
    text = LINK.sub("]", text)                 # link targets are paths, not figures
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    return {canonical(m.group(0)) for m in NUMBER.finditer(text)}


def measured_section(readme: str) -> str:
    start = readme.index("\n## Measured figures")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def items(section: str) -> list[str]:
    """The section split at paragraphs that open with a bold title ('**Build** ...'); the intro is
    the first item. A table or a picture belongs to the item above it."""
    return re.split(r"\n\n(?=\*\*)", section)


def test_numbers_in_the_split_helpers() -> None:
    assert numbers("LOD 0/1/2 at 512x512 on an H100: 5,286 Gaussians, 1.6e-03 and 4e-5, 33.6 s; "
                   "28.2-46.1 [p](docs/figures/x2.md)") == {"0", "1", "2", "512", "5286", "1.6e-3", "4e-5", "33.6", "28.2", "46.1"}


def test_every_readme_figure_occurs_in_a_linked_generated_page() -> None:
    readme = (ROOT / "README.md").read_text()
    generated = {p.output.as_posix(): (ROOT / p.output).read_text() for p in find_pages(ROOT)}
    problems = []
    for item in items(measured_section(readme)):
        nums = numbers(item)
        if not nums:
            continue
        linked = [t.split("#")[0] for t in LINK.findall(item)]
        pages = [generated[t] for t in linked if t in generated]
        title = item.strip().splitlines()[0][:60]
        if not pages:
            problems.append(f"{title!r}: quotes figures but links no generated page")
            continue
        found = set().union(*(numbers(p) for p in pages))
        missing = sorted(nums - found)
        if missing:
            problems.append(f"{title!r}: {missing} appear in none of {linked}")
    assert not problems, "\n".join(problems)
