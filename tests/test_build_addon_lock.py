"""build_addon serialises builds that share a wheel cache or a stage folder.

Two test sessions (or two checkouts with one ``--wheel-cache``) building at once once listed the
cache while the other was still writing a wheel into it, and the add-on install tests failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import build_addon

ROOT = Path(__file__).resolve().parent.parent

HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
import build_addon
from pathlib import Path
with build_addon.exclusive(Path({lock!r})):
    print("locked", flush=True)
    time.sleep(1.0)
    Path({stamp!r}).write_text(repr(time.time()))
"""


@pytest.mark.skipif(build_addon.fcntl is None, reason="advisory locks are POSIX-only")
def test_second_holder_waits_for_the_first(tmp_path: Path) -> None:
    lock = tmp_path / "cache" / ".download.lock"
    stamp = tmp_path / "released"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT), lock=str(lock), stamp=str(stamp))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with build_addon.exclusive(lock):
            acquired = time.time()
            assert stamp.exists(), "the lock was granted while another process held it"
        assert acquired >= float(stamp.read_text())
    finally:
        holder.wait(timeout=30)
    assert holder.returncode == 0


def test_lock_can_be_taken_again_and_leaves_the_cache_alone(tmp_path: Path) -> None:
    cache = tmp_path / "wheels"
    cache.mkdir()
    (cache / "keep.whl").write_bytes(b"not a wheel")
    for _ in range(2):
        with build_addon.exclusive(cache / ".download.lock"):
            pass
    assert sorted(p.name for p in cache.iterdir()) == [".download.lock", "keep.whl"]
    assert (cache / "keep.whl").read_bytes() == b"not a wheel"
