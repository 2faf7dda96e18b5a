"""trainer.checkpoint: the run directory's claim, save/resume of a run (one process), the
class-order view of a level-ordered head."""
from __future__ import annotations

from dataclasses import asdict, replace

import pytest
import torch
from torch import nn

from trainer import checkpoint as ckpt
from trainer.config import ConfigError, TrainConfig
from trainer.distributed import DistContext

CPU = DistContext(0, 1, 0, torch.device("cpu"))


def test_claim_run_dir_keeps_refuses_or_deletes_a_previous_run(tmp_path):
    run = tmp_path / "run"
    ckpt.claim_run_dir(run, resume=False, overwrite=False, is_main=True)
    assert run.is_dir()
    for name in (ckpt.CHECKPOINT, ckpt.METRICS_FILE, "curves.png"):
        (run / name).write_bytes(b"old")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already holds a run .*checkpoint.pt.*--resume.*--overwrite"):
        ckpt.claim_run_dir(run, resume=False, overwrite=False, is_main=True)
    ckpt.claim_run_dir(run, resume=True, overwrite=False, is_main=True)
    assert (run / ckpt.CHECKPOINT).is_file()
    ckpt.claim_run_dir(run, resume=False, overwrite=True, is_main=True)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # only a run's own files go


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


def test_save_then_resume_restores_parts_rng_and_running_sums(tmp_path):
    config = TrainConfig(data="d", output=str(tmp_path))
    parts = _run(0)
    _step(parts)
    running = torch.tensor([3.5, 2.0], dtype=torch.float64)
    meta = {"config": asdict(config), "data_lanes": 4, "world_size": 1, "head_rows": ckpt.head_rows([], None),
            "epoch": 1, "step": 7, "global_step": 19, "history": [{"epoch": 1}]}
    ckpt.save_training(tmp_path, parts, meta, running, is_main=True)
    expected_draw = torch.rand(3)
    _step(parts)
    expected_after = {k: v.clone() for k, v in parts["model"].state_dict().items()}

    fresh, restored, log = _run(1), torch.zeros(2, dtype=torch.float64), []
    state = ckpt.resume_training(tmp_path, fresh, config, 4, CPU, restored, log.append)
    assert (state["epoch"], state["step"], state["global_step"], state["history"]) == (1, 7, 19, [{"epoch": 1}])
    assert torch.equal(restored, running)
    assert torch.equal(torch.rand(3), expected_draw)  # the RNG continues where it was saved
    _step(fresh)  # the same step from the restored optimizer and schedule
    for key, value in fresh["model"].state_dict().items():
        assert torch.equal(value, expected_after[key])
    assert log == ["resumed from epoch 2, step 7 (global step 19)"]


def test_resume_refuses_other_settings_and_starts_over_without_a_checkpoint(tmp_path):
    config = TrainConfig(data="d", output=str(tmp_path))
    log = []
    assert ckpt.resume_training(tmp_path, _run(0), config, 4, CPU, torch.zeros(2), log.append) is None
    assert "no checkpoint" in log[0]
    meta = {"config": asdict(config), "data_lanes": 4, "world_size": 1, "head_rows": ckpt.head_rows([], None),
            "epoch": 0, "step": 1, "global_step": 1, "history": []}
    ckpt.save_training(tmp_path, _run(0), meta, torch.zeros(2), is_main=True)
    with pytest.raises(ConfigError, match=r"settings differ from the checkpoint: lr, data_lanes \(4 -> 8; pass "
                                          r"--data-lanes 4"):
        ckpt.resume_training(tmp_path, _run(0), replace(config, lr=1.0), 8, CPU, torch.zeros(2), log.append)


def test_class_order_undoes_a_level_ordered_head():
    order = torch.tensor([2, 0, 1])  # row r holds class order[r]
    head = {"fc.weight": torch.tensor([[20.0], [0.0], [10.0]]), "fc.bias": torch.tensor([2.0, 0.0, 1.0]),
            "body.weight": torch.ones(1)}
    rows = ckpt.head_rows(["fc.weight", "fc.bias"], order)
    back = ckpt.class_order(head, rows)
    assert back["fc.weight"].flatten().tolist() == [0.0, 10.0, 20.0]
    assert back["fc.bias"].tolist() == [0.0, 1.0, 2.0]
    assert back["body.weight"] is head["body.weight"]
    assert ckpt.class_order(head, ckpt.head_rows([], order)) is head
