"""The package reads top-down: no backend package imports one above it, and no file imports another
that (directly or through others) imports it back. Imports are read with ``ast``, including the
ones inside functions (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top. A module may import its own package, and packages in lower layers; never a
# package in its own layer or above. Top-level modules (backend/errors.py, ...) count as packages.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("progress", "rotations", "ffmpeg", "filekind", "image_metrics", "output_safety", "machine", "blas_threads",
     "scipy_docs", "allocator"),
    ("stats",),
    ("head", "render"),
    ("face",),
    ("motion",),
    ("avatar",),
    ("model", "eval"),
    ("preview", "figures"),
    ("commands",),
    ("cli",),
    ("__main__",),
]
LEVEL = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
WING = ("omg_blender_addon", "operators", "panels")


def _modules(top: str) -> dict[str, Path]:
    """Dotted name (relative to the repository root) -> file, for every .py under ``top``."""
    out = {}
    for path in sorted((ROOT / top).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of ``known`` that ``name`` imports (``from pkg import mod`` resolves to pkg.mod)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    known = {**_modules("backend"), **{k: v for top in WING for k, v in _modules(top).items()}}
    return {name: _imports(name, path, known) for name, path in known.items()}


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_backend_subpackage_has_a_layer() -> None:
    names = {p.stem if p.is_file() else p.name for p in (ROOT / "backend").iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert names <= set(LEVEL), f"add {sorted(names - set(LEVEL))} to LAYERS"


def test_no_backend_package_imports_one_above_it() -> None:
    upward = []
    for module, targets in _graph().items():
        if not module.startswith("backend."):
            continue
        src = _subpackage(module)
        for target in targets:
            if target == "backend" or not target.startswith("backend."):
                continue
            dst = _subpackage(target)
            if dst != src and LEVEL[dst] >= LEVEL[src]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that go up or sideways:\n" + "\n".join(sorted(upward))


def test_the_backend_never_imports_the_blender_wing_or_bpy() -> None:
    for name, path in _modules("backend").items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            assert not any(m.split(".")[0] in ("bpy", "bpy_extras", "mathutils", "gpu") for m in mods), name
            if isinstance(node, ast.ImportFrom) and node.level > name.count(".") + (path.name == "__init__.py"):
                raise AssertionError(f"{name} imports above the backend package (level {node.level})")


def test_no_import_cycles_between_files() -> None:
    graph = _graph()
    # Package __init__ files re-export their modules; a module importing its own package's
    # __init__ would be a cycle too, and is reported like any other.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checks_see_real_imports() -> None:
    """Guard against a vacuous pass: known edges and layers are found."""
    graph = _graph()
    assert "backend.rotations" in graph["backend.head.lbs"]
    assert "backend.image_metrics" in graph["backend.avatar.build"]
    assert "backend.motion" in graph["backend.preview.renderer"]
    assert "omg_blender_addon.rig_info" in graph["omg_blender_addon.keyframes"]
    assert sum(len(t) for t in graph.values()) > 300
