#!/usr/bin/env bash
# Set up .venv (first run only) and run the main job on the bundled sample photo:
# photo -> avatar -> Blender scene saved as out/demo/avatar.blend + a rendered preview PNG.
# Extra arguments go to scripts/demo.py (e.g. --photo my_face.jpg --out out/me).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
