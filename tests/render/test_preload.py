"""The build's kernel preload loads the exact splat kernels only when the build renders with them, and the
render package imports the splatter and the watermark only when they are used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys
from backend.render import _kernels, _kernels_simd
from backend.render.preload import preload_kernels
preload_kernels(exact=sys.argv[1] == "1")
print(json.dumps({"exact": len(_kernels.rasterize_image.signatures),
                  "simd": len(_kernels_simd.rasterize_image_simd.signatures)}))
"""


def test_preload_without_exact_skips_the_exact_splat_kernels_only():
    """preload_kernels(exact=False), the preload of a build without refinement or metrics, loads
    the previews' 8-lane kernel but not the exact rasterizer (~55 ms of Python-bound CPU beside
    detection); exact=True loads both. Fresh processes: loaded kernels stay for the process."""
    got = {}
    for flag in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", PROBE, flag], cwd=ROOT, capture_output=True, text=True,
                             timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        got[flag] = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["0"] == {"exact": 0, "simd": 1}
    assert got["1"]["exact"] >= 1 and got["1"]["simd"] == 1


def test_build_preloads_the_exact_kernels_only_when_it_renders_with_them():
    """build_avatar asks for the exact kernels when it measures the source view or may refine."""
    from backend.avatar.build import BuildOptions, _exact_splat_needed

    assert not _exact_splat_needed(BuildOptions(refine=False, metrics=False))
    assert _exact_splat_needed(BuildOptions(refine=False, metrics=True))
    assert _exact_splat_needed(BuildOptions(refine=None, metrics=False))   # auto: renders to decide
    assert _exact_splat_needed(BuildOptions(refine=True, metrics=False))


BUILD_PROBE = r"""
import json, threading
from backend.avatar.build import BuildOptions, build_avatar
from backend.avatar import pose_kernels, silhouette_kernels, synthesis_kernels
from backend.render import _kernels, _kernels_simd, watermark
build_avatar(None, BuildOptions(lods=(0,), refine=False, metrics=False))
print(json.dumps({"exact": len(_kernels.rasterize_image.signatures),
                  "simd": len(_kernels_simd.rasterize_image_simd.signatures),
                  "pose": len(pose_kernels.head_tail.signatures),
                  "silhouette": len(silhouette_kernels.march.signatures),
                  "synthesis": len(synthesis_kernels.quilt_blocks.signatures),
                  "glyphs": sorted(watermark._GLYPHS) == [watermark.WATERMARK_TEXT],
                  "preloading": [t.name for t in threading.enumerate() if "preload" in t.name]}))
"""


def test_a_build_without_renders_returns_with_the_preview_kernels_loaded():
    """A build without refinement or metrics loads the previews' kernels (8-lane splat, posing) on
    a thread of their own once its sampling starts, and returns only when they are loaded (the
    previews must not launch their parallel kernels while that thread runs one); it never loads
    the exact splat kernels. A fresh process, so nothing was loaded before."""
    out = subprocess.run([sys.executable, "-c", BUILD_PROBE], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["exact"] == 0 and got["simd"] == 1 and got["pose"] >= 1
    # the synthesis and silhouette kernels and the watermark's glyphs load on that thread too
    assert got["silhouette"] >= 1 and got["synthesis"] >= 1 and got["glyphs"]
    assert "omg-preview-preload" not in got["preloading"]


IMPORT_PROBE = r"""
import json, sys
import backend.render.depth
lazy = {m: m in sys.modules for m in ("backend.render.splat", "backend.render.watermark", "torch", "PIL.Image")}
import backend.render.splat as _   # the submodule first: the package's name stays the function
from backend.render import splat, save_png, SplatResult
import backend.render as render
print(json.dumps({"lazy": lazy, "function": callable(splat) and splat is render.splat
                  and splat.__module__ == "backend.render.splat",
                  "save_png": save_png.__module__, "result": SplatResult.__name__}))
"""


def test_the_render_package_imports_the_splatter_and_the_watermark_on_first_use():
    """A build needs the camera and the depth buffer long before its previews: importing them
    leaves the splatter and the watermark (PIL) unimported; their names import them on first use,
    and ``backend.render.splat`` is the function even after its submodule was imported first.
    A fresh process."""
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["lazy"] == {"backend.render.splat": False, "backend.render.watermark": False, "torch": False,
                           "PIL.Image": False}
    assert got["function"] and got["save_png"] == "backend.render.watermark" and got["result"] == "SplatResult"
