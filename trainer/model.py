"""timm models for the trainer: creation, local weight loading, optimizer parameter groups,
and the classifier head's row order.

Weights are never downloaded (``pretrained=False`` always); ImageNet-1K initialisation
(paper B.1) comes from a local file via ``--init-checkpoint``.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import timm
import torch
from torch import nn

from trainer.config import ConfigError


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=num_classes)`` with a clear error."""
    if not timm.is_model(name):
        raise ConfigError(f"unknown timm model {name!r} (see timm.list_models())")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict from a weights file: ``.safetensors``, or a torch file holding a bare
    state dict or one wrapped as ``model`` / ``state_dict`` / ``model_state_dict`` (timm and
    torchvision releases). Only tensors are unpickled (``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ConfigError(f"{path} is not a plain weights file (a training checkpoint? pass "
                          "its run directory instead)") from None
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_matching_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load every tensor of ``state`` whose name and shape match ``model`` (e.g. all but an
    ImageNet-1K classifier head); returns the names of the model's tensors left as initialised."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(k for k in own if k not in usable)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight decay on weights, none on biases and norm/1-d parameters."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0},
            {"params": decay, "weight_decay": weight_decay}]


def classifier_keys(model: nn.Module, num_classes: int) -> list[str]:
    """Names of the classifier head's parameters whose first axis is the class axis (timm's
    ``get_classifier()``: e.g. ``fc.weight``, ``fc.bias``)."""
    heads = model.get_classifier()
    heads = {id(h) for h in (heads if isinstance(heads, tuple) else (heads,))}
    keys = [f"{prefix}.{name}" if prefix else name
            for prefix, module in model.named_modules() if id(module) in heads
            for name, param in module.named_parameters()
            if param.ndim >= 1 and param.shape[0] == num_classes]
    if not keys:
        raise ConfigError(f"{type(model).__name__} has no classifier with {num_classes} output "
                          "rows to reorder")
    return keys


@torch.no_grad()
def permute_classifier(model: nn.Module, rows: torch.Tensor) -> list[str]:
    """Reorder the classifier head's output rows in place: output ``r`` becomes the former
    output ``rows[r]`` (same function, outputs permuted). Returns the parameter names touched.

    The trainer stores a semantic model's head in ``LevelLayout.head_order`` so its logits are
    already in level order; checkpoints and the export put the rows back in class order.
    """
    keys = classifier_keys(model, len(rows))
    params = dict(model.named_parameters())
    for key in keys:
        param = params[key]
        param.copy_(param.index_select(0, rows.to(param.device)))
    return keys


def build_model(config, layout, device: torch.device, channels_last: bool, distributed: bool,
                log=print) -> tuple[nn.Module, list[str]]:
    """The run's model on ``device``: timm's ``config.model`` sized to the tree, optionally
    started from ``--init-checkpoint``; for the semantic scheme its head's rows in level order
    (returned: the tensors moved, for the checkpoint); SyncBatchNorm and channels-last on request."""
    model = create_model(config.model, layout.num_classes)
    if config.init_checkpoint:
        skipped = load_matching_weights(model, read_state_dict(config.init_checkpoint))
        log(f"init weights from {config.init_checkpoint}; kept as initialised: {', '.join(skipped) or 'none'}")
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
    """The frozen semantic-KD teacher (``--teacher`` from a run directory or a weights file), its
    head in level order like the student's; None without ``--teacher``."""
    if not config.teacher:
        return None
    from trainer.checkpoint import read_export

    source = Path(config.teacher_checkpoint)
    weights = read_export(source)[1] if source.is_dir() else read_state_dict(source)
    teacher = create_model(config.teacher, layout.num_classes)
    try:
        teacher.load_state_dict({k.removeprefix("module."): v for k, v in weights.items()})
    except RuntimeError as exc:
        raise ConfigError(f"teacher weights {source} do not fit {config.teacher} with "
                          f"{layout.num_classes} classes: {str(exc).splitlines()[0]}") from None
    permute_classifier(teacher, layout.head_order)  # KD needs --scheme semantic
    teacher = teacher.to(device).eval().requires_grad_(False)
    return teacher.to(memory_format=torch.channels_last) if channels_last else teacher


def make_optimizer(model: nn.Module, config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (decoupled decay) or Adam over :func:`parameter_groups`; fused kernels with
    ``--fused-optimizer on``, or ``auto`` on CUDA."""
    opt_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    fused = config.fused_optimizer == "on" or (config.fused_optimizer == "auto" and device.type == "cuda")
    return opt_class(parameter_groups(model, config.weight_decay), lr=config.lr, **({"fused": True} if fused else {}))
