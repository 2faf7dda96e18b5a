"""ImageNet-21K-P dataset build: ``luigi --module pipeline BuildImageNet21KP --archive A --output-dir O``.

Importing this package registers the Luigi tasks. :func:`build_dataset` runs the same build
in-process with Luigi's local scheduler (what the tests and the demo use).
"""
from __future__ import annotations

__version__ = "0.1.0"

from pipeline.tasks import (  # noqa: E402  (Luigi finds tasks through this module)
    BuildImageNet21KP,
    ClaimOutputDir,
    ConvertGzip,
    ConvertRange,
    DatasetTask,
    PipelineError,
    PlanDataset,
    ReadTaxonomy,
    WriteShards,
    WriteTables,
)

__all__ = ["BuildImageNet21KP", "ClaimOutputDir", "ConvertGzip", "ConvertRange", "DatasetTask", "PipelineError",
           "PlanDataset", "ReadTaxonomy", "WriteShards", "WriteTables", "build_dataset"]


def build_dataset(archive, output_dir, workers: int = 1, **params):
    """Build the dataset with Luigi's local scheduler; return the output dir as a Path.

    ``params`` are :class:`BuildImageNet21KP` parameters (``min_images=31``, ``val_per_class=5``,
    ...). Raises :class:`PipelineError` with Luigi's summary when the build does not finish.
    """
    from pathlib import Path

    import luigi

    from pipeline.archive import ArchiveError

    task = BuildImageNet21KP(archive=str(archive), output_dir=str(output_dir), **params)
    failures: list[str] = []

    def remember(failed_task, exception):  # run failures (in-process workers) and broken complete()/requires()
        failures.append(f"{failed_task.task_family}: {exception}")

    events = (luigi.Event.FAILURE, luigi.Event.BROKEN_TASK)
    for event in events:
        DatasetTask.event_handler(event)(remember)
    try:
        result = luigi.build([task], local_scheduler=True, workers=workers, detailed_summary=True,
                             log_level="WARNING")
    finally:
        for event in events:
            DatasetTask.remove_event_handler(event, remember)
    try:
        done = not failures and task.complete()
    except ArchiveError as exc:
        raise PipelineError(str(exc)) from None
    if not done:
        raise PipelineError("build did not complete: " + ("; ".join(failures) or result.summary_text))
    return Path(output_dir)
