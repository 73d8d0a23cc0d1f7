#!/usr/bin/env bash
# The CUDA checks, prepared for a session that is lent a GPU machine (the device tool of the tool
# library). CI and these 2-core machines have no GPU and never run the `run` half.
#
#   bash scripts/gpu_checks.sh prepare     here, once: .gpu/ (git-ignored) with the gsplat wheel for
#                                          the device's Python and the sample avatar built at LOD 0-2
#   device `run`: carry [".gpu"], timeout_s 580, command "bash scripts/gpu_checks.sh run"
#
# There the device image's own python3 runs (Python 3.12, its CUDA torch, numpy 2; gsplat from the
# carried wheel JIT-compiles its extension on first use, 78 s on the H100 of 2026-11-27). Each step is
# time-limited and the next one runs after a failure; logs and JSON land in $OUT and come back:
#   1. tests/gpu/check_cuda_splat.py --quick       gsplat against our CPU splatter; speed 5K-90K Gaussians
#   2. pytest tests/avatar/test_pose_torch.py tests/head/test_lbs.py   posing on CUDA against the CPU
#   3. bench preview --backend cuda --avatar .gpu/astronaut.omgavatar --paths batched --no-video
#      (LOD 2 and 0; the face detector and ffmpeg are not on the device: the avatar is built here and
#      the loop writes PNG frames only, so the figure is pose + splat + watermark + PNG)
#   4. bench model --device cuda --lods 0,1,2      the learned path: reconstruction s, render + refiner fps
# Not here: Render Preview inside Blender on a GPU (bpy 5.0.1 needs Python 3.11; the image has 3.12).
set -uo pipefail
cd "$(dirname "$0")/.."

prepare() {
    local py=${PYTHON:-.venv/bin/python}
    mkdir -p .gpu
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .gpu gsplat==1.5.3 || return 1
    local tmp
    tmp=$(mktemp -d)  # the build's other outputs are not carried: they stay in this run's own folder
    "$py" -m backend build -o "$tmp" --refine-seconds 0 --no-progress > .gpu/build.log 2>&1 \
        || { tail -5 .gpu/build.log; rm -rf "$tmp"; return 1; }
    cp "$tmp/astronaut.omgavatar" .gpu/astronaut.omgavatar && rm -rf "$tmp"
    du -sh .gpu
}

step() {  # step NAME SECONDS COMMAND...: run, log to $OUT/NAME.log, report the exit status, go on
    local name=$1 secs=$2
    shift 2
    echo "== $name ($(date -u +%H:%M:%S))"
    timeout "$secs" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 15 "$OUT/$name.log"
    echo "== $name rc=$rc"
}

run() {
    : "${OUT:?run this on the device machine, where OUT is set}"
    [ -f .gpu/astronaut.omgavatar ] || { echo "no .gpu/astronaut.omgavatar: run 'prepare' here and carry .gpu"; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/*.whl || exit 2
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
    python3 -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__)" >> "$OUT/gpu.txt" 2>&1
    git log -1 --format='commit %H %cI' >> "$OUT/gpu.txt" 2>/dev/null
    cat "$OUT/gpu.txt"
    step cuda_splat 200 python3 tests/gpu/check_cuda_splat.py "$OUT/cuda_splat.json" --quick
    step pose_tests 90 python3 -m pytest -q -p no:cacheprovider tests/avatar/test_pose_torch.py tests/head/test_lbs.py
    step preview_lod2 90 python3 -m backend bench preview --backend cuda --avatar .gpu/astronaut.omgavatar \
        --lod 2 --paths batched --no-video --frames 200 --json "$OUT/bench_preview_cuda_lod2.json"
    step preview_lod0 45 python3 -m backend bench preview --backend cuda --avatar .gpu/astronaut.omgavatar \
        --lod 0 --paths batched --no-video --frames 200 --json "$OUT/bench_preview_cuda_lod0.json"
    step model 120 python3 -m backend bench model --device cuda --lods 0,1,2 --json "$OUT/bench_model_cuda.json"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash scripts/gpu_checks.sh prepare|run" >&2; exit 2 ;;
esac
