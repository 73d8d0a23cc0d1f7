#!/usr/bin/env bash
# Create .venv (Python 3.11) in the repo root with every pinned dependency; idempotent and fast when
# nothing changed. torch comes from the CPU build on local disk; the script refuses a CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python 3.11 is required (bpy 5.0.1 and Blender 5.0 use it)" >&2; exit 1; }

stamp=.venv/.requirements.sha
want=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and alone, so no other package can resolve it to a CUDA build.
.venv/bin/python -m pip install --quiet "$(grep -E '^torch==' requirements/runtime.txt | cut -d' ' -f1)"
.venv/bin/python -m pip install --quiet -r requirements/dev.txt
.venv/bin/python - <<'PY'
import importlib.metadata as md, sys, torch
cuda_pkgs = [d.metadata["Name"] for d in md.distributions() if (d.metadata["Name"] or "").lower().startswith("nvidia-")]
if "+cpu" not in torch.__version__ and not sys.platform.startswith("darwin"):
    sys.exit(f"setup: expected the CPU build of torch, got {torch.__version__}")
if cuda_pkgs:
    sys.exit(f"setup: CUDA packages were pulled in: {cuda_pkgs}")
print(f"setup: torch {torch.__version__} (CPU), Python {sys.version.split()[0]}")
PY
echo "$want" > "$stamp"
