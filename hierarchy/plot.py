"""Bar chart of the number of classes per hierarchy level (paper Fig. 5)."""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from hierarchy.atomic import atomic_write_bytes


def plot_level_counts(level_counts: Sequence[int], softmax_levels: Sequence[int], path: str | Path,
                      title: str = "") -> None:
    """Write a PNG bar chart of ``level_counts`` to ``path`` (atomically; same input, same bytes).
    Levels without a softmax are drawn hatched and grey."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state, no display needed

    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.subplots()
    levels = range(len(level_counts))
    colors = ["tab:blue" if level in softmax_levels else "lightgrey" for level in levels]
    bars = axes.bar(levels, level_counts, color=colors, edgecolor="black", linewidth=0.5)
    for bar, level in zip(bars, levels):
        if level not in softmax_levels:
            bar.set_hatch("//")
    axes.bar_label(bars, fontsize=8, padding=2)
    axes.set_xticks(list(levels))
    dropped = len(level_counts) > len(softmax_levels)
    axes.set_xlabel("hierarchy level" + (" (hatched grey: no softmax)" if dropped else ""))
    axes.set_ylabel("number of classes")
    axes.set_title(title or "classes per hierarchy level")
    axes.margins(y=0.12)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
