"""One run of a build, in this process: where its processes report progress and known failures,
how Ctrl-C ends it, and (local runs) the output dir's lock (:mod:`pipeline.output_lock`) and the
progress bar; :func:`run_in_process` runs a build with
Luigi's local scheduler and raises its failure as a :mod:`pipeline.errors` class."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time

import luigi

from pipeline.output_lock import OutputDirLock
from pipeline.errors import INTERRUPTED, PipelineError, failure_error, record_failure, recorded_failures
from pipeline.progress import RUN_DIR_ENV, BuildProgress
from pipeline.tasks import DatasetTask


def _interrupt_handler(command_pid: int):
    """SIGINT handler for a build: Ctrl-C reaches every process of the terminal's group. The
    command raises KeyboardInterrupt as usual; a process forked from it (Luigi's task processes,
    their converter processes) inherits the handler and leaves at once, quietly (its temp files
    are cleaned up by the rerun, as after kill -9)."""
    def handler(signum, frame):
        if os.getpid() == command_pid:
            raise KeyboardInterrupt
        record_failure(KeyboardInterrupt())
        os._exit(INTERRUPTED)

    return handler


class BuildRun:
    """One run of a build: a report dir where every process notes progress and known failures,
    the run's clock, and (local runs) the progress bar. Used as a ``with`` block."""

    def __init__(self, task, local: bool, progress_bar: bool = True):
        self.task, self.local = task, local
        self._lock = None
        self.started = time.monotonic()
        self.dir = tempfile.mkdtemp(prefix="imagenet21kp-run-")
        self.was_complete = task.complete()
        self.convert, self.shards = task.plan_of_work()
        self._converting = [w for w in self.convert if w.images is None]  # run by this run
        self._bar = (BuildProgress(self.dir, self.convert, self.shards, task.archive_layout.weighed_in_files)
                     if local and progress_bar and not self.was_complete else None)

    def __enter__(self):
        if self.local and not self.was_complete:  # a cluster's workers share luigid instead
            self._lock = OutputDirLock(self.task.output_dir).__enter__()
        self._saved_env = os.environ.get(RUN_DIR_ENV)
        os.environ[RUN_DIR_ENV] = self.dir
        DatasetTask.event_handler(luigi.Event.BROKEN_TASK)(self._broken)  # errors in requires(), in this process
        self._saved_sigint, self._saved_unraisable = None, sys.unraisablehook
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):  # not when ignored (nohup)
            self._saved_sigint = signal.signal(signal.SIGINT, _interrupt_handler(os.getpid()))
            sys.unraisablehook = self._unraisable
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        DatasetTask.remove_event_handler(luigi.Event.BROKEN_TASK, self._broken)
        if self._saved_sigint is not None:
            signal.signal(signal.SIGINT, self._saved_sigint)
            sys.unraisablehook = self._saved_unraisable
        if self._saved_env is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = self._saved_env
        self.failures = recorded_failures(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock is not None:
            self._lock.__exit__(*exc)
        self.seconds = time.monotonic() - self.started

    @staticmethod
    def _broken(task, exception) -> None:
        record_failure(exception)

    def _unraisable(self, unraisable) -> None:
        """A Ctrl-C that landed where Python can only print it ("Exception ignored in ...", e.g.
        inside a fork handler) is delivered again a moment later, to the main thread."""
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        else:
            self._saved_unraisable(unraisable)

    def entries_read(self) -> int:
        """Archive entries read by the convert tasks that ran in this run."""
        by_id = {t.task_id: t for t in self.task.convert_requirements()}
        return sum(by_id[w.task_id].images_read() for w in self._converting)


def run_in_process(task, workers: int = 1) -> None:
    """Run ``task`` with Luigi's local scheduler in this process; raise the first known failure as
    its :mod:`pipeline.errors` class (:class:`PipelineError` with Luigi's summary otherwise)."""
    with BuildRun(task, local=True, progress_bar=False) as build:
        result = luigi.build([task], local_scheduler=True, workers=workers, detailed_summary=True,
                             log_level="WARNING")
    if build.failures:
        raise failure_error(*build.failures[0])
    if not task.complete():
        raise PipelineError("build did not complete: " + result.summary_text)
