"""The classifier head's row order: level order while a semantic model trains, class order outside.

A semantic run stores its head's rows in ``LevelLayout.head_order`` (:func:`permute_classifier`),
so the model emits level-ordered logits and the semantic loss (and KD) read them without
reordering. The checkpoint keeps the model as it trains, with :func:`head_rows` beside it; the
export (and a prediction from a running checkpoint) turns the head back to class order (output
``c`` is class ``c``) with :func:`class_order`, so it loads into a plain timm model.
"""
from __future__ import annotations

import torch
from torch import nn

from trainer.config import ConfigError


def classifier_state_keys(model: nn.Module) -> list[str]:
    """State-dict names of the classifier's tensors (timm's ``get_classifier()`` modules)."""
    heads = model.get_classifier()
    heads = {id(h) for h in (heads if isinstance(heads, tuple) else (heads,))}
    return [f"{prefix}.{name}" if prefix else name
            for prefix, module in model.named_modules() if id(module) in heads
            for name in module.state_dict()]


def classifier_keys(model: nn.Module, num_classes: int) -> list[str]:
    """Names of the classifier head's parameters whose first axis is the class axis (timm's
    ``get_classifier()``: e.g. ``fc.weight``, ``fc.bias``)."""
    params = dict(model.named_parameters())
    keys = [k for k in classifier_state_keys(model)
            if k in params and params[k].ndim >= 1 and params[k].shape[0] == num_classes]
    if not keys:
        raise ConfigError(f"{type(model).__name__} has no classifier with {num_classes} output "
                          "rows to reorder")
    return keys


@torch.no_grad()
def permute_classifier(model: nn.Module, rows: torch.Tensor) -> list[str]:
    """Reorder the classifier head's output rows in place: output ``r`` becomes the former
    output ``rows[r]`` (same function, outputs permuted). Returns the parameter names touched."""
    keys = classifier_keys(model, len(rows))
    params = dict(model.named_parameters())
    for key in keys:
        param = params[key]
        param.copy_(param.index_select(0, rows.to(param.device)))
    return keys


def head_rows(keys: list[str], order: torch.Tensor) -> dict:
    """What a checkpoint records of a level-ordered head: its tensors' names and the class of each
    row (none for a head in class order)."""
    return {"keys": list(keys), "order": order.tolist() if keys else []}


def class_order(state: dict, rows: dict) -> dict:
    """A copy of the state dict ``state`` with the head described by ``rows`` (:func:`head_rows`)
    back in class order; the other tensors are shared."""
    if not rows["keys"]:
        return state
    back = torch.argsort(torch.tensor(rows["order"]))  # class c sits in row order.index(c)
    keys = set(rows["keys"])
    return {k: v.index_select(0, back.to(v.device)) if k in keys else v for k, v in state.items()}
