"""The one-cycle learning-rate schedule (paper B.1; released code: OneCycleLR, pct_start 0.1,
div_factor 20, no momentum cycling) as a pure function of the step.

torch's ``OneCycleLR`` divides by zero when ``pct_start * total_steps <= 1`` (short runs);
this is the same curve - cosine warm-up from ``lr / div_factor`` to ``lr`` over the first
``pct_start`` of the steps, cosine decay to ``lr / (div_factor * final_div_factor)`` - defined
for every length, wrapped in a ``LambdaLR`` so its state is just the step count.
"""
from __future__ import annotations

import math

import torch


def _cosine(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2.0 * (1.0 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))


def one_cycle_factor(step: int, total_steps: int, pct_start: float, div_factor: float,
                     final_div_factor: float) -> float:
    """Learning rate at ``step`` (0-based) as a fraction of the peak learning rate."""
    initial, final = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)
    peak_step = pct_start * total_steps - 1.0  # where torch's OneCycleLR reaches the peak
    if peak_step > 0 and step <= peak_step:
        return _cosine(initial, 1.0, step / peak_step)
    decay_steps = (total_steps - 1.0) - max(peak_step, 0.0)
    return _cosine(1.0, final, (step - max(peak_step, 0.0)) / decay_steps if decay_steps > 0 else 1.0)


def one_cycle_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, pct_start: float,
                        div_factor: float, final_div_factor: float):
    """A ``LambdaLR`` following :func:`one_cycle_factor` (peak = the optimizer's lr)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: one_cycle_factor(step, total_steps, pct_start, div_factor,
                                                 final_div_factor))
