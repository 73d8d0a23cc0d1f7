"""Run the fuzz campaign from the command line and keep every failing input as a regression case.

    .venv/bin/python tests/fuzz/run_fuzz.py                 # the CI counts (OMG_FUZZ_CI below)
    .venv/bin/python tests/fuzz/run_fuzz.py --long          # 10,000 inputs per loader
    .venv/bin/python tests/fuzz/run_fuzz.py --loaders ply,image --n 2000 --seed 7

Prints per-loader counts (inputs, loaded, our one-line error, failed) and writes them as JSON
(--json). Failing inputs are copied to tests/fuzz/regressions/<loader>/ unless --no-keep.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import fuzzlib  # noqa: E402

# inputs per loader in CI (about a minute in all on the 2-core CPU; a video case runs ffmpeg)
CI_COUNTS = {"flame_pickle": 150, "npz_head_model": 120, "omgavatar": 120, "ply": 120, "track": 120,
             "calibration": 120, "capture": 120, "mapping": 60, "dinov2": 60, "checkpoint": 40, "refiner": 40,
             "image": 120, "video": 40}
LONG_N = 10_000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", action="store_true", help=f"{LONG_N} inputs per loader")
    ap.add_argument("--n", type=int, default=None, help="inputs per loader (overrides --long)")
    ap.add_argument("--loaders", default=",".join(fuzzlib.LOADERS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-keep", action="store_true", help="do not copy failing inputs to regressions/")
    args = ap.parse_args(argv)
    loaders = [l for l in args.loaders.split(",") if l]
    counts = {l: (args.n if args.n else LONG_N if args.long else CI_COUNTS[l]) for l in loaders}
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="omg-fuzz-") as work:
        camp = fuzzlib.campaign(counts, args.seed, Path(work), log=lambda m: print(m, file=sys.stderr))
        kept = [] if args.no_keep else [str(fuzzlib.keep_failure(o)) for o in camp.failures()]
        for o in camp.failures():
            print(f"FAIL {o.loader} {o.path.name} {o.status}: {o.message.splitlines()[0] if o.message else ''}")
    summary = camp.summary()
    for l, s in summary.items():
        print(f"{l:15s} {s['inputs']:6d} inputs: {s['loaded']:6d} loaded, {s['error']:6d} one-line errors, "
              f"{s['failed']:4d} failed")
    print(f"{sum(s['inputs'] for s in summary.values())} inputs in {time.time() - t0:.0f} s (seed {args.seed})")
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "seconds": round(time.time() - t0, 1),
                                         "loaders": summary, "kept": kept}, indent=2) + "\n")
    return 1 if camp.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
