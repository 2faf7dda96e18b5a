"""trainer.checkpoint: save/resume of a run (one process), the identity check, the checkpoint clock."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer import checkpoint as ckpt
from trainer.config import ConfigError
from trainer.distributed import DistContext
from trainer.head_order import head_rows

CPU = DistContext(0, 1, 0, torch.device("cpu"))


def _run(seed: int):
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}


def _step(parts) -> None:
    loss = parts["model"](torch.randn(8, 4)).square().mean()
    loss.backward()
    parts["optimizer"].step()
    parts["optimizer"].zero_grad()
    parts["scheduler"].step()


IDENTITY = {"model": "test_vit", "global_batch": 64, "peak_lr": 3e-4, "dataset": "abc"}


def _meta(**counters) -> dict:
    return {"config": {}, "identity": IDENTITY, "data_lanes": 4, "world_size": 1,
            "head_rows": head_rows([], None), "history": [], **counters}


def test_save_then_resume_restores_parts_rng_and_running_sums(tmp_path):
    parts = _run(0)
    _step(parts)
    running = torch.tensor([3.5, 2.0], dtype=torch.float64)
    ckpt.save_training(tmp_path, parts, {**_meta(epoch=1, step=7, global_step=19), "history": [{"epoch": 1}]},
                       running, is_main=True)
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.CHECKPOINT]  # no temp file left
    expected_draw = torch.rand(3)
    _step(parts)
    expected_after = {k: v.clone() for k, v in parts["model"].state_dict().items()}

    fresh, restored, log = _run(1), torch.zeros(2, dtype=torch.float64), []
    state = ckpt.resume_training(ckpt.load_checkpoint(tmp_path), fresh, IDENTITY, CPU, restored, log.append)
    assert (state["epoch"], state["step"], state["global_step"], state["history"]) == (1, 7, 19, [{"epoch": 1}])
    assert torch.equal(restored, running)
    assert torch.equal(torch.rand(3), expected_draw)  # the RNG continues where it was saved
    _step(fresh)  # the same step from the restored optimizer and schedule
    for key, value in fresh["model"].state_dict().items():
        assert torch.equal(value, expected_after[key])
    assert log == ["resumed from epoch 2, step 7 (global step 19)"]


def test_resume_refuses_another_identity_and_names_what_differs(tmp_path):
    assert ckpt.load_checkpoint(tmp_path) is None
    ckpt.save_training(tmp_path, _run(0), _meta(epoch=0, step=1, global_step=1), torch.zeros(2), is_main=True)
    other = {**IDENTITY, "peak_lr": 1e-3, "dataset": "def"}
    with pytest.raises(ConfigError, match=r"settings differ from the checkpoint: peak_lr \(0.0003 -> 0.001\), "
                                          r"dataset \('abc' -> 'def'\)"):
        ckpt.resume_training(ckpt.load_checkpoint(tmp_path), _run(0), other, CPU, torch.zeros(2), print)


def test_the_checkpoint_clock_counts_steps_and_minutes():
    by_steps = ckpt.CheckpointClock(minutes=0, steps=3, context=CPU)
    assert [s for s in range(1, 10) if by_steps.due(s)] == [3, 6, 9]
    never = ckpt.CheckpointClock(minutes=0, steps=0, context=CPU)
    assert not any(never.due(s) for s in range(1, 100))
    soon = ckpt.CheckpointClock(minutes=1e-9, steps=0, context=CPU)
    assert soon.due(1)  # its minutes have passed
    later = ckpt.CheckpointClock(minutes=60, steps=0, context=CPU)
    assert not later.due(1)
