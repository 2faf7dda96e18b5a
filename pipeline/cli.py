"""``luigi --module pipeline BuildImageNet21KP ...`` as a person meets it.

Importing :mod:`pipeline` from Luigi's command line wraps the one function that command calls to
run (``luigi.interface._run``, called by ``luigi.retcodes.run_with_retcodes`` once the module is
imported), so that for the pipeline's own tasks:

* parameters are parsed and checked, and the archive, the output dir and WordNet looked at,
  before any work starts; a problem is one ``error:`` line with its own exit status
  (:mod:`pipeline.errors`);
* a known failure in any task, in any worker process, ends the command the same way, and Luigi's
  traceback for it is not printed (unknown failures keep Luigi's report and ``[retcode]``);
* Ctrl-C is one line saying that a rerun resumes (exit 130);
* a local build draws one progress bar with an ETA (:class:`pipeline.progress.BuildProgress`)
  and ends with a summary of what was built.

Other Luigi tasks run through the same command are left alone. :func:`build_dataset` gives the
same checks and failures in-process.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import luigi
import luigi.interface
from luigi.cmdline_parser import CmdlineParser
from luigi.parameter import MissingParameterException
from luigi.task_register import Register

from pipeline.dataset_format import STATS_FILE
from pipeline.errors import (INTERRUPTED, RERUN_RESUMES, ParameterError, PipelineError, known_failure,
                             record_failure, recorded_failures)
from pipeline.preflight import flag
from pipeline.progress import RUN_DIR_ENV, BuildProgress, Work

_WRAPPED = "_imagenet21kp_wrapped"


def install() -> None:
    """Wrap Luigi's command-line run and quiet Luigi's log for known failures (idempotent)."""
    if not getattr(luigi.interface._run, _WRAPPED, False):
        luigi.interface._run = _reporting_run(luigi.interface._run)
        logging.getLogger("luigi-interface").addFilter(_drop_known_failures)


def _drop_known_failures(record: logging.LogRecord) -> bool:
    """Luigi logs a task's failure with its traceback; a known one is reported as one line instead."""
    exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
    return exc is None or known_failure(exc) is None


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


def _reporting_run(luigi_run):
    @functools.wraps(luigi_run)
    def run(cmdline_args=None, main_task_cls=None, worker_scheduler_factory=None, use_dynamic_argparse=None,
            local_scheduler=False, detailed_summary=False):
        args = list(sys.argv[1:] if cmdline_args is None else cmdline_args)
        if main_task_cls is None and not local_scheduler:  # the command line's own call
            try:
                task = _parse_and_check(args)
            except (PipelineError, KeyboardInterrupt) as exc:
                _exit_with(exc)
            except Exception as exc:
                if known_failure(exc) is None:
                    raise
                _exit_with(exc)
            if task is not None:
                return _run_build(task, args, luigi_run, worker_scheduler_factory)
        return luigi_run(args, main_task_cls, worker_scheduler_factory, use_dynamic_argparse, local_scheduler,
                         detailed_summary)

    setattr(run, _WRAPPED, True)
    return run


def _parse_and_check(args: list[str]):
    """The root task of the command line when it is one of ours (None otherwise), built — and
    so checked (see ``BuildImageNet21KP.__init__``) — before Luigi schedules anything."""
    from pipeline.tasks import DatasetTask

    with CmdlineParser.global_instance(args) as parser:
        task_cls = Register.get_task_cls(parser.known_args.root_task)
        if not issubclass(task_cls, DatasetTask):
            return None
        problems = []
        for name, param in task_cls.get_params():
            raw = getattr(parser.known_args, name, None)
            if raw is None:
                raw = getattr(parser.known_args, f"{task_cls.task_family}_{name}", None)
            if raw is None:
                continue
            try:
                param.normalize(param.parse(raw))
            except (ValueError, TypeError) as exc:
                choices = getattr(param, "_choices", None)
                if choices:
                    reason = f"not one of {', '.join(sorted(map(str, choices)))}"
                elif isinstance(param, luigi.IntParameter):
                    reason = "not a whole number"
                else:
                    reason = str(exc)
                problems.append(f"{flag(name)} {raw}: {reason}")
        if problems:
            raise ParameterError("; ".join(problems))
        try:
            return parser.get_task_obj()
        except MissingParameterException as exc:  # "...: requires the 'archive' parameter to be set"
            name = re.search(r"requires the '(\w+)' parameter", str(exc))
            missing = flag(name.group(1)) if name else "a parameter"
            raise ParameterError(f"{task_cls.task_family} needs {missing}") from None


class BuildRun:
    """One run of a build: a report dir where every process notes progress and known failures,
    the run's clock, and (local runs) the progress bar. Used as a ``with`` block."""

    def __init__(self, task, local: bool, progress_bar: bool = True):
        from pipeline.tasks import WriteShards

        self.task, self.local = task, local
        self.started = time.monotonic()
        self.dir = tempfile.mkdtemp(prefix="imagenet21kp-run-")
        self.was_complete = task.complete()
        converts = task.convert_requirements()
        self.convert = [Work(t.task_id, t.work_weight(), t.images_read() if t.complete() else None) for t in converts]
        self._converting = [t for t, w in zip(converts, self.convert) if w.images is None]  # run by this run
        shards = [task.clone(WriteShards, group=g) for g in range(task.n_shard_tasks)]
        self.shards = [Work(t.task_id, 1, 1 if t.complete() else None) for t in shards]
        weight_is_files = task.layout in ("folders-dir", "released")
        self._bar = (BuildProgress(self.dir, self.convert, self.shards, weight_is_files)
                     if local and progress_bar and not self.was_complete else None)

    def __enter__(self):
        self._saved_env = os.environ.get(RUN_DIR_ENV)
        os.environ[RUN_DIR_ENV] = self.dir
        from pipeline.tasks import DatasetTask

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
        from pipeline.tasks import DatasetTask

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
        return sum(t.images_read() for t in self._converting)


def _run_build(task, args: list[str], luigi_run, worker_scheduler_factory):
    local = "--local-scheduler" in args
    try:
        with BuildRun(task, local) as build:
            result = luigi_run(args, None, worker_scheduler_factory, None, False, True)
    except KeyboardInterrupt as exc:
        _exit_with(exc)
    if build.failures:
        for _, message in build.failures:
            print(f"error: {message}", file=sys.stderr)
        raise SystemExit(build.failures[0][0])
    if task.complete():
        print(summary_text(task, build))
    elif local:
        print("error: the build did not finish: a task failed for a reason logged above (Luigi's "
              f"traceback); {RERUN_RESUMES} once it is fixed", file=sys.stderr)
    else:
        print(f"this worker is done; the build is not complete yet ({result.one_line_summary.strip()})",
              file=sys.stderr)
    return result


def _exit_with(exc: BaseException):
    code, message = known_failure(exc)
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _count(n: int, what: str, plural: str = "") -> str:
    return f"{n:,} {what if n == 1 else plural or what + 's'}"


def _by_reason(counts: dict) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def summary_text(task, build: BuildRun | None = None) -> str:
    """What the build made, from its ``stats.json``: classes, samples, shards, rejects, time."""
    import json

    out = Path(task.output_dir).resolve()
    stats = json.loads((out / STATS_FILE).read_text())
    dropped = stats["dropped_classes"]
    rejects = stats["rejects_by_reason"]
    n_dropped = sum(dropped.values())
    lines = []
    if build is None or build.was_complete:
        lines.append(f"ImageNet-21K-P is complete, nothing to do: {out}")
    else:
        entries = build.entries_read()
        speed = f", {entries / build.seconds:,.0f} img/s" if entries else ""
        lines.append(f"ImageNet-21K-P built in {build.seconds:,.1f} s ({_count(entries, 'archive entry', 'archive entries')} "
                     f"read{speed}): {out}")
    lines += [
        f"  classes     {stats['num_classes']:,} kept, {n_dropped:,} dropped" + (f" ({_by_reason(dropped)})" if dropped else ""),
        f"  train       {_count(stats['samples']['train'], 'sample')} in {_count(stats['shards']['train'], 'shard')}",
        f"  validation  {_count(stats['samples']['validation'], 'sample')} in {_count(stats['shards']['validation'], 'shard')}",
        f"  rejects     {sum(rejects.values()):,}" + (f" ({_by_reason(rejects)}; see rejects.parquet)" if rejects else ""),
    ]
    if "release" in stats:  # built from the processed download
        release = stats["release"]
        lines.append(f"  images      {release['copied']:,} copied byte for byte, {release['resized']:,} squish-resized")
        if release["tree_source"] != "is_a":
            lines.append("  note        the release's tree follows wordnet.is_a.txt; this build used WordNet "
                         "(--is-a-path FILE to follow it)")
    return "\n".join(lines)


def run_dataset_build(task, workers: int = 1) -> None:
    """Run ``task`` with Luigi's local scheduler in this process; raise the first known failure as
    its :mod:`pipeline.errors` class (:class:`PipelineError` with Luigi's summary otherwise)."""
    with BuildRun(task, local=True, progress_bar=False) as build:
        result = luigi.build([task], local_scheduler=True, workers=workers, detailed_summary=True,
                             log_level="WARNING")
    if build.failures:
        code, message = build.failures[0]
        error = failure_class(code)(message)
        error.exit_code = code
        raise error
    if not task.complete():
        raise PipelineError("build did not complete: " + result.summary_text)


def failure_class(exit_code: int) -> type[PipelineError]:
    """The :class:`PipelineError` subclass of an exit status (PipelineError for others)."""
    return next((c for c in PipelineError.__subclasses__() if c.exit_code == exit_code), PipelineError)


def scheduler_main(argv: list[str]) -> int:
    """``python -m pipeline scheduler [luigid flags]``: luigid with the package's Luigi defaults
    (the ``archive_io`` cap, retries), listening on 127.0.0.1 unless ``--address`` says otherwise."""
    from luigi.cmdline import luigid

    from pipeline.luigi_config import apply_defaults

    apply_defaults()
    address = "127.0.0.1"
    for i, arg in enumerate(argv):
        if arg == "--address" and i + 1 < len(argv):
            address = argv[i + 1]
        elif arg.startswith("--address="):
            address = arg.split("=", 1)[1]
    print(f"luigid listening on {address} (no authentication: whoever reaches this address and port can "
          "see every task and change the build's state; bind it to a private interface)", file=sys.stderr)
    luigid(["--address", address, *argv])
    return 0
