"""Render the figure pages (docs/**/X.md) from their templates (X.md.in) and the JSON records.

A template is markdown with placeholders; every number on a page comes from a record through one:

``{{ NAME:PATH }}`` / ``{{ NAME:PATH | SPEC }}``
    a value of record ``docs/figures/records/NAME.json``'s ``figures``, formatted with Python's
    format spec SPEC (``.2f``, ``,``, ``.1e`` ...); None/NaN print as ``n/a``. PATH steps:
    ``key`` / ``.key`` / ``["key with spaces"]``, ``[3]`` (list index), ``[*]`` (every item),
    ``[lod=2]`` or ``[photo=a.jpg&lod=2]`` (the one item matching; an error unless exactly one),
    ``[?lod=2]`` / ``[?photo!=astronaut]`` (every item matching).
``{{ mean(NAME:runs[*].fps) * 1000 | .1f }}``
    an arithmetic expression (+ - * / and parentheses) over values, with min, max, mean, median,
    sum, len, abs, round (aggregates flatten the lists that ``[*]`` / ``[?..]`` give).
``{{#each EXPR}} ... {{/each}}``
    the body once per item of a list (or value of an object, in its order); inside, ``.PATH`` (or
    ``.`` alone) reads the current item and ``{{@key}}`` gives the object's key.
``{{source NAME}}``
    the record's command, UTC date, commit and machine (CPU, cores, load average, GPU) in one line.
``{{eval_report NAME}}`` / ``{{eval_report NAME before=OTHER}}`` / ``{{eval_report NAME before=OTHER:baseline}}``
    the whole evaluation report (backend.eval.report) of an ``eval --json`` record; ``before=``
    puts another record's summary (or the baseline that record carries) beside it, labelled with
    that run's commit and date.
``{{! comment }}``
    dropped.

Every page ends with a list of the records it used (command, date, commit, machine). Rendering
has no clock and no randomness, so the same records and templates give the same bytes.
"""

from __future__ import annotations

import ast
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from .machine import describe
from .records import FigureRecord, read_record

TEMPLATE_SUFFIX = ".md.in"
RECORDS_DIR = Path("docs/figures/records")
PAGE_ROOTS = (Path("docs/figures"), Path("docs/report"))
RENDER_COMMAND = "python -m backend figures"

_TAG = re.compile(r"\{\{(.*?)\}\}")
# a block tag alone on its line: the line (and its newline) disappears from the output
_BLOCK_LINE = re.compile(r"^[ \t]*(\{\{[#/!][^}]*\}\})[ \t]*\n", re.M)
_REF = re.compile(r"(?<![\w.\]])(?:[a-z0-9_]+:|\.)(?:[A-Za-z0-9_*\-]+|\.[A-Za-z0-9_*\-]+|\[[^\]]*\])*")
_STEP = re.compile(r"\.?([A-Za-z0-9_*\-]+)|\[([^\]]*)\]")


class TemplateError(InputError):
    """A placeholder that cannot be rendered: names the template, the placeholder and why."""


class _Multi(list):
    """Values gathered by ``[*]`` / ``[?..]`` (as opposed to a list stored in the record)."""


@dataclass
class Page:
    template: Path                      # docs/.../X.md.in
    output: Path                        # docs/.../X.md
    records_used: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- paths and values

def _match(item: Any, cond: str) -> bool:
    if not isinstance(item, dict):
        return False
    for part in cond.split("&"):
        key, _, want = part.partition("=")
        negate = key.endswith("!")
        have = item.get(key.rstrip("!").strip())
        if _equal(have, want.strip()) == negate:
            return False
    return True


def _equal(have: Any, want: str) -> bool:
    if str(have) == want:
        return True
    try:
        return have is not None and float(have) == float(want)
    except (TypeError, ValueError):
        return False


def _steps(path: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            raise ValueError(f"cannot read path {path!r} at {path[pos:]!r}")
        pos = m.end()
        if m.group(1) is not None:
            word = m.group(1)
            out.append(("all", "") if word == "*" else ("key", word))
            continue
        inner = m.group(2).strip()
        if inner == "*":
            out.append(("all", ""))
        elif inner.startswith("?"):
            out.append(("filter", inner[1:]))
        elif "=" in inner:
            out.append(("select", inner))
        elif re.fullmatch(r"-?\d+", inner):
            out.append(("index", inner))
        else:
            out.append(("key", inner.strip("\"'")))
    return out


def _walk(obj: Any, steps: list[tuple[str, str]], path: str) -> Any:
    if not steps:
        return obj
    (kind, arg), rest = steps[0], steps[1:]
    if kind in ("all", "filter"):
        if isinstance(obj, dict) and kind == "all":
            items = list(obj.values())
        elif isinstance(obj, list):
            items = obj if kind == "all" else [x for x in obj if _match(x, arg)]
        else:
            raise ValueError(f"{path}: [*] / [?..] needs a list, found {type(obj).__name__}")
        if kind == "filter" and not items:
            raise ValueError(f"{path}: no item matches [?{arg}]")
        return _Multi(_walk(x, rest, path) for x in items)
    if kind == "select":
        if not isinstance(obj, list):
            raise ValueError(f"{path}: [{arg}] needs a list, found {type(obj).__name__}")
        items = [x for x in obj if _match(x, arg)]
        if len(items) != 1:
            raise ValueError(f"{path}: [{arg}] matches {len(items)} items, not exactly one")
        return _walk(items[0], rest, path)
    if isinstance(obj, _Multi):
        return _Multi(_walk(x, steps, path) for x in obj)
    if kind == "index" or (kind == "key" and isinstance(obj, list) and arg.lstrip("-").isdigit()):
        if not isinstance(obj, list) or not -len(obj) <= int(arg) < len(obj):
            raise ValueError(f"{path}: no item [{arg}]")
        return _walk(obj[int(arg)], rest, path)
    if not isinstance(obj, dict) or arg not in obj:
        raise ValueError(f"{path}: no key {arg!r}")
    return _walk(obj[arg], rest, path)


def _flat(values: Any) -> list[float]:
    if isinstance(values, list):
        out: list[float] = []
        for v in values:
            out += _flat(v)
        return out
    if values is None:
        return []
    if isinstance(values, bool) or not isinstance(values, (int, float)):
        raise ValueError(f"cannot aggregate {values!r}")
    return [] if isinstance(values, float) and math.isnan(values) else [values]


def _agg(fn: Callable[[list[float]], Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        vals = _flat(list(args))
        if not vals:
            raise ValueError("nothing to aggregate")
        return fn(vals)
    return call


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": _agg(min), "max": _agg(max), "sum": _agg(sum),
    "mean": _agg(lambda v: sum(v) / len(v)), "median": _agg(statistics.median),
    "len": lambda x: len(x), "abs": abs, "round": round,
}
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub,
            ast.UAdd, ast.Constant, ast.Name, ast.Load, ast.Call)


def format_value(v: Any, spec: str) -> str:
    if isinstance(v, _Multi) or isinstance(v, (list, dict)):
        raise ValueError("is a list or object, not one value (use [*] with min/max/mean, or #each)")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, spec) if spec else str(v)


# ---------------------------------------------------------------- rendering

@dataclass
class _Ctx:
    records: dict[str, FigureRecord]
    page: Page
    root: Path
    item: Any = None
    has_item: bool = False
    key: str | None = None              # the item's key when #each walks an object


class Renderer:
    """Renders templates against the records under ``root / RECORDS_DIR`` (loaded once)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._records: dict[str, FigureRecord] = {}

    def record(self, name: str, where: Path) -> FigureRecord:
        if name not in self._records:
            path = self.root / RECORDS_DIR / f"{name}.json"
            if not path.is_file():
                raise TemplateError(where, f"no record {RECORDS_DIR / (name + '.json')}")
            self._records[name] = read_record(path)
        return self._records[name]

    # -- expressions
    def _ref(self, ref: str, ctx: _Ctx, where: Path) -> Any:
        if ref.startswith("."):
            if not ctx.has_item:
                raise ValueError(f"{ref}: a relative path is only valid inside {{{{#each}}}}")
            return _walk(ctx.item, _steps(ref[1:]) if ref != "." else [], ref)
        name, _, path = ref.partition(":")
        rec = self.record(name, where)
        if name not in ctx.page.records_used:
            ctx.page.records_used.append(name)
        return _walk(rec.figures, _steps(path), ref)

    def evaluate(self, expr: str, ctx: _Ctx, where: Path) -> Any:
        values: dict[str, Any] = {}

        def sub(m: re.Match) -> str:
            key = f"_v{len(values)}"
            values[key] = self._ref(m.group(0), ctx, where)
            return key

        code = _REF.sub(sub, expr.strip())
        tree = ast.parse(code, mode="eval")
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED):
                raise ValueError(f"{type(node).__name__} is not allowed in a placeholder")
            if isinstance(node, ast.Name) and node.id not in values and node.id not in FUNCTIONS:
                raise ValueError(f"unknown name {node.id!r}")
        env = dict(FUNCTIONS, **values)
        return eval(compile(tree, "<placeholder>", "eval"), {"__builtins__": {}}, env)  # noqa: S307 (checked AST)

    # -- directives
    def source_line(self, name: str, where: Path, page: Page) -> str:
        rec = self.record(name, where)
        if name not in page.records_used:
            page.records_used.append(name)
        return provenance(rec)

    def eval_report(self, args: str, where: Path, page: Page) -> str:
        from ..eval.report import render_markdown
        from ..eval.results import results_from_dict

        name, *opts = args.split()
        rec = self.record(name, where)
        if name not in page.records_used:
            page.records_used.append(name)
        baseline = None
        for opt in opts:
            key, _, value = opt.partition("=")
            if key != "before" or not value:
                raise ValueError(f"eval_report: unknown option {opt!r} (only before=RECORD[:baseline])")
            other, _, part = value.partition(":")
            if part not in ("", "baseline"):
                raise ValueError(f"eval_report: before={value!r}: only RECORD or RECORD:baseline")
            orec = self.record(other, where)
            if other not in page.records_used:
                page.records_used.append(other)
            if part == "baseline":
                baseline = orec.figures.get("baseline")
                if not baseline:
                    raise ValueError(f"eval_report: record {other} carries no baseline")
            else:
                baseline = {**orec.figures["summary"],
                            "_label": f"the same evaluation on commit {(orec.commit or 'unknown')[:7]}, "
                                      f"run {orec.date}"}
        folder = self.root / page.output.parent
        plots = {k: f"{k}.png" for k in ("reconstruction", "self_reenactment", "cross_reenactment", "speed")
                 if (folder / f"{k}.png").is_file()}
        gpu = "gpu/README.md" if (folder / "gpu" / ("README" + TEMPLATE_SUFFIX)).is_file() else None
        md = render_markdown(results_from_dict(rec.figures), plots, RENDER_COMMAND, gpu_report=gpu,
                             record=str(_rel(RECORDS_DIR / f"{name}.json", page.output.parent)),
                             baseline=baseline)
        return md.rstrip("\n")

    # -- templates
    def render_text(self, text: str, page: Page) -> str:
        where = page.template
        text = _BLOCK_LINE.sub(r"\1", text)
        pos, out, stack = 0, [], []
        # tree: list of str | ("tag", content) | ("each", expr, children)
        root: list[Any] = []
        cur = root
        for m in _TAG.finditer(text):
            cur.append(text[pos:m.start()])
            pos = m.end()
            tag = m.group(1).strip()
            if tag.startswith("!"):
                continue
            if tag.startswith("#each"):
                node = ("each", tag[5:].strip(), [])
                cur.append(node)
                stack.append(cur)
                cur = node[2]
            elif tag == "/each":
                if not stack:
                    raise TemplateError(where, "{{/each}} without {{#each}}")
                cur = stack.pop()
            else:
                cur.append(("tag", tag))
        cur.append(text[pos:])
        if stack:
            raise TemplateError(where, "{{#each}} without {{/each}}")
        self._emit(root, _Ctx(self._records, page, self.root), out)
        return "".join(out)

    def _emit(self, nodes: list[Any], ctx: _Ctx, out: list[str]) -> None:
        where = ctx.page.template
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
                continue
            try:
                if node[0] == "each":
                    items = self.evaluate(node[1], ctx, where)
                    if isinstance(items, dict):
                        pairs = [(str(k), v) for k, v in items.items()]
                    elif isinstance(items, list):
                        pairs = [(None, v) for v in items]
                    else:
                        raise ValueError("#each needs a list or an object")
                    for key, item in pairs:
                        self._emit(node[2], _Ctx(ctx.records, ctx.page, ctx.root, item, True, key), out)
                    continue
                tag = node[1]
                word, _, rest = tag.partition(" ")
                if tag == "@key":
                    if ctx.key is None:
                        raise ValueError("@key is only valid inside {{#each}} over an object")
                    out.append(ctx.key)
                elif word == "source":
                    out.append(self.source_line(rest.strip(), where, ctx.page))
                elif word == "eval_report":
                    out.append(self.eval_report(rest.strip(), where, ctx.page))
                else:
                    expr, bar, spec = tag.rpartition("|") if "|" in tag else (tag, "", "")
                    out.append(format_value(self.evaluate(expr, ctx, where), spec.strip()))
            except TemplateError:
                raise
            except (ValueError, TypeError, KeyError, SyntaxError, ZeroDivisionError) as exc:
                label = node[1] if node[0] == "tag" else f"#each {node[1]}"
                raise TemplateError(where, f"{{{{{label}}}}}: {exc}") from None

    def render_page(self, page: Page) -> str:
        text = (self.root / page.template).read_text()
        body = self.render_text(text, page).rstrip("\n")
        head = (f"<!-- Generated by `{RENDER_COMMAND}` from {page.template.name} and the records listed at "
                "the end; edit those, not this file. -->\n\n")
        return head + body + "\n\n" + self.footer(page) + "\n"

    def footer(self, page: Page) -> str:
        if not page.records_used:
            return "---\nThis page quotes no measured figures."
        lines = ["---", f"Generated by `{RENDER_COMMAND}` from `{page.template.name}` and these records:", ""]
        for name in page.records_used:
            rec = self._records[name]
            link = _rel(RECORDS_DIR / f"{name}.json", page.output.parent)
            lines.append(f"- [`{name}`]({link}): {provenance(rec)}")
        return "\n".join(lines)


def _rel(target: Path, from_dir: Path) -> str:
    return Path(os.path.relpath(target, from_dir)).as_posix()


def provenance(rec: FigureRecord) -> str:
    """'`cmd`; run 2026-12-01T15:20:03Z (UTC), commit 58100bd; AMD EPYC, 2 cores, load ..., no GPU.'"""
    commit = rec.commit[:10] if rec.commit != "unknown" else "unknown"
    if rec.dirty:
        commit += " (with uncommitted changes)"
    when = "date unknown" if rec.date == "unknown" else f"run {rec.date} (UTC)"
    text = f"`{rec.command}`; {when}, commit {commit}; {describe(rec.machine)}."
    if rec.note:
        text += f" {rec.note}"
    return text


# ---------------------------------------------------------------- all pages

def find_pages(root: str | Path) -> list[Page]:
    """Every template under the page roots, sorted by path (relative to ``root``)."""
    root = Path(root)
    pages = []
    for base in PAGE_ROOTS:
        for t in sorted((root / base).rglob("*" + TEMPLATE_SUFFIX)):
            rel = t.relative_to(root)
            pages.append(Page(rel, rel.with_name(rel.name[: -len(".in")])))
    return sorted(pages, key=lambda p: p.template.as_posix())


def render_all(root: str | Path) -> dict[Path, str]:
    """{page path (relative to root): rendered text} for every template."""
    renderer = Renderer(root)
    return {p.output: renderer.render_page(p) for p in find_pages(root)}
