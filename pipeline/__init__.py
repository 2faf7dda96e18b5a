"""ImageNet-21K-P dataset build: ``luigi --module pipeline BuildImageNet21KP --archive A --output-dir O``.

Luigi finds the tasks by importing this package: when Luigi is loaded (its command line, a
worker), importing the package is the build's entrance (:func:`pipeline.luigi_command.install`):
it registers the tasks, puts the package's Luigi defaults under any ``luigi.cfg`` and makes
Luigi's command line report the build's failures as one line each. Otherwise the package stays
light, so the trainer can use :mod:`pipeline.dataset_format` and :mod:`pipeline.images` without
loading Luigi; the entrance is then taken on first use of :func:`build_dataset` or of a name below.
"""
from __future__ import annotations

import sys

__version__ = "0.1.0"

_TASK_NAMES = ("BuildImageNet21KP", "ClaimOutputDir", "ConvertGzip", "ConvertRange", "DatasetTask", "PlanDataset",
               "ReadTaxonomy", "WriteShards", "WriteTables")
__all__ = [*_TASK_NAMES, "PipelineError", "build_dataset"]


def __getattr__(name: str):
    if name in _TASK_NAMES:
        from pipeline import luigi_command, tasks

        luigi_command.install()
        return getattr(tasks, name)
    if name == "PipelineError":
        from pipeline.errors import PipelineError

        return PipelineError
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def build_dataset(archive, output_dir, workers: int = 1, **params):
    """Build the dataset with Luigi's local scheduler; return the output dir as a Path.

    ``params`` are :class:`BuildImageNet21KP` parameters (``min_images=31``, ``val_per_class=5``,
    ...). Raises the build's :class:`PipelineError` subclass (:mod:`pipeline.errors`) when it fails.
    """
    from pathlib import Path

    from pipeline import build_run, luigi_command, tasks

    luigi_command.install()
    build_run.run_in_process(tasks.BuildImageNet21KP(archive=str(archive), output_dir=str(output_dir), **params),
                             workers)
    return Path(output_dir)


def _take_the_entrance() -> None:
    """Register the tasks and install the command's behaviour; a Ctrl-C while that loads (about
    a second on a cold disk) ends the command with one line, not an import traceback."""
    import os
    import signal
    import threading

    def interrupted(signum, frame):
        sys.stderr.write("error: interrupted while loading; nothing was started\n")
        os._exit(130)

    guard = (threading.current_thread() is threading.main_thread()
             and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if guard:
        signal.signal(signal.SIGINT, interrupted)
    try:
        from pipeline import luigi_command

        luigi_command.install()
        luigi_command.check_command_line(sys.argv[1:])
    finally:
        if guard:
            signal.signal(signal.SIGINT, signal.default_int_handler)


if "luigi" in sys.modules:  # imported by Luigi (`luigi --module pipeline`): the tasks must be registered now
    _take_the_entrance()
