"""Validation of a model on the whole validation split: every sample once across all ranks
(:func:`evaluate`, training's validation), and ``python -m trainer evaluate`` (:func:`run_evaluate`),
the same for trained weights; with ``--imagenet1k-val`` (:func:`run_evaluate_imagenet1k`), top-1 /
top-5 on an ILSVRC2012-style validation folder among the model's ImageNet-1K classes."""
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
    tree; ``--data``, optional with ``--imagenet1k-val``, must have the same classes) or a weights
    file with ``--model`` / ``--scheme`` (the dataset's tree); the model
    (:func:`~trainer.trained_model.load_trained_model`) on the CPU, head in class order."""
    from hierarchy import SemanticTree
    from trainer.data import load_tree
    from trainer.trained_model import load_trained_model

    if not (args.data or getattr(args, "imagenet1k_val", None)):
        raise ConfigError("--data is needed: the dataset whose validation split is evaluated "
                          "(or --imagenet1k-val VAL_DIR)")
    tree = load_tree(args.data) if args.data else None
    if args.run:
        trained = load_trained_model(args.run)
        run_tree = SemanticTree.load(trained.tree_file)
        if tree is not None and list(run_tree.class_list) != list(tree.class_list):
            raise ConfigError(f"{args.data} holds other classes than the run {args.run} was trained on "
                              f"({tree.num_classes} vs {run_tree.num_classes} in its {Path(trained.tree_file).name})")
        return trained.card, trained.model, run_tree
    if not (args.model and args.output):
        raise ConfigError("--weights needs --model (its timm name) and --output (where the results go)")
    if tree is None:
        raise ConfigError("--weights needs --data: the dataset whose classes (semantic_tree.json) the weights have")
    card = {"model": args.model, "scheme": args.scheme, "input_size": args.input_size or 224}
    return card, load_trained_model(args.weights, args.model, tree.num_classes).model, tree


def output_folder(args) -> Path:
    """``--output``, or ``RUN/eval-<dataset folder name>`` (``RUN/eval-imagenet1k-<VAL_DIR name>`` with
    ``--imagenet1k-val``); never a training run's own folder (its ``accuracy_per_level.png`` is the
    training's)."""
    from trainer.report import METRICS_FILE

    if getattr(args, "imagenet1k_val", None):
        default = f"eval-imagenet1k-{Path(args.imagenet1k_val).resolve().name}"
    else:
        default = f"eval-{Path(args.data).resolve().name}"
    folder = Path(args.output) if args.output else Path(args.run) / default
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

    if getattr(args, "imagenet1k_val", None):
        return run_evaluate_imagenet1k(args)
    if getattr(args, "class_list", None):
        raise ConfigError("--class-list goes with --imagenet1k-val")
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


# ------------------------------------------- python -m trainer evaluate --imagenet1k-val VAL_DIR
IMAGENET1K_FILE = "eval_imagenet1k.json"


def class_folders(val_dir: Path) -> tuple[dict[str, list[Path]], dict[str, int]]:
    """``({wnid: its image files}, {other folder or loose file name: images})`` of an ILSVRC2012-style
    validation folder (``VAL_DIR/nXXXXXXXX/*.JPEG``; a class folder's images are found recursively,
    hidden files skipped, sorted by name)."""
    from PIL import Image

    from hierarchy.imagenet1k import WNID

    extensions = {ext.lower() for ext in Image.registered_extensions()}

    def images_in(folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions
                      and not p.name.startswith("."))

    classes, others = {}, {}
    for entry in sorted(val_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found = images_in(entry)
            if WNID.fullmatch(entry.name):
                classes[entry.name] = found
            elif found:
                others[entry.name] = len(found)
        elif entry.is_file() and entry.suffix.lower() in extensions:
            others["(images directly in the folder)"] = others.get("(images directly in the folder)", 0) + 1
    return classes, others


class FolderImages(torch.utils.data.Dataset):
    """``(uint8 [3, S, S], readable)`` per file: the pixels training saw for such a file - the
    pipeline's squish-resize to the dataset's stored JPEG (``stored_size``² at ``quality``), then the
    trainer's decode to the input size (as :func:`trainer.predict.load_image`); an unreadable file
    gives zeros and ``False``."""

    def __init__(self, files: list[Path], input_size: int, stored_size: int, quality: int):
        self.files, self.input_size, self.stored_size, self.quality = files, input_size, stored_size, quality

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from pipeline.images import BadImage, squish_resize
        from trainer.transforms import ImageDecodeError, decode_rgb

        try:
            jpeg = squish_resize(self.files[i].read_bytes(), self.stored_size, self.quality)
            array = decode_rgb(jpeg, self.input_size)
        except (OSError, BadImage, ImageDecodeError):
            return torch.zeros(3, self.input_size, self.input_size, dtype=torch.uint8), False
        return torch.from_numpy(array.copy()).permute(2, 0, 1), True


def imagenet1k_result(args, card: dict, model, tree, class_list: list[str]) -> dict:
    """Top-1 / top-5 of ``model`` on the class folders of ``args.imagenet1k_val`` whose wnid is one
    of its classes and in ``class_list``: the logits restricted to the head's rows of those classes
    (the prediction is one of them), and the counts of what was not scored."""
    from trainer.distributed import resolve_device

    val_dir = Path(args.imagenet1k_val)
    if not val_dir.is_dir():
        raise ConfigError(f"--imagenet1k-val {val_dir}: no such folder")
    classes, others = class_folders(val_dir)
    if not classes:
        raise ConfigError(f"--imagenet1k-val {val_dir} holds no class folders named by wnid (nXXXXXXXX/*.JPEG); "
                          "arrange the ILSVRC2012 validation images in one folder per class first")
    listed, has = set(class_list), set(tree.class_list)
    rows = [tree.index_of(w) for w in class_list if w in has]  # the model's rows, in the list's order
    column = {tree.class_list[r]: k for k, r in enumerate(rows)}
    scored = {w: files for w, files in classes.items() if w in column}
    lacking = {w: len(files) for w, files in classes.items() if w not in has}
    unlisted = {w: len(files) for w, files in classes.items() if w in has and w not in listed}
    files = [f for w in sorted(scored) for f in scored[w]]
    labels = torch.tensor([column[w] for w in sorted(scored) for _ in scored[w]], dtype=torch.int64)

    input_size = int(args.input_size or card["input_size"])
    device = resolve_device(args.device, 0)
    precision = Precision.of(args, device)
    model = model.to(device, memory_format=torch.channels_last if precision.channels_last else torch.preserve_format)
    model.eval()
    images = FolderImages(files, input_size, int(card.get("image_size", 224)), int(card.get("jpeg_quality", 95)))
    loader = torch.utils.data.DataLoader(images, batch_size=args.batch_size, num_workers=args.workers,
                                         pin_memory=device.type == "cuda")
    index = torch.tensor(rows, dtype=torch.int64, device=device)
    top1 = top5 = done = 0
    unreadable = []
    with torch.no_grad():
        for batch, readable in tqdm(loader, desc="imagenet-1k val", leave=False, disable=not args.progress):
            batch_labels = labels[done:done + len(readable)]
            unreadable += [str(files[done + i]) for i in torch.nonzero(~readable).flatten().tolist()]
            done += len(readable)
            if not readable.any() or not rows:
                continue
            batch = precision.prepare(batch[readable].to(device, non_blocking=True))
            with precision.autocast():
                logits = model(batch)
            top = logits.float().index_select(1, index).topk(min(5, len(rows)), dim=1).indices.cpu()
            hits = top == batch_labels[readable].unsqueeze(1)
            top1 += int(hits[:, 0].sum())
            top5 += int(hits.any(dim=1).sum())
    n = len(files) - len(unreadable)

    def pct(correct):
        return round(100.0 * correct / n, 4) if n else None

    return {
        "classes": {"listed": len(class_list), "in_model": len(rows)},
        "scored": {"images": n, "folders": len(scored), "top1": pct(top1), "top5": pct(top5),
                   "top1_correct": top1, "top5_correct": top5},
        "not_scored": {
            "not_in_model": {"images": sum(lacking.values()), "folders": sorted(lacking)},
            "not_in_class_list": {"images": sum(unlisted.values()), "folders": sorted(unlisted)},
            "unknown_folders": {"images": sum(others.values()), "folders": sorted(others)},
            "unreadable": {"images": len(unreadable), "files": unreadable},
        },
    }


def imagenet1k_lines(result: dict, what: str) -> list[str]:
    """The printed result of an ImageNet-1K evaluation."""
    def pct(value):
        return "n/a" if value is None else f"{value:.2f}%"

    def count(n, noun):
        return f"{n} {noun}" if n == 1 else f"{n} {noun}es" if noun.endswith("s") else f"{n} {noun}s"

    classes, scored, skipped = result["classes"], result["scored"], result["not_scored"]
    lines = [f"the model has {classes['in_model']} of the {classes['listed']:,} {what} classes "
             "(top-1/top-5 among those rows of its head)",
             f"{count(scored['images'], 'image')} of {count(scored['folders'], 'class')} scored: "
             f"top-1 {pct(scored['top1'])}, top-5 {pct(scored['top5'])}"]
    parts = [f"{count(skipped[key]['images'], 'image')} in {count(len(skipped[key]['folders']), 'folder')} {why}"
             for key, why in (("not_in_model", "of classes the model lacks"),
                              ("unknown_folders", "not named nXXXXXXXX"),
                              ("not_in_class_list", "of model classes outside the list"))
             if skipped[key]["images"]]
    parts += [f"{skipped['unreadable']['images']} unreadable"] if skipped["unreadable"]["images"] else []
    return lines + [f"not scored: {', '.join(parts)}"] if parts else lines


def run_evaluate_imagenet1k(args) -> int:
    """``python -m trainer evaluate --imagenet1k-val VAL_DIR``: score the model on an ILSVRC2012-style
    validation folder (:func:`imagenet1k_result`), print the result and write ``eval_imagenet1k.json``."""
    from hierarchy.atomic import atomic_write_text
    from hierarchy.imagenet1k import SYNSETS_FILE, imagenet1k_wnids, read_wnid_list

    card, model, tree = evaluated_model(args)
    if args.class_list:
        try:
            class_list = read_wnid_list(args.class_list)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"--class-list {args.class_list}: {exc}") from None
        what = Path(args.class_list).name
    else:
        class_list, what = list(imagenet1k_wnids()), "ImageNet-1K"
    folder = output_folder(args)
    source = args.run or args.weights
    result = {"run" if args.run else "weights": str(source), "imagenet1k_val": str(args.imagenet1k_val),
              "class_list": str(args.class_list) if args.class_list else f"timm {SYNSETS_FILE}",
              "model": card["model"], "scheme": card.get("scheme", "semantic"),
              "input_size": int(args.input_size or card["input_size"]),
              **imagenet1k_result(args, card, model, tree, class_list)}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / IMAGENET1K_FILE, json.dumps(result, indent=2, sort_keys=True) + "\n")
    print("\n".join([f"{source} on {args.imagenet1k_val}:", *imagenet1k_lines(result, what),
                     f"wrote {folder / IMAGENET1K_FILE}"]))
    return 0
