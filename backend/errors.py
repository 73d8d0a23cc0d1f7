"""Error types that carry a user-facing message naming the offending file."""

from __future__ import annotations

from pathlib import Path


class OMGError(Exception):
    """Base class for errors shown to the user as-is (no traceback in the UI)."""


class InputError(OMGError):
    """A user-supplied file is unusable: names the file and says what is wrong with it."""

    def __init__(self, path: str | Path | None, message: str) -> None:
        self.path = None if path is None else str(path)
        # one line, whatever a library's exception text (quoted inside messages) looks like
        self.message = " ".join(str(message).split())
        super().__init__(f"{Path(self.path).name}: {self.message}" if self.path else self.message)


class OMGWarning(UserWarning):
    """A problem the run works around, told to the user as one line (the CLI prints
    ``warning: <message>``; the message names the file)."""


class CancelledError(OMGError):
    """The user cancelled a long operation; callers roll back and report nothing else."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)
