"""The build's known failures: each reaches the user as one ``error:`` line naming the fix, and
the command exits with the failure's own status.

=====  ===============================================================================
 exit  failure
=====  ===============================================================================
   0   the dataset is complete
   1   the build stopped for another stated reason (e.g. the accounting does not add up)
   2   a parameter value is invalid, or parameters contradict each other (ParameterError)
   3   the archive is missing, not an archive, or cut short / corrupt (ArchiveError)
   4   the output dir holds a build made with other parameters (OutputDirError)
   5   WordNet is not installed (hierarchy's WordNetMissing)
   6   no class has enough images: nothing to build (NothingToBuild)
   7   no space left on the device (an OSError ENOSPC / EDQUOT)
   8   no Luigi scheduler reachable (SchedulerUnreachable): --local-scheduler, or start luigid
   9   another build is writing the same output dir on this host (BuildInProgress)
  30   a task failed for another reason (Luigi's ``[retcode] task_failed``; traceback above)
 130   interrupted (Ctrl-C); rerun the same command to resume
=====  ===============================================================================

Luigi's own statuses (10 already running, 20 missing data, 25 not run, 35 scheduling error,
40 unexpected exception) keep their ``[retcode]`` meaning.
"""
from __future__ import annotations

import errno
import json
import os

from pipeline.progress import RUN_DIR_ENV

INTERRUPTED = 130
RERUN_RESUMES = "rerun the same command to resume (finished work is kept)"


class PipelineError(RuntimeError):
    """A build cannot go on; the message says why and what to do."""

    exit_code = 1


class ParameterError(PipelineError):
    """A parameter value is invalid, or a combination of them cannot make a sensible dataset."""

    exit_code = 2


class ArchiveError(PipelineError):
    """The archive as a whole cannot be read (missing, wrong format, truncated)."""

    exit_code = 3


class OutputDirError(PipelineError):
    """The output dir cannot take this build (built with other parameters, not a folder)."""

    exit_code = 4


class NothingToBuild(PipelineError):
    """No class of the archive is kept under the given parameters."""

    exit_code = 6


class SchedulerUnreachable(PipelineError):
    """No central scheduler (luigid) answers where Luigi was told to find one."""

    exit_code = 8


class BuildInProgress(PipelineError):
    """Another build on this host is writing the same output dir."""

    exit_code = 9


WORDNET_MISSING = 5
NO_SPACE = 7
FAILURES_FILE = "failures.jsonl"  # in the run's report dir: one JSON line per known failure


def known_failure(exc: BaseException) -> tuple[int, str] | None:
    """``(exit status, one-line message)`` for a failure the user can fix; None for anything else
    (a bug: Luigi reports it with its traceback)."""
    from hierarchy.wordnet import WordNetMissing

    if isinstance(exc, PipelineError):
        return exc.exit_code, str(exc)
    if isinstance(exc, WordNetMissing):
        return WORDNET_MISSING, str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED, f"interrupted; {RERUN_RESUMES}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {exc.filename}" if exc.filename else ""
        return NO_SPACE, (f"no space left on the device{where}; free space or give --work-dir / "
                          f"--output-dir on a larger disk, then {RERUN_RESUMES}")
    return None


def record_failure(exc: BaseException) -> str | None:
    """For a known failure: note it for the command that runs the build (in the run's report
    dir, whichever process hit it) and return its one line; None for anything else."""
    known = known_failure(exc)
    if known is None:
        return None
    code, message = known
    run_dir = os.environ.get(RUN_DIR_ENV)
    if run_dir:
        line = json.dumps({"exit_code": code, "message": message}) + "\n"
        fd = os.open(os.path.join(run_dir, FAILURES_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one write of one line: appends from processes never interleave
        finally:
            os.close(fd)
    return message


def recorded_failures(run_dir) -> list[tuple[int, str]]:
    """The distinct known failures of a run, in the order they happened."""
    path = os.path.join(run_dir, FAILURES_FILE)
    if not os.path.isfile(path):
        return []
    rows = [json.loads(line) for line in open(path) if line.strip()]
    return list(dict.fromkeys((r["exit_code"], r["message"]) for r in rows))


def failure_error(exit_code: int, message: str) -> PipelineError:
    """The :class:`PipelineError` of a recorded failure: its class by exit status (PipelineError
    for the others, which keep their status)."""
    cls = next((c for c in PipelineError.__subclasses__() if c.exit_code == exit_code), PipelineError)
    error = cls(message)
    error.exit_code = exit_code
    return error
