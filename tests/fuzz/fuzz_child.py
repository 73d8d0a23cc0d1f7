"""Fuzz worker: loads each listed file with the project's loader for it and reports the outcome.

Run by fuzzlib in a child process with memory and CPU limits:
    python fuzz_child.py CASES_FILE
CASES_FILE: one ``loader<TAB>path`` per line. For every case it prints (to stdout, flushed)
    @@FUZZ BEGIN <index>
    @@FUZZ END <index> <status> <json message>
status: "loaded" (the loader accepted the file), "error" (our one-line error: an OMGError),
"traceback" (any other exception: a bug). A signal death or a hang shows as a BEGIN without END.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root


#: files a loader wrote for itself, removed when the child ends
_CLEANUP: list[str] = []


def _loaders():
    from backend.avatar.fileformat import load_avatar
    from backend.avatar.ply import read_ply
    from backend.face.calibration import LandmarkCalibration
    from backend.face.image import load_image
    from backend.face.video import iter_video
    from backend.head.loader import load_head_model
    from backend.model.dinov2 import load_dinov2
    from backend.motion import load_motion
    from backend.preview.refiner import load_refiner
    from backend.motion.arkit import load_mapping
    from backend.motion.capture import read_capture

    made: dict = {}

    def checkpoint(path: str) -> None:
        """The learned build's loading of a checkpoint, with a DINOv2 file of the width it expects
        (written once per child, removed before it exits) and the stand-in head model (loaded once)."""
        import tempfile

        from backend.model.infer import load_learned
        from fuzzlib import tiny_dino_bytes

        if not made:
            fd, name = tempfile.mkstemp(suffix=".pth")
            os.write(fd, tiny_dino_bytes())
            os.close(fd)
            _CLEANUP.append(name)
            made.update(dino=name, model=load_head_model(None))
        load_learned(path, made["dino"], made["model"], device="cpu")

    def video(path: str) -> None:
        reader = iter_video(path)
        for i, frame in enumerate(reader):  # every frame through our decoder
            if frame.shape != (reader.size[1], reader.size[0], 3) or i > 10_000:
                raise AssertionError(f"frame {i} has shape {frame.shape}, reader says {reader.size}")

    return {"flame_pickle": load_head_model, "npz_head_model": load_head_model,
            "omgavatar": load_avatar, "ply": read_ply, "track": load_motion,
            "calibration": LandmarkCalibration.load, "capture": read_capture, "mapping": load_mapping,
            "dinov2": load_dinov2, "checkpoint": checkpoint, "refiner": load_refiner,
            "image": load_image,
            "video": video}


def main() -> None:
    warnings.simplefilter("ignore")  # warnings are allowed outcomes; only errors are judged
    from backend.errors import OMGError

    loaders = _loaders()
    out = sys.stdout
    cases = [line.rstrip("\n").split("\t", 1) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
    for i, (loader, path) in enumerate(cases):
        out.write(f"@@FUZZ BEGIN {i}\n")
        out.flush()
        try:
            loaders[loader](path)
            status, msg = "loaded", ""
        except OMGError as exc:
            status, msg = "error", str(exc)
        except BaseException as exc:  # noqa: BLE001 - everything else is what the fuzzer hunts
            status = "traceback"
            msg = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=-4))
        out.write(f"@@FUZZ END {i} {status} {json.dumps(msg[:4000])}\n")
        out.flush()
    for name in _CLEANUP:     # os._exit runs no atexit handlers
        os.unlink(name)
    os._exit(0)  # skip interpreter teardown (torch/ffmpeg threads): the results are out


if __name__ == "__main__":
    main()
