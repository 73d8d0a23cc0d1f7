"""Build the Blender extension zip: ``dist/omg_avatar-<version>-<platform>.zip``.

The repository root is the extension package: the zip holds its ``__init__.py`` (register /
unregister), the add-on (``omg_blender_addon/``, ``operators/``, ``panels/``), the backend
(``backend/``), the manifest and every wheel the backend needs for that platform
(``requirements/addon-wheels.txt``; numpy comes with Blender). It is built and validated by
Blender's own extension tool shipped inside bpy (``bl_pkg/cli/blender_ext.py``).

    python build_addon.py                          # linux-x64, the platform of this machine
    python build_addon.py --platform windows-x64   # downloads that platform's wheels from the registry
    python build_addon.py --stage-only build/src   # the package folder only, no wheels (demo, tests)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import types
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

try:  # POSIX; on Windows builds are not serialised (one developer, one build at a time)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

ROOT = Path(__file__).resolve().parent
PACKAGES = ("backend", "omg_blender_addon", "operators", "panels")
EXTENSION_ID = "omg_avatar"

# pip platform tags per Blender platform (Blender 5.0 runs Python 3.11 everywhere).
PLATFORM_TAGS: dict[str, list[str]] = {
    "linux-x64": [
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux1_x86_64",
        "linux_x86_64",
    ],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_11_0_arm64", "macosx_12_0_arm64", "macosx_13_0_arm64", "macosx_14_0_arm64"],
}
# Blender ships its own numpy: a second copy inside the extension would shadow it.
NOT_BUNDLED = {"numpy"}


@dataclass
class BuildResult:
    zip_path: Path
    size_mb: float
    wheels: list[str]
    seconds: float


def read_requirements(path: Path) -> list[str]:
    """Pinned ``name==version`` lines of a requirements file, following ``-r`` includes."""
    pins: list[str] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins += read_requirements(path.parent / line[3:].strip())
            continue
        if "==" not in line:
            raise SystemExit(f"{path}: '{line}' is not pinned with ==")
        pins.append(line)
    seen: dict[str, str] = {}
    for pin in pins:
        seen[_normalize(pin.split("==")[0])] = pin
    return [pin for name, pin in seen.items() if name not in NOT_BUNDLED]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (created if missing) for the block.

    Two builds at once (two test sessions, or two checkouts sharing one wheel cache) would otherwise
    list the cache while the other is still writing a wheel into it, or remove the stage folder the
    other is zipping."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def download_wheels(platform: str, pins: list[str], cache: Path) -> list[Path]:
    """Download (or reuse) one wheel per pin for ``platform`` into ``cache``; returns their paths."""
    cache.mkdir(parents=True, exist_ok=True)
    with exclusive(cache / ".download.lock"):
        return _download_locked(platform, pins, cache)


def _download_locked(platform: str, pins: list[str], cache: Path) -> list[Path]:
    wanted = {_normalize(p.split("==")[0]): p.split("==")[1] for p in pins}
    have = _wheels_by_name(cache)
    missing = [f"{name}=={ver}" for name, ver in wanted.items() if not _has_version(have.get(name), ver)]
    if missing:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
               "--abi", "none", "-d", str(cache)]
        for tag in PLATFORM_TAGS[platform] + ["any"]:
            cmd += ["--platform", tag]
        print(f"downloading {len(missing)} wheels for {platform} ...", flush=True)
        subprocess.run(cmd + missing, check=True)
        have = _wheels_by_name(cache)
    wheels = []
    for name, ver in wanted.items():
        wheel = have.get(name)
        if wheel is None or not _has_version(wheel, ver):
            raise SystemExit(f"no wheel of {name}=={ver} for {platform}")
        wheels.append(wheel)
    torch_wheel = have[_normalize("torch")]
    if platform == "linux-x64" and "+cpu" not in torch_wheel.name:
        raise SystemExit(f"refusing to bundle a non-CPU torch build: {torch_wheel.name}")
    return wheels


def _wheels_by_name(folder: Path) -> dict[str, Path]:
    return {_normalize(w.name.split("-")[0]): w for w in sorted(folder.glob("*.whl"))}


def _has_version(wheel: Path | None, version: str) -> bool:
    if wheel is None:
        return False
    wheel_version = wheel.name.split("-")[1].split("+")[0]
    return wheel_version == version


def stage(dest: Path, wheels: list[Path], platform: str | None) -> Path:
    """Copy the extension package (the tree's root ``__init__.py``, packages, manifest) to ``dest``,
    with ``wheels`` listed in the manifest for ``platform`` (None: no wheels, manifest as is)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=ignore)
    shutil.copy2(ROOT / "__init__.py", dest / "__init__.py")
    manifest = (ROOT / "blender_manifest.toml").read_text()
    if platform is not None:
        (dest / "wheels").mkdir()
        for wheel in wheels:
            shutil.copy2(wheel, dest / "wheels" / wheel.name)
        listed = ",\n".join(f'  "./wheels/{w.name}"' for w in wheels)
        manifest = re.sub(r"^platforms = .*$", f'platforms = ["{platform}"]', manifest, flags=re.M)
        manifest = re.sub(r"^wheels = .*$", f"wheels = [\n{listed},\n]", manifest, flags=re.M)
    (dest / "blender_manifest.toml").write_text(manifest)
    return dest


def load_tree(name: str = EXTENSION_ID) -> types.ModuleType:
    """Import this checkout as the extension package ``name`` (no staging, no copy): the development
    loop of demos, benchmarks and tests. Its subpackages import as ``name.backend``,
    ``name.omg_blender_addon``, ... exactly as inside Blender."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def blender_ext_tool() -> Path:
    """Blender's extension command-line tool, shipped inside the bpy module."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise SystemExit("bpy==5.0.1 is needed to build and validate the extension (pip install -r requirements/dev.txt)")
    tool = Path(spec.origin).parent / "5.0" / "scripts" / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    if not tool.exists():
        raise SystemExit(f"Blender's extension tool is missing: {tool}")
    return tool


def validate(path: Path) -> None:
    """Run Blender's own manifest/package validator on a folder or zip; raises on failure."""
    subprocess.run([sys.executable, str(blender_ext_tool()), "validate", str(path)], check=True)


def build(platform: str, out_dir: Path, cache_root: Path) -> BuildResult:
    t0 = time.perf_counter()
    version = tomllib.loads((ROOT / "blender_manifest.toml").read_text())["version"]
    pins = read_requirements(ROOT / "requirements" / "addon-wheels.txt")
    wheels = download_wheels(platform, pins, cache_root / platform)
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{EXTENSION_ID}-{version}-{platform}.zip"
    with exclusive(ROOT / "build" / f".stage-{platform}.lock"):
        staged = stage(ROOT / "build" / "stage" / platform / EXTENSION_ID, wheels, platform)
        zip_path.unlink(missing_ok=True)
        subprocess.run([sys.executable, str(blender_ext_tool()), "build", "--source-dir", str(staged),
                        "--output-filepath", str(zip_path)], check=True)
        validate(zip_path)
    return BuildResult(zip_path, zip_path.stat().st_size / 1e6, [w.name for w in wheels],
                       time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", choices=sorted(PLATFORM_TAGS), default="linux-x64")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder for the zip")
    parser.add_argument("--wheel-cache", type=Path, default=ROOT / "build" / "wheels",
                        help="where downloaded wheels are kept between builds")
    parser.add_argument("--stage-only", type=Path, metavar="DIR",
                        help="only lay out the package (no wheels) as DIR/omg_avatar and exit")
    args = parser.parse_args(argv)
    if args.stage_only is not None:
        staged = stage(args.stage_only / EXTENSION_ID, [], None)
        print(staged)
        return 0
    result = build(args.platform, args.out, args.wheel_cache)
    print(f"built {result.zip_path} ({result.size_mb:.0f} MB, {len(result.wheels)} wheels) in {result.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
