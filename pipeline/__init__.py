"""ImageNet-21K-P dataset build: ``luigi --module pipeline BuildImageNet21KP --archive A --output-dir O``.

Importing this package registers the Luigi tasks, puts the package's Luigi defaults under any
``luigi.cfg`` (:mod:`pipeline.luigi_config`) and makes Luigi's command line report the build's
failures as one line each (:mod:`pipeline.cli`). :func:`build_dataset` runs the same build
in-process with Luigi's local scheduler (what the tests use).
"""
from __future__ import annotations

__version__ = "0.1.0"

from pipeline.luigi_config import apply_defaults

apply_defaults()

from pipeline.errors import PipelineError  # noqa: E402
from pipeline.tasks import (  # noqa: E402  (Luigi finds tasks through this module)
    BuildImageNet21KP,
    ClaimOutputDir,
    ConvertGzip,
    ConvertRange,
    DatasetTask,
    PlanDataset,
    ReadTaxonomy,
    WriteShards,
    WriteTables,
)
from pipeline import cli  # noqa: E402

cli.install()

__all__ = ["BuildImageNet21KP", "ClaimOutputDir", "ConvertGzip", "ConvertRange", "DatasetTask", "PipelineError",
           "PlanDataset", "ReadTaxonomy", "WriteShards", "WriteTables", "build_dataset"]


def build_dataset(archive, output_dir, workers: int = 1, **params):
    """Build the dataset with Luigi's local scheduler; return the output dir as a Path.

    ``params`` are :class:`BuildImageNet21KP` parameters (``min_images=31``, ``val_per_class=5``,
    ...). Raises the build's :class:`PipelineError` subclass (:mod:`pipeline.errors`) when it fails.
    """
    from pathlib import Path

    cli.run_dataset_build(BuildImageNet21KP(archive=str(archive), output_dir=str(output_dir), **params), workers)
    return Path(output_dir)
