"""`python -m backend` works without Blender and lists its subcommands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A finder that makes `import bpy` fail, as it does outside Blender.
BLOCK_BPY = """
import sys, runpy
class _NoBpy:
    def find_spec(self, name, path=None, target=None):
        if name == "bpy" or name.startswith("bpy."):
            raise ImportError("bpy is not available in this process")
sys.meta_path.insert(0, _NoBpy())
try:
    import bpy
except ImportError:
    pass
else:
    raise SystemExit("bpy should not import here")
sys.argv = ["backend"] + sys.argv[1:]
runpy.run_module("backend", run_name="__main__")
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_BPY, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_help_lists_every_subcommand_without_bpy() -> None:
    proc = _run("--help")
    assert proc.returncode == 0, proc.stderr
    from backend.cli import SUBCOMMANDS

    assert {"build", "track", "retarget", "render", "export-ply", "train", "prepare-data", "bench",
            "eval"} <= set(SUBCOMMANDS)
    for name in SUBCOMMANDS:  # each listed as its own entry, not as a word inside another's help
        assert re.search(rf"^\s+{re.escape(name)}(\s|$)", proc.stdout, re.M), name
    assert "not built yet" not in proc.stdout


def test_backend_never_imports_bpy() -> None:
    offenders = [p for p in (ROOT / "backend").rglob("*.py")
                 if any(line.strip().startswith(("import bpy", "from bpy")) for line in p.read_text().splitlines())]
    assert offenders == []


def test_unknown_subcommand_is_an_error() -> None:
    proc = _run("no-such-command")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
