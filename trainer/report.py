"""What a run reports: ``metrics.jsonl`` and the plots after every epoch, the model card, and
the lines printed about them."""
from __future__ import annotations

import json
import math
from pathlib import Path

from hierarchy.atomic import atomic_write_text
from pipeline.dataset_format import read_build_parameters
from trainer import export
from trainer.checkpoint import CHECKPOINT
from trainer.config import lr_batch_factor, lr_scale_rule
from trainer.plots import write_plots
from trainer.schedule import one_cycle_factor

METRICS_FILE = "metrics.jsonl"


def stored_images(dataset_dir: str | Path) -> dict:
    """How the dataset's images were stored (``stats.json`` → parameters; the pipeline's
    defaults when the file is absent): what ``predict`` must make of a new image."""
    params = read_build_parameters(dataset_dir)
    return {"image_size": int(params.get("image_size", 224)), "jpeg_quality": int(params.get("jpeg_quality", 95))}


def model_card(config, num_classes: int, global_batch: int, lr: float) -> dict:
    """``model.json``: what loads and feeds the exported weights, and the recipe that trained
    them (global batch, peak lr, optimizer and weight decay)."""
    return {"model": config.model, "num_classes": num_classes, "input_size": config.input_size,
            "scheme": config.scheme, "weights": export.EXPORT_WEIGHTS, "tree": export.EXPORT_TREE,
            "global_batch": global_batch, "batch_size_per_rank": config.batch_size,
            "accum_steps": config.accum_steps, "peak_lr": lr, "optimizer": config.optimizer,
            "weight_decay": config.weight_decay, "epochs": config.epochs, **stored_images(config.data)}


def recipe_lines(config, world_size: int, global_batch: int, lr: float, total_steps: int) -> list[str]:
    """What the run trains with, said at start: the global batch against the recipe's, where the
    peak lr comes from, and the weight decay in units that compare across optimizers."""
    batch = (f"global batch {global_batch} = {config.batch_size} per rank x {world_size} rank(s) x "
             f"{config.accum_steps} accumulation step(s)")
    if config.lr is not None:
        source = "--lr"
        if global_batch != config.lr_base_size:
            source += f"; the recipe's {config.lr_base:g} is meant for a global batch of {config.lr_base_size}"
    elif global_batch == config.lr_base_size:
        source = f"--lr-base at the recipe's global batch {config.lr_base_size}"
    else:
        factor = lr_batch_factor(global_batch, config.lr_base_size, config.lr_base_scale, config.optimizer)
        rule = lr_scale_rule(config.lr_base_scale, config.optimizer)
        source = (f"--lr-base {config.lr_base:g} x {factor:.4g}: {rule} rule for a global batch of "
                  f"{global_batch} instead of the recipe's {config.lr_base_size}; --lr sets it directly")
    return [f"{batch}; peak lr {lr:.3g} ({source})", f"optimizer {decay_text(config, lr, total_steps)}"]


def decay_text(config, lr: float, total_steps: int) -> str:
    """The optimizer and its weight decay: coupled L2 (Adam, the released recipe), or AdamW's
    decoupled decay with the share of each weight it removes over the whole schedule."""
    if config.optimizer == "adam":
        return (f"Adam, L2 weight decay {config.weight_decay:g} coupled into the gradient of weights "
                "(the released recipe)")
    kept = decoupled_decay_kept(config, lr, total_steps)
    return (f"AdamW, decoupled weight decay {config.weight_decay:g}: a weight shrinks by lr x "
            f"{config.weight_decay:g} per step, {100 * (1 - kept):.3g} % over the whole schedule by decay alone")


def decoupled_decay_kept(config, lr: float, total_steps: int, samples: int = 10_000) -> float:
    """The factor AdamW's decoupled decay alone leaves of a weight after the whole one-cycle
    schedule: the product of (1 - lr_t x weight decay) over its steps (from ``samples`` steps
    spread evenly over the schedule when it is longer)."""
    steps = range(total_steps) if total_steps <= samples else [
        round(i * (total_steps - 1) / (samples - 1)) for i in range(samples)]
    log_kept = sum(math.log1p(-lr * config.weight_decay * one_cycle_factor(
        step, total_steps, config.pct_start, config.div_factor, config.final_div_factor)) for step in steps)
    return math.exp(log_kept * total_steps / len(steps))


def write_epoch_files(run_dir: Path, history: list[dict], tree) -> None:
    """``metrics.jsonl`` (one line per epoch so far) and the plots of ``history``."""
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(e, sort_keys=True) + "\n" for e in history))
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
            f"  model      {weights} with config.json, labels.txt: a timm model folder, "
            f"timm.create_model(\"local-dir:{run_dir}\", pretrained=True)\n"
            f"  checkpoint {run_dir / CHECKPOINT} (continue with --resume)\n"
            f"  metrics    {run_dir / METRICS_FILE}\n"
            f"  plots      {plots}")
