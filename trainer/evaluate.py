"""Validation of a model on the whole validation split: every sample once across all ranks."""
from __future__ import annotations

import torch
from tqdm import tqdm

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
