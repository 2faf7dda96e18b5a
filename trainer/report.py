"""What a run reports: ``metrics.jsonl`` and the plots after every epoch, the model card, and
the lines printed about them."""
from __future__ import annotations

import json
from pathlib import Path

from hierarchy.atomic import atomic_write_text
from pipeline.dataset_format import read_build_parameters
from trainer import checkpoint as ckpt
from trainer.plots import write_plots


def stored_images(dataset_dir: str | Path) -> dict:
    """How the dataset's images were stored (``stats.json`` → parameters; the pipeline's
    defaults when the file is absent): what ``predict`` must make of a new image."""
    params = read_build_parameters(dataset_dir)
    return {"image_size": int(params.get("image_size", 224)), "jpeg_quality": int(params.get("jpeg_quality", 95))}


def model_card(config, num_classes: int) -> dict:
    """``model.json``: what loads and feeds the exported weights."""
    return {"model": config.model, "num_classes": num_classes, "input_size": config.input_size,
            "scheme": config.scheme, "weights": ckpt.EXPORT_WEIGHTS, "tree": ckpt.EXPORT_TREE,
            **stored_images(config.data)}


def write_epoch_files(run_dir: Path, history: list[dict], tree) -> None:
    """``metrics.jsonl`` (one line per epoch so far) and the plots of ``history``."""
    atomic_write_text(run_dir / ckpt.METRICS_FILE, "".join(json.dumps(e, sort_keys=True) + "\n" for e in history))
    write_plots(history, tree, run_dir)


def epoch_line(entry: dict, epochs: int) -> str:
    """``epoch 3/40: loss ... | val semantic top-1 ...`` for one ``metrics.jsonl`` entry."""
    line = f"epoch {entry['epoch']}/{epochs}: loss {entry['train']['loss']:.4f}"
    val = entry.get("val")
    if val:
        line += (f" | val semantic top-1 {val['semantic_top1']:.2f}% "
                 f"(class-weighted {val['semantic_top1_class_weighted']:.2f}%), "
                 f"top-1 {val['top1']:.2f}%, top-5 {val['top5']:.2f}%, "
                 f"mAP {val['map_macro']:.2f}%")
    return line


def outputs_lines(run_dir: Path, weights: Path) -> str:
    """Where a finished run left its files."""
    plots = ", ".join(p.name for p in sorted(run_dir.glob("*.png")))
    return (f"outputs in {run_dir}:\n"
            f"  weights    {weights} (plain timm state_dict; semantic_tree.json beside it)\n"
            f"  checkpoint {run_dir / ckpt.CHECKPOINT} (continue with --resume)\n"
            f"  metrics    {run_dir / ckpt.METRICS_FILE}\n"
            f"  plots      {plots}")
