"""Users' files are never destroyed: check output locations before the work, write atomically.

Two jobs, used by every writer of user-visible files (PNG, mp4, .ply, .omgavatar, JSON, .npz):

1. **Check before the work** -- :func:`check_output_file` / :func:`check_output_dir` resolve a
   location and fail at once (an :class:`OutputError`, one line naming the path) when it cannot
   work: a folder where a file is needed or the reverse, a folder that cannot be created or written
   (read-only filesystem, permissions), or an output that is one of the run's inputs. They create
   nothing, so a refused or cancelled run leaves the disk as it was. Commands call them before any
   detection/tracking/rendering starts.

2. **Write atomically** -- :func:`atomic_path` gives a temporary path *beside* the target (same
   folder, so the final rename is atomic on one filesystem; same suffix, so writers that pick the
   format by extension -- ffmpeg, Pillow, numpy -- still do). On success the temporary file is
   renamed over the target in one step; on any error or cancel (including KeyboardInterrupt) only
   that temporary file is removed. An earlier file at the target stays byte-identical until the new
   one is complete. ::

       with atomic_path(out / "a.ply") as tmp:
           write_something(tmp)          # raise -> tmp removed, a.ply untouched

   For writers that finish later than the block that starts them (a video encoder fed frame by
   frame, a background PNG writer) use :class:`AtomicFile` directly: ``f = AtomicFile(target)``,
   write to ``f.tmp``, then ``f.commit()`` (rename into place) or ``f.discard()`` (remove the temp
   file only). Both are idempotent; ``commit`` after ``discard`` raises.

:func:`atomic_write_bytes` / :func:`atomic_write_text` cover whole-buffer writes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import InputError

TMP_MARK = ".omg-tmp-"  # every temporary file this module makes has it in its name


class OutputError(InputError):
    """An output location cannot be used (names the path and the reason)."""


def _resolved(path: str | Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def _same(a: Path, b: Path) -> bool:
    try:
        return a == b or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_writable(folder: Path, shown: Path) -> None:
    """Create and remove a file in ``folder`` (os.access misses some read-only mounts/ACLs)."""
    try:
        fd, name = tempfile.mkstemp(prefix=TMP_MARK + "probe-", dir=folder)
    except OSError as exc:
        raise OutputError(shown, f"cannot write in {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(name)


def check_output_dir(path: str | Path, inputs: Iterable[str | Path | None] = (),
                     what: str = "output folder") -> Path:
    """Resolve ``path`` as a folder to write into and check it can be (created and) written.

    Fails (OutputError) when it is an existing file, when the nearest existing parent is not a
    folder or not writable, or when it is one of ``inputs``. Creates nothing. Returns the resolved
    path."""
    p = _resolved(path)
    if p.exists() and not p.is_dir():
        raise OutputError(path, f"the {what} is an existing file, not a folder")
    base = _nearest_existing(p)
    if not base.is_dir():
        raise OutputError(path, f"cannot create the {what}: {base} is a file, not a folder")
    for i in inputs:
        if i is not None and _same(p, _resolved(i)):
            raise OutputError(path, f"the {what} is also an input of this run")
    _probe_writable(base, Path(path))
    return p


def check_output_file(path: str | Path, inputs: Iterable[str | Path | None] = (),
                      suffixes: tuple[str, ...] = (), what: str = "output file") -> Path:
    """Resolve ``path`` as a file to (re)write and check it can be written without losing inputs.

    Fails (OutputError) when it is an existing folder, when its suffix is not one of ``suffixes``
    (if given), when it is one of ``inputs`` (same path or same file through links), or when its
    folder cannot be created or written. An existing file at ``path`` is allowed: it is replaced
    only when the new file is complete (:func:`atomic_path`). Creates nothing."""
    p = _resolved(path)
    if p.is_dir():
        raise OutputError(path, f"the {what} is an existing folder, not a file")
    if suffixes and p.suffix.lower() not in suffixes:
        raise OutputError(path, f"the {what} must end in {' or '.join(suffixes)}")
    for i in inputs:
        if i is not None and _same(p, _resolved(i)):
            raise OutputError(path, f"the {what} is also an input of this run: refusing to "
                              "overwrite it (choose another output name)")
    check_output_dir(p.parent, (), what=f"folder of the {what}")
    return p


def inside(folder: str | Path, name: str, what: str = "--name") -> Path:
    """``folder / name`` for a plain file name; refuses names that would leave ``folder``."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name \
            or Path(name).name != name:
        raise OutputError(name, f"{what} must be a plain file name without folders")
    return Path(folder) / name


def temp_path_for(target: str | Path) -> Path:
    """A fresh temporary path beside ``target`` (hidden, same suffix, random part)."""
    t = Path(target)
    return t.with_name(f".{t.stem}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{t.suffix}")


class AtomicFile:
    """One output file written to ``tmp`` beside ``target`` and renamed into place on commit.

    ``tmp``'s parent folder exists after construction (created when missing); nothing else is
    touched until :meth:`commit`. ``target`` is the final path; ``tmp`` has the same suffix."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(self.target.parent, f"cannot create the output folder "
                              f"({exc.strerror or exc})") from None
        if self.target.is_dir():
            raise OutputError(self.target, "is an existing folder, not a file")
        self.tmp = temp_path_for(self.target)
        self.state = "open"

    def commit(self) -> Path:
        """Rename the finished temporary file over the target (atomic); returns the target."""
        if self.state == "committed":
            return self.target
        if self.state != "open":
            raise RuntimeError(f"{self.target}: commit after discard")
        os.replace(self.tmp, self.target)
        self.state = "committed"
        return self.target

    def discard(self) -> None:
        """Remove the temporary file (only it); the target is left exactly as it was."""
        if self.state == "open":
            with contextlib.suppress(OSError):
                self.tmp.unlink(missing_ok=True)
            self.state = "discarded"


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` when the block ends
    normally, remove only it when the block raises (any exception, KeyboardInterrupt included)."""
    f = AtomicFile(target)
    try:
        yield f.tmp
    except OSError as exc:  # a write error (disk full, quota, I/O): one line naming the target
        f.discard()
        raise OutputError(target, f"cannot write the file ({exc.strerror or exc}); nothing was "
                          "replaced") from None
    except BaseException:
        f.discard()
        raise
    try:
        f.commit()
    except BaseException:
        f.discard()
        raise


def atomic_write_bytes(target: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_path`); returns the target."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(target)


def atomic_write_text(target: str | Path, text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def fresh_dir_name(parent: str | Path, prefix: str) -> Path:
    """``parent/<prefix>-YYYYmmdd-HHMMSS[-n]``: a folder name that does not exist yet (not created)."""
    import datetime as _dt

    base = Path(parent) / f"{prefix}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    p, n = base, 1
    while p.exists():
        n += 1
        p = base.with_name(f"{base.name}-{n}")
    return p
