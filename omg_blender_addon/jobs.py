"""Background jobs: backend work off Blender's UI thread, with progress, cancel and clean failure.

The pattern every long operator follows (see ``JobOperator``):
1. ``prepare(context)`` runs on the UI thread, validates input and copies what the job needs out of
   bpy into plain Python/numpy data, returning ``work(progress) -> result`` (or None to abort).
2. ``work`` runs in a worker thread and never touches bpy.
3. ``apply(context, result)`` runs on the UI thread after success and is the only step that writes
   bpy data. A failed or cancelled job therefore leaves the scene exactly as it was.
Called from a script (EXEC_DEFAULT) the same three steps run synchronously.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import bpy
from bpy.props import BoolProperty

from ..backend.errors import CancelledError, OMGError
from ..backend.progress import Progress

Work = Callable[[Progress], Any]

_RUNNING: "set[BackgroundJob]" = set()


@dataclass(eq=False)
class BackgroundJob:
    """One backend call in a worker thread; all fields are read by the UI thread while it polls."""

    work: Work
    fraction: float = 0.0
    message: str = ""
    result: Any = None
    error: str | None = None
    details: str | None = None
    cancelled: bool = False
    _cancel_requested: bool = False
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="omg-avatar-job", daemon=True)
        _RUNNING.add(self)
        self._thread.start()

    def _on_progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message

    def _run(self) -> None:
        progress = Progress(callback=self._on_progress, should_cancel=lambda: self._cancel_requested)
        try:
            self.result = self.work(progress)
        except CancelledError:
            self.cancelled = True
        except OMGError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown to the user as one line, details to the console
            self.error = f"unexpected error: {exc}"
            self.details = traceback.format_exc()

    def cancel(self) -> None:
        self._cancel_requested = True

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        _RUNNING.discard(self)


def cancel_all(timeout: float = 10.0) -> None:
    """Ask every running job to stop and wait for it (used when the add-on is disabled)."""
    for job in list(_RUNNING):
        job.cancel()
    for job in list(_RUNNING):
        job.join(timeout)


def run_sync(work: Work) -> tuple[Any, str | None]:
    """Run ``work`` on this thread; returns ``(result, error message or None)``."""
    try:
        return work(Progress()), None
    except CancelledError:
        return None, "cancelled"
    except OMGError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        return None, f"unexpected error: {exc}"


class JobOperator:
    """Mixin for operators that run backend work; subclasses define ``prepare`` and ``apply``.

    From the UI (``invoke``) the work runs in the background with progress in the status bar and
    the window manager's progress cursor; Esc cancels. From scripts (``execute``) it runs to
    completion synchronously.
    """

    job_title: str = "OMG Avatar"
    _job: BackgroundJob | None = None
    _timer = None

    # -- to implement ----------------------------------------------------------------------------
    def prepare(self, context) -> Work | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, context, result) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- synchronous path --------------------------------------------------------------------------
    def execute(self, context):
        work = self.prepare(context)
        if work is None:
            return {"CANCELLED"}
        result, error = run_sync(work)
        if error is not None:
            self.report({"ERROR"}, error)
            return {"CANCELLED"}
        return self._apply_reporting(context, result)

    # -- background path ---------------------------------------------------------------------------
    def invoke(self, context, event):
        work = self.prepare(context)
        if work is None:
            return {"CANCELLED"}
        self._job = BackgroundJob(work)
        self._job.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        self._status(context, f"{self.job_title}: starting (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = self._job
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
            self._status(context, f"{self.job_title}: cancelling...")
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        context.window_manager.progress_update(int(100 * job.fraction))
        if not job.done:
            self._status(context, f"{self.job_title}: {int(100 * job.fraction)}% {job.message} (Esc to cancel)")
            return {"RUNNING_MODAL"}
        job.join()
        self._finish(context)
        if job.cancelled:
            self.report({"WARNING"}, f"{self.job_title}: cancelled, nothing was changed")
            return {"CANCELLED"}
        if job.error is not None:
            if job.details:
                print(job.details)
            self.report({"ERROR"}, job.error)
            return {"CANCELLED"}
        return self._apply_reporting(context, job.result)

    def cancel(self, context):
        if self._job is not None:
            self._job.cancel()
            self._job.join()
        self._finish(context)

    # -- helpers -----------------------------------------------------------------------------------
    def _apply_reporting(self, context, result):
        try:
            self.apply(context, result)
        except OMGError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}

    def _finish(self, context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        self._status(context, None)

    @staticmethod
    def _status(context, text: str | None) -> None:
        workspace = getattr(context, "workspace", None)
        if workspace is not None:
            workspace.status_text_set(text)


class FileJobOperator(JobOperator):
    """A JobOperator whose input is ``self.filepath``: invoked from the UI without one, it opens the
    file browser first, and confirming there starts the job in the background with progress."""

    browsed: BoolProperty(default=False, options={"HIDDEN", "SKIP_SAVE"})

    def invoke(self, context, event):
        if not self.filepath:
            self.browsed = True
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return super().invoke(context, event)

    def execute(self, context):
        if self.browsed:
            # The file browser confirms through execute: start again as a UI invocation so the job
            # runs in the background. This call itself changes nothing (no undo step).
            module, _, name = self.bl_idname.partition(".")
            getattr(getattr(bpy.ops, module), name)("INVOKE_DEFAULT", **operator_properties(self))
            return {"CANCELLED"}
        return super().execute(context)


def operator_properties(op) -> dict[str, Any]:
    """The operator's user-facing property values, to call it again with the same settings."""
    skip = {"rna_type", "browsed", "filter_glob", "filter_image", "filter_movie", "filter_folder"}
    values: dict[str, Any] = {}
    for key in op.properties.bl_rna.properties.keys():
        if key in skip or key.startswith("filter_"):
            continue
        value = getattr(op.properties, key)
        values[key] = tuple(value) if hasattr(value, "__len__") and not isinstance(value, str) else value
    return values
