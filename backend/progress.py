"""Progress reporting and per-stage timing shared by the CLI, the add-on and benchmarks.

A ``Progress`` receives ``(fraction in [0, 1], message)``; the CLI shows a tqdm bar, the add-on
forwards it to the window manager, tests collect it. ``should_cancel`` lets the caller stop work.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .errors import CancelledError

ProgressFn = Callable[[float, str], None]


@dataclass
class Progress:
    """Forwards progress to a callback and checks for cancellation between steps."""

    callback: ProgressFn | None = None
    should_cancel: Callable[[], bool] | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def report(self, fraction: float, message: str) -> None:
        """Report overall progress; raises CancelledError when the caller asked to stop."""
        if self.should_cancel is not None and self.should_cancel():
            raise CancelledError()
        if self.callback is not None:
            self.callback(min(max(float(fraction), 0.0), 1.0), message)

    def check_cancel(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise CancelledError()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a named stage; seconds accumulate in ``stage_seconds[name]``."""
        self.check_cancel()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + time.perf_counter() - t0


def tqdm_progress(desc: str, enabled: bool | None = None) -> tuple[Progress, Callable[[], None]]:
    """A Progress that drives a tqdm bar on stderr (0..100 %); returns it and a close function."""
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    bar = tqdm(total=100, desc=desc, disable=not enabled, bar_format="{l_bar}{bar}| {postfix}")
    last = [0.0]

    def cb(fraction: float, message: str) -> None:
        pct = 100.0 * fraction
        if pct > last[0]:
            bar.update(pct - last[0])
            last[0] = pct
        bar.set_postfix_str(message, refresh=True)

    return Progress(callback=cb), bar.close
