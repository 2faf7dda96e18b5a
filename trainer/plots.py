"""PNG plots of a run's metric history (matplotlib, Agg backend), redrawn after every epoch.

* ``accuracy_per_level.png`` - validation top-1 per hierarchy level of the latest validated
  epoch (paper Fig. 6);
* ``teacher_confidence.png`` - mean teacher confidence per level over the latest epoch (paper
  Fig. 7; semantic KD runs only);
* ``curves.png`` - training loss and validation accuracies / mAP per epoch.
"""
from __future__ import annotations

import io
from pathlib import Path

from hierarchy.atomic import atomic_write_bytes

ACCURACY_PER_LEVEL = "accuracy_per_level.png"


def _save(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())


def _bars(plt, depths, values, title, ylabel, path):
    figure, axis = plt.subplots(figsize=(7, 4))
    shown = [v if v is not None else 0.0 for v in values]
    axis.bar([str(d) for d in depths], shown, color="tab:blue")
    for x, v in enumerate(values):
        axis.text(x, (v or 0.0), "n/a" if v is None else f"{v:.1f}", ha="center", va="bottom",
                  fontsize=8)
    axis.set_xlabel("hierarchy level")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def write_plots(history: list[dict], tree, run_dir: str | Path) -> list[Path]:
    """Draw the plots that ``history`` (the entries of metrics.jsonl) allows; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir, written = Path(run_dir), []
    depths = list(tree.softmax_levels)
    validated = [e for e in history if e.get("val")]
    if validated:
        last = validated[-1]
        written.append(write_accuracy_per_level(last["val"], tree, run_dir, f"epoch {last['epoch']}"))
    with_teacher = [e for e in history if e["train"].get("teacher_confidence")]
    if with_teacher:
        last = with_teacher[-1]
        path = run_dir / "teacher_confidence.png"
        _bars(plt, depths, last["train"]["teacher_confidence"],
              f"mean teacher confidence per level, epoch {last['epoch']}", "confidence", path)
        written.append(path)
    if history:
        figure = curves_figure(history)
        path = run_dir / "curves.png"
        _save(figure, path)
        plt.close(figure)
        written.append(path)
    return written


def write_accuracy_per_level(val: dict, tree, folder: str | Path, what: str) -> Path:
    """``folder/accuracy_per_level.png``: the semantic top-1 per level of one validation
    (``val``, a ``metrics.jsonl`` entry's) of ``what`` (``epoch 3``, a weights file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(folder) / ACCURACY_PER_LEVEL
    _bars(plt, list(tree.softmax_levels), val["semantic_top1_per_level"],
          f"validation top-1 per level, {what} (total {val['semantic_top1']:.1f}%, class-weighted "
          f"{val['semantic_top1_class_weighted']:.1f}%)", "top-1 accuracy [%]", path)
    return path


def curves_figure(history: list[dict]):
    """Training loss and validation accuracies / mAP per epoch (whole-epoch ticks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    validated = [e for e in history if e.get("val")]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(11, 4))
    loss_axis.plot([e["epoch"] for e in history], [e["train"]["loss"] for e in history], marker="o")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss")
    for key, label in [("semantic_top1", "semantic top-1"),
                       ("semantic_top1_class_weighted", "semantic top-1 (class-weighted)"),
                       ("top1", "top-1"), ("top5", "top-5"), ("map_macro", "mAP (macro)")]:
        acc_axis.plot([e["epoch"] for e in validated], [e["val"][key] for e in validated], marker="o", label=label)
    acc_axis.set_xlabel("epoch")
    acc_axis.set_ylabel("validation [%]")
    for axis in (loss_axis, acc_axis):  # epochs are whole numbers: no ticks at 1.2, 1.4, ...
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
