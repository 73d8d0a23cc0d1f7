"""``bench model --device``: a device this machine lacks, or a name that is none, is refused with a
message before anything is built (it was a torch traceback from deep inside ``Module.to``)."""

from __future__ import annotations

import argparse

import pytest
import torch

from backend.model import bench


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    return p.parse_args(list(argv))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_message():
    with pytest.raises(SystemExit, match="torch.cuda is not available"):
        bench.run(_args("--device", "cuda"))


def test_an_unknown_device_is_named():
    with pytest.raises(SystemExit, match="'tpu' is not auto, cpu or cuda"):
        bench.run(_args("--device", "tpu"))
