"""Validation of a model on the whole validation split: every sample once across all ranks
(:func:`evaluate`, training's validation), and ``python -m trainer evaluate`` (:func:`run_evaluate`),
the same for trained weights."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm import tqdm

from trainer.config import ConfigError
from trainer.data import EvalBatches, Split, make_loader
from trainer.levels import LevelLayout
from trainer.metrics import EvalMetrics
from trainer.precision import Precision
from trainer.transforms import SampleTransform


@torch.no_grad()
def evaluate(model, val_split: Split, layout: LevelLayout, config, context, precision: Precision,
             level_head: bool) -> dict:
    """The metrics of ``model`` (all-reduced over ranks), its inputs prepared and autocast as the
    training step's (``precision``); a ``level_head``'s logits are put back in class order
    first."""
    device = context.device
    model.eval()
    metrics = EvalMetrics(layout, config.scheme, device)
    on_device = layout.to(device)
    batches = EvalBatches(val_split, context.rank, context.world_size, config.val_batch_size or config.batch_size,
                          SampleTransform(config.input_size), layout.num_classes)
    loader = make_loader(batches, config.workers, pin_memory=device.type == "cuda")
    for images, labels in tqdm(loader, desc="validation", leave=False, disable=not (context.is_main and config.progress)):
        images = precision.prepare(images.to(device, non_blocking=True))
        with precision.autocast():
            logits = model(images)
        if level_head:
            logits = on_device.class_ordered(logits)
        metrics.update(logits, labels.to(device, non_blocking=True))
    metrics.reduce()
    model.train()
    return metrics.compute()


# ------------------------------------------------------------------ python -m trainer evaluate
EVAL_FILE = "eval.json"


def evaluated_model(args) -> tuple[dict, torch.nn.Module, object]:
    """``(card, model, tree)`` of what ``evaluate`` was given: a run directory (its model card and
    tree) or a weights file with ``--model`` / ``--scheme`` (the dataset's tree); the model
    (:func:`~trainer.trained_model.load_trained_model`) on the CPU, head in class order."""
    from hierarchy import SemanticTree
    from trainer.data import load_tree
    from trainer.trained_model import load_trained_model

    tree = load_tree(args.data)
    if args.run:
        trained = load_trained_model(args.run)
        run_tree = SemanticTree.load(trained.tree_file)
        if list(run_tree.class_list) != list(tree.class_list):
            raise ConfigError(f"{args.data} holds other classes than the run {args.run} was trained on "
                              f"({tree.num_classes} vs {run_tree.num_classes} in its {Path(trained.tree_file).name})")
        return trained.card, trained.model, run_tree
    if not (args.model and args.output):
        raise ConfigError("--weights needs --model (its timm name) and --output (where the results go)")
    card = {"model": args.model, "scheme": args.scheme, "input_size": args.input_size or 224}
    return card, load_trained_model(args.weights, args.model, tree.num_classes).model, tree


def output_folder(args) -> Path:
    """``--output``, or ``RUN/eval-<dataset folder name>``; never a training run's own folder
    (its ``accuracy_per_level.png`` is the training's)."""
    from trainer.report import METRICS_FILE

    folder = Path(args.output) if args.output else Path(args.run) / f"eval-{Path(args.data).resolve().name}"
    if (folder / METRICS_FILE).exists():
        raise ConfigError(f"--output {folder} holds a training run ({METRICS_FILE}): its plots are the "
                          "training's; choose another folder")
    return folder


def metrics_lines(val: dict, depths) -> list[str]:
    """The printed result: per-level semantic top-1 and the totals, as percentages."""
    def pct(value):
        return "n/a" if value is None else f"{value:.2f}%"

    levels = ", ".join(f"level {d}: {pct(v)}" for d, v in zip(depths, val["semantic_top1_per_level"]))
    return [f"{val['samples']} validation samples",
            f"semantic top-1 per level: {levels}",
            f"semantic top-1 {pct(val['semantic_top1'])} (class-weighted "
            f"{pct(val['semantic_top1_class_weighted'])}), top-1 {pct(val['top1'])}, top-5 {pct(val['top5'])}, "
            f"mAP macro {pct(val['map_macro'])}, micro {pct(val['map_micro'])}"]


def run_evaluate(args) -> int:
    """``python -m trainer evaluate``: validate trained weights on ``--data``'s validation split
    with training's own code (:func:`evaluate`, one process), print the metrics and write
    ``eval.json`` and ``accuracy_per_level.png`` into the output folder."""
    from hierarchy.atomic import atomic_write_text
    from trainer.config import TrainConfig
    from trainer.data import read_split
    from trainer.distributed import DistContext, resolve_device
    from trainer.head_order import permute_classifier
    from trainer.plots import write_accuracy_per_level

    card, model, tree = evaluated_model(args)
    folder = output_folder(args)
    source = args.run or args.weights
    config = TrainConfig(data=args.data, output=str(folder), model=card["model"],
                         scheme=card.get("scheme", "semantic"), input_size=args.input_size or card["input_size"],
                         batch_size=args.batch_size, workers=args.workers, device=args.device, amp=args.amp,
                         channels_last=args.channels_last, progress=args.progress)
    val_split = read_split(args.data, "validation")
    layout = LevelLayout.from_tree(tree)
    if config.scheme == "semantic":  # the head in level order, as training validates it
        permute_classifier(model, layout.head_order)
    device = resolve_device(args.device, 0)
    precision = Precision.of(config, device)
    model = model.to(device, memory_format=torch.channels_last if precision.channels_last else torch.preserve_format)
    val = evaluate(model, val_split, layout, config, DistContext(0, 1, 0, device), precision,
                   level_head=config.scheme == "semantic")
    folder.mkdir(parents=True, exist_ok=True)
    result = {"run" if args.run else "weights": str(source), "data": str(args.data), "model": config.model,
              "scheme": config.scheme, "input_size": config.input_size, "val": val}
    atomic_write_text(folder / EVAL_FILE, json.dumps(result, indent=2, sort_keys=True) + "\n")
    plot = write_accuracy_per_level(val, tree, folder, Path(source).name)
    print("\n".join([f"{source} on {args.data}:", *metrics_lines(val, tree.softmax_levels),
                     f"wrote {folder / EVAL_FILE} and {plot}"]))
    return 0
