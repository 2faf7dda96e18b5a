"""The run's models and optimizer: the student, the frozen KD teacher, Adam or AdamW.

The student is timm's model with the run's initial weights (``trainer.initial_weights``); the
teacher is a trained model (``trainer.trained_model``). For the semantic scheme both keep their
classifier's rows in level order (``trainer.head_order``), so the loss reads their logits as
they come.
"""
from __future__ import annotations

import torch
from torch import nn

from trainer.config import ConfigError
from trainer.head_order import permute_classifier
from trainer.initial_weights import initial_model
from trainer.trained_model import UnfitWeights, load_trained_model


def build_model(config, layout, device: torch.device, channels_last: bool, distributed: bool,
                log=print) -> tuple[nn.Module, list[str]]:
    """The run's model on ``device``: timm's ``config.model`` sized to the tree with its initial
    weights (:func:`initial_model`); for the semantic scheme its head's rows in level order
    (returned: the tensors moved, for the checkpoint); SyncBatchNorm and channels-last on request."""
    model = initial_model(config, layout.num_classes, log)
    head_keys = permute_classifier(model, layout.head_order) if config.scheme == "semantic" else []
    if config.sync_bn and distributed:
        if device.type != "cuda":
            raise ConfigError("--sync-bn needs CUDA devices (SyncBatchNorm has no CPU kernel)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, head_keys


def build_teacher(config, layout, device: torch.device, channels_last: bool) -> nn.Module | None:
    """The frozen semantic-KD teacher (``--teacher`` from a run directory or a weights file,
    through timm's loader like initial weights, every tensor fitting), its head in level order
    like the student's; None without ``--teacher``."""
    if not config.teacher:
        return None
    try:
        teacher = load_trained_model(config.teacher_checkpoint, config.teacher, layout.num_classes,
                                     timm_loader=True).model
    except UnfitWeights as exc:
        raise ConfigError(f"teacher: {exc.detail} "
                          f"(a teacher needs all of them, its {exc.num_classes}-class head included)") from None
    permute_classifier(teacher, layout.head_order)  # KD needs --scheme semantic
    teacher = teacher.to(device).eval().requires_grad_(False)
    return teacher.to(memory_format=torch.channels_last) if channels_last else teacher


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups, as the released ``add_weight_decay``: weight decay on weights, none on
    biases and 1-d (norm) parameters."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0},
            {"params": decay, "weight_decay": weight_decay}]


def make_optimizer(model: nn.Module, config, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """The released recipe's optimizer over :func:`parameter_groups` at peak ``lr``:
    ``torch.optim.Adam`` whose groups carry the weight decay (an L2 term coupled into the
    gradient, as the released ``create_optimizer``), or AdamW (decoupled) with
    ``--optimizer adamw``; fused kernels with ``--fused-optimizer on``, or ``auto`` on CUDA."""
    opt_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    fused = config.fused_optimizer == "on" or (config.fused_optimizer == "auto" and device.type == "cuda")
    return opt_class(parameter_groups(model, config.weight_decay), lr=lr, **({"fused": True} if fused else {}))
