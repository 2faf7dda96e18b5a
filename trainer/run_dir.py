"""Claiming the run directory: whether ``--output`` may take a run, and clearing a previous run.

A directory holding a run's files is never replaced silently: :func:`check_run_dir` refuses it
without ``--resume`` or ``--overwrite`` and changes nothing (a refused command leaves no trace);
:func:`prepare_run_dir` creates the directory and deletes the previous run's files once every
check of the new run has passed.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from trainer.checkpoint import CHECKPOINT
from trainer.config import ConfigError
from trainer.export import EXPORT_FILES
from trainer.report import METRICS_FILE
from trainer.steplog import STEPS_FILE, TENSORBOARD_DIR


def run_files(run_dir: Path) -> list[Path]:
    """The files (and the TensorBoard folder) a run writes that ``run_dir`` already holds (a
    previous run's)."""
    if not run_dir.is_dir():
        return []
    names = {CHECKPOINT, METRICS_FILE, STEPS_FILE, *EXPORT_FILES}
    return sorted(p for p in run_dir.iterdir()
                  if (p.is_file() and (p.name in names or p.suffix == ".png")) or (p.is_dir() and p.name == TENSORBOARD_DIR))


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> list[Path]:
    """The previous run's files in ``run_dir`` that a new run would delete (``--overwrite``);
    refuses (:class:`ConfigError`) a directory holding a run without ``--resume`` or
    ``--overwrite``. Changes nothing: a refused command leaves no trace."""
    previous = run_files(run_dir)
    if previous and not resume and not overwrite:
        raise ConfigError(
            f"{run_dir} already holds a run ({', '.join(p.name for p in previous)}): "
            "--resume continues it, --overwrite deletes it and starts over, or choose another --output")
    return [] if resume else previous


def prepare_run_dir(run_dir: Path, replaced: list[Path]) -> None:
    """Create ``run_dir`` and delete the ``replaced`` files of a previous run (main rank only,
    once every check of the new run has passed)."""
    for path in replaced:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
