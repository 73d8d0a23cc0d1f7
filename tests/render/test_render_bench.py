"""`python -m backend bench ...`: dispatcher and the splat target (tiny sizes; no timing gates)."""

from __future__ import annotations

import json

import pytest

from backend.cli import main
from backend.commands import bench


def test_bench_splat_sweep_writes_json_and_plot(tmp_path, capsys) -> None:
    out = tmp_path / "splat.json"
    rc = main(["bench", "splat", "--gaussians", "200,800", "--size", "48x32", "--backend", "cpu",
               "--channels", "4", "--repeats", "1", "--warmup", "1", "--json", str(out)])  # fmt: skip
    assert rc == 0
    fig = json.loads(out.read_text())
    for key in ("fps_forward", "fps_backward", "peak_mb", "backend"):
        assert key in fig
    assert fig["backend"] == "cpu" and fig["gaussians"] == 800 and fig["channels"] == 4
    assert fig["fps_forward"] > 0 and fig["fps_backward"] > 0 and fig["peak_mb"] > 0
    assert [r["gaussians"] for r in fig["runs"]] == [200, 800]
    assert fig["runs"][1]["n_intersections"] > fig["runs"][0]["n_intersections"] > 0
    assert (tmp_path / "splat.png").stat().st_size > 1000
    assert "N=    800" in capsys.readouterr().out


def test_bench_single_count_no_plot(tmp_path) -> None:
    out = tmp_path / "one.json"
    assert main(["bench", "splat", "--gaussians", "100", "--size", "32", "--backend", "cpu", "--repeats", "1",
                 "--no-backward", "--json", str(out)]) == 0  # fmt: skip
    fig = json.loads(out.read_text())
    assert fig["fps_backward"] is None and "plot" not in fig and not (tmp_path / "one.png").exists()


def test_bench_dispatcher_targets_and_bad_targets() -> None:
    # every target's module exists and has the interface the dispatcher calls
    for name in bench.BENCHMARKS:
        module = bench.load_benchmark(name)
        assert callable(module.add_arguments) and callable(module.run), name
    assert "lbs" in bench.BENCHMARKS and "splat" in bench.BENCHMARKS
    with pytest.raises(SystemExit):
        main(["bench", "warp-drive"])
    with pytest.raises(SystemExit):
        main(["bench", "splat", "--size", "0"])
