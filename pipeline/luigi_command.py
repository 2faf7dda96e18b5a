"""``luigi --module pipeline BuildImageNet21KP ...`` as a person meets it.

Importing :mod:`pipeline` from Luigi's command line wraps the one function that command calls to
run once the module is imported (:func:`pipeline.luigi_private.wrap_command_run`), so that for the pipeline's own tasks:

* parameters are parsed and checked, and the archive, the output dir and WordNet looked at,
  before any work starts; a problem is one ``error:`` line with its own exit status
  (:mod:`pipeline.errors`);
* a known failure in any task, in any worker process, ends the command the same way, and Luigi's
  traceback for it is not printed (unknown failures keep Luigi's report and ``[retcode]``);
* Ctrl-C is one line saying that a rerun resumes (exit 130);
* a local build draws one progress bar with an ETA (:class:`pipeline.progress.BuildProgress`)
  and ends with a summary of what was built.

Other Luigi tasks run through the same command are left alone. :func:`pipeline.build_dataset` gives the
same checks and failures in-process (:mod:`pipeline.build_run`).
"""
from __future__ import annotations

import difflib
import functools
import json
import logging
import re
import socket
import sys
import textwrap
import urllib.parse
from pathlib import Path

import luigi
from luigi.cmdline_parser import CmdlineParser
from luigi.parameter import MissingParameterException
from luigi.task_register import Register

from hierarchy.command_line import flag
from pipeline.build_run import BuildRun
from pipeline.dataset_format import STATS_FILE
from pipeline.errors import RERUN_RESUMES, ParameterError, PipelineError, SchedulerUnreachable, known_failure
from pipeline.luigi_config import apply_defaults
from pipeline.luigi_private import parameter_choices, wrap_command_run
from pipeline.tasks import DatasetTask

_WRAPPED = "_imagenet21kp_wrapped"


def install() -> None:
    """Make ``luigi --module pipeline`` this build's command (idempotent): the package's Luigi
    defaults under any luigi.cfg, Luigi's run wrapped, Luigi's log quiet about known failures."""
    apply_defaults()
    if wrap_command_run(_reporting_run, _WRAPPED):
        logging.getLogger("luigi-interface").addFilter(_drop_known_failures)
    try:  # pyarrow imports pandas, when installed, the first time it builds a table (~0.2 s): done
        import pandas  # noqa: F401  here, in the process that forks Luigi's task processes, once
    except ImportError:
        pass


#: The Luigi options a build needs, as ``--help`` shows them (``--help-all``: all of Luigi's).
LUIGI_OPTIONS = (
    ("--local-scheduler", "", "build on this machine alone, without a central scheduler (luigid)"),
    ("--workers", "N", "tasks run at once by this command (default: 1; one per core is typical)"),
    ("--scheduler-host", "HOST", "the cluster's luigid, started with `python -m pipeline scheduler` "
                                 "(default: localhost)"),
    ("--scheduler-port", "PORT", "its port (default: 8082)"),
    ("--log-level", "LEVEL", "Luigi's log: DEBUG, INFO, WARNING (default), ERROR"),
    ("--help-all", "", "every option Luigi has, for every task"),
)


def check_command_line(argv: list[str]) -> None:
    """For a Luigi command line (``--module pipeline``) that runs one of the pipeline's tasks:
    print the build's own help for ``--help`` (exit 0), or refuse an unknown or abbreviated flag
    in one line naming the closest valid one (exit 2). Luigi's own parser would list every flag
    twice, print its usage, or take an abbreviation for a flag."""
    ours = any(a == "--module=pipeline" or (a == "--module" and b == "pipeline") for a, b in zip(argv, argv[1:] + [""]))
    task = next((a for a in argv if a in _task_families()), None) if ours else None
    if task is None:
        return
    if "--help" in argv or "-h" in argv:
        print(help_text(task))
        raise SystemExit(0)
    valid = _valid_flags(task)
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name.startswith("--") and name not in valid:
            shown = sorted(v for v in valid if not v.startswith(f"--{task}-"))
            close = difflib.get_close_matches(name, shown, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            print(f"error: unknown flag {name}{hint} (`luigi --module pipeline {task} --help` lists them)",
                  file=sys.stderr)
            raise SystemExit(ParameterError.exit_code)


def _task_families() -> set[str]:
    families, stack = set(), [DatasetTask]
    while stack:
        cls = stack.pop()
        families.add(cls.get_task_family())
        stack += cls.__subclasses__()
    return families


def _valid_flags(root_task: str) -> set[str]:
    """Every flag Luigi's command line takes with ``root_task`` (exact names, as Luigi builds them)."""
    flags = {"--help", "--help-all"}
    for task_name, without_section, param_name, _ in Register.get_all_params():
        flags.add("--" + (param_name if without_section else f"{task_name}_{param_name}").replace("_", "-"))
        if task_name == root_task:
            flags.add("--" + param_name.replace("_", "-"))
    return flags


def help_text(task_family: str = "BuildImageNet21KP", width: int = 100) -> str:
    """The build's ``--help``: each parameter once, with its default, then the Luigi options."""
    task_cls = Register.get_task_cls(task_family)
    summary = (task_cls.__doc__ or "").strip().splitlines()[0].replace("``", "")
    rows = []
    for name, param in task_cls.get_params():
        try:
            default = param.task_value(task_family, name)
            default = f" (default: {default})" if default not in ("", None) else ""
        except Exception:  # a parameter without a default
            default = " (required)"
        description = re.sub(r"\s*Choices: \{.*\}$", "", param.description or "")
        rows.append((f"{flag(name)} {_metavar(name, param)}", description + default))
    luigi_rows = [(f"{name} {metavar}".strip(), text) for name, metavar, text in LUIGI_OPTIONS]
    left = max(len(r[0]) for r in rows + luigi_rows) + 4
    lines = [f"usage: luigi --module pipeline {task_family} --archive PATH --output-dir DIR [--local-scheduler] "
             "[options]", "", summary]
    for title, group in (("build parameters", rows), ("Luigi options", luigi_rows)):
        lines += ["", f"{title}:"]
        for name, text in group:
            wrapped = textwrap.wrap(text, width - left, break_on_hyphens=False) or [""]
            lines.append(f"  {name.ljust(left - 2)}{wrapped[0]}")
            lines += [" " * left + more for more in wrapped[1:]]
    lines += ["", "Exit statuses, the cluster recipe and every output: README.md."]
    return "\n".join(lines)


def _metavar(name: str, param) -> str:
    choices = parameter_choices(param)
    if choices:
        return "{" + ",".join(sorted(map(str, choices))) + "}"
    if isinstance(param, luigi.IntParameter):
        return "N"
    return "FILE" if name.endswith("_path") else "DIR" if name.endswith("_dir") else "PATH"


def scheduler_url(args: list[str]) -> str | None:
    """The central scheduler this command line would use (None: ``--local-scheduler``)."""
    import luigi.interface

    with CmdlineParser.global_instance(args):
        core = luigi.interface.core()
        if core.local_scheduler:
            return None
        return core.scheduler_url or f"http://{core.scheduler_host}:{core.scheduler_port}/"


def check_scheduler(url: str, timeout: float = 3.0) -> None:
    """Raise :class:`SchedulerUnreachable` unless something accepts connections at ``url``."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return  # (a unix socket, or a form Luigi itself will judge)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc)).lower()
        raise SchedulerUnreachable(
            f"no Luigi scheduler at {parsed.hostname}:{port} ({reason}): add --local-scheduler to build on this "
            "machine alone, or start the cluster's scheduler with `python -m pipeline scheduler --address IP` and "
            "point workers at it (--scheduler-host IP)") from None


def _drop_known_failures(record: logging.LogRecord) -> bool:
    """Luigi logs a task's failure with its traceback; a known one is reported as one line instead."""
    exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
    return exc is None or known_failure(exc) is None


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

    return run


def _parse_and_check(args: list[str]):
    """The root task of the command line when it is one of ours (None otherwise), built — and
    so checked (see ``BuildImageNet21KP.__init__``) — before Luigi schedules anything."""
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
                choices = parameter_choices(param)
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


def _run_build(task, args: list[str], luigi_run, worker_scheduler_factory):
    url = scheduler_url(args)
    local = url is None
    try:
        if not local:
            check_scheduler(url)
        with BuildRun(task, local) as build:
            result = luigi_run(args, None, worker_scheduler_factory, None, False, True)
    except (KeyboardInterrupt, PipelineError) as exc:
        _exit_with(exc)
    if build.failures:
        for _, message in build.failures:
            print(f"error: {message}", file=sys.stderr)
        raise SystemExit(build.failures[0][0])
    if task.complete():
        _print_to_stdout(summary_text(task, build))
    elif local:
        print("error: the build did not finish: a task failed for a reason logged above (Luigi's "
              f"traceback); {RERUN_RESUMES} once it is fixed", file=sys.stderr)
    else:
        print(f"this worker is done; the build is not complete yet ({result.one_line_summary.strip()})",
              file=sys.stderr)
    return result


def _print_to_stdout(text: str) -> None:
    """Print; when stdout is a pipe whose reader left (``| head -1``), drop the output quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit


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
    near = stats.get("near_duplicates")
    if near:
        val = near["val_with_train_near_duplicate"]
        removed = near.get("near_duplicates_of_eval")
        if removed:
            lines.append(f"  near-dups   {sum(removed.values()):,} left out as near-duplicates of evaluation images "
                         f"({_by_reason(removed)})")
        if val["images"]:
            lines.append(f"  val dups    {val['images']:,} validation images have a near-duplicate in train "
                         + ("(moved out of validation)" if val["moved"] else "(val_near_duplicates.parquet)"))
    if "release" in stats:  # built from the processed download
        release = stats["release"]
        lines.append(f"  images      {release['copied']:,} copied byte for byte, {release['resized']:,} squish-resized")
        if release["tree_source"] != "is_a":
            lines.append("  note        the release's tree follows wordnet.is_a.txt; this build used WordNet "
                         "(--is-a-path FILE to follow it)")
    return "\n".join(lines)
