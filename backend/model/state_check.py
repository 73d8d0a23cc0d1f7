"""Reading a weights file safely, and checking it against the network it is meant for before the
network exists.

:func:`load_weights_file` reads a torch.save'd file with ``weights_only=True`` (no code runs) and
refuses what torch.save never writes and what would make loading itself allocate without bound: a
file that is not torch's zip format, a compressed record (a few kilobytes of deflated zeros inflate
to gigabytes), and tensors that claim more elements than the file stores (a zero-stride view of one
number can claim a billion).

A DINOv2 or OMG weights file says how large its network is (the DINOv2 width and depth are read from
its tensors' shapes, an OMG checkpoint carries its configuration). A crafted file can name a width
or a depth that no real file has: building that network would try to allocate terabytes (in Blender,
the process is killed and the user's unsaved work lost). :func:`check_state_fits` builds the network
on PyTorch's meta device (shapes only, no memory) and compares its parameters with the file's
tensors: a network that passes is exactly as large as the tensors the file already holds.
Pure torch, no bpy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import InputError


#: the tensors a weights file may hold, in bytes, beyond its own size (pickle overhead, alignment)
TENSOR_SLACK_BYTES = 1 << 20


def load_weights_file(path: str | Path, what: str) -> Any:
    """The object torch.save wrote to ``path`` (``weights_only``: tensors, dicts, lists, numbers,
    strings), or InputError naming the file and ``what`` it should be: not torch's zip format, a
    compressed record, a damaged file, or tensors whose elements add up to more bytes than the file
    holds (+ :data:`TENSOR_SLACK_BYTES`)."""
    import zipfile

    path = Path(path)
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as z:
            packed = [i.filename for i in z.infolist() if i.compress_type != zipfile.ZIP_STORED]
    # NotImplementedError: a record that needs a later zip version than zipfile reads
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise InputError(path, f"not a loadable PyTorch {what} (not torch.save's zip format: "
                               f"{type(exc).__name__}: {first_line(exc)})") from None
    if packed:
        raise InputError(path, f"not a loadable PyTorch {what}: record {packed[0]!r} is compressed, "
                               "which torch.save never writes")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - refused by the restricted unpickler, or damaged
        raise InputError(path, f"not a loadable PyTorch {what} ({type(exc).__name__}: {first_line(exc)})") from None
    claimed = sum(t.numel() * t.element_size() for t in _tensors(obj))
    if claimed > size + TENSOR_SLACK_BYTES:
        raise InputError(path, f"not a loadable PyTorch {what}: its tensors claim {claimed / 2**20:.0f} MiB, "
                               f"the file holds {size / 2**20:.0f} MiB")
    return obj


def _tensors(obj: Any, depth: int = 0):
    """Every tensor in ``obj`` (nested dicts, lists and tuples, 32 levels deep at most)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 32 and isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v, depth + 1)
    elif depth < 32 and isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v, depth + 1)


def check_state_fits(build: Callable[[], nn.Module], state: Mapping[str, torch.Tensor], path: str | Path,
                     what: str) -> None:
    """InputError naming ``path`` unless the module that ``build()`` makes on the meta device has
    exactly ``state``'s keys with the same shapes (``what`` names the weights in the message). A
    ``build`` that raises (a configuration no network has) is the same error."""
    try:
        with torch.device("meta"):
            module = build()
    except Exception as exc:  # noqa: BLE001 - any failure to build is a file we cannot use
        raise InputError(path, f"{what}: no network fits its configuration ({type(exc).__name__}: "
                               f"{first_line(exc)})") from None
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing or extra:
        names = ", ".join((missing or extra)[:3])
        raise InputError(path, f"{what} do not match the network: {len(missing)} tensors missing, "
                               f"{len(extra)} unexpected ({'missing' if missing else 'unexpected'}: {names})")
    wrong = [k for k in want if want[k] != have[k]]
    if wrong:
        k = wrong[0]
        raise InputError(path, f"{what} do not match the network: {len(wrong)} tensors of the wrong shape "
                               f"({k}: {list(have[k])}, expected {list(want[k])})")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (160 characters at most): torch's run over many."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else "")[:160]
