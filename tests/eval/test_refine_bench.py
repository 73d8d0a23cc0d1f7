"""`bench refine --converge` end to end on the bundled astronaut at LOD 0 (a short reference, a
3 s budget): the layout its record and the loop page read, and the colour-solve path's gain."""

from __future__ import annotations

import json


def test_converge_bench_scores_both_paths(tmp_path):
    from backend.cli import main

    out = tmp_path / "conv.json"
    assert main(["bench", "refine", "--converge", "--lods", "0", "--photos", "astronaut", "--reference-steps", "3",
                 "--seconds", "3", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["photo"] == "astronaut" and row["lod"] == 0 and row["gaussians"] > 5000
    ref, fast, start = row["reference"], row["fast"], row["unrefined"]
    assert ref["steps"] == 3 and [c["step"] for c in ref["curve"]][0] == 0
    assert fast["steps"] >= 1 and fast["stage_seconds"]["solve"] > 0
    secs = [c["seconds"] for c in fast["curve"]]
    assert secs == sorted(secs)
    # measured: unrefined 21.9 / 26.0 dB, colour solve + 4 Adam steps 27.5 / 31.1, 3 Adam steps 24.7 / 28.7
    assert fast["psnr_full"] > start["psnr_full"] + 2.0 and fast["psnr_face"] > start["psnr_face"] + 2.0
    assert fast["psnr_full"] > ref["psnr_full"]
    # where the reference first reached the fast path's figure (None: not within its steps)
    assert fast["psnr_full_reference_step"] is None or 0 <= fast["psnr_full_reference_step"] <= 3


def test_converge_bench_runs_the_fast_path_for_a_fixed_step_count(tmp_path):
    """--fast-steps: exactly that many fast-path steps whatever the machine's load (the schedule
    over them), and the command the record quotes says so."""
    from backend.cli import main

    out = tmp_path / "conv.json"
    assert main(["bench", "refine", "--converge", "--lods", "0", "--photos", "astronaut", "--reference-steps", "2",
                 "--fast-steps", "5", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["fast"]["steps"] == 5 and [c["step"] for c in row["fast"]["curve"]] == [0, 1, 2, 3, 4, 5]
    assert data["command"].endswith("--reference-steps 2 --fast-steps 5")
    assert row["fast"]["psnr_face"] > row["unrefined"]["psnr_face"] + 2.0
