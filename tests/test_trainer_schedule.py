"""trainer.schedule: the one-cycle learning rate."""
from __future__ import annotations

import pytest
import torch

from trainer.schedule import one_cycle_factor


def test_one_cycle_matches_torch_and_handles_short_runs():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=3e-4)
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-4, total_steps=200,
                                                    pct_start=0.1, div_factor=20,
                                                    cycle_momentum=False)
    for step in range(200):
        ours = 3e-4 * one_cycle_factor(step, 200, 0.1, 20, 1e4)
        assert ours == pytest.approx(reference.get_last_lr()[0], rel=1e-9)
        optimizer.step()
        reference.step()
    assert [one_cycle_factor(s, 3, 0.1, 20, 1e4) for s in range(3)][0] == 1.0
