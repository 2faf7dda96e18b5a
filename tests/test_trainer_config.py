"""trainer.config: settings refused with the reason."""
from __future__ import annotations

import pytest

from trainer.config import ConfigError, TrainConfig


@pytest.mark.parametrize("bad, message", [
    ({"teacher": "test_vit"}, "--teacher and --teacher-checkpoint go together"),
    ({"teacher": "x", "teacher_checkpoint": "y", "scheme": "single"}, "needs --scheme semantic"),
    ({"batch_size": 0}, "--batch-size must be >= 1"),
    ({"lr": -1.0}, "--lr must be > 0"),
    ({"stop_after_steps": 0}, "--stop-after-steps must be >= 1"),
    ({"steps_per_epoch": 0}, "--steps-per-epoch must be >= 1"),
    ({"weight_decay": -1e-4}, "--weight-decay must be >= 0"),
    ({"pct_start": 0.0}, r"--pct-start 0.0 is outside \(0, 1\]"),
    ({"label_smoothing": 1.0}, r"--label-smoothing 1.0 is outside \[0, 1\)"),
    ({"cutout": 1.5}, r"--cutout 1.5 is outside \[0, 1\]"),
    ({"checkpoint_minutes": -1.0}, "--checkpoint-minutes must be >= 0"),
    ({"randaugment": "rand-x9"}, "--randaugment 'rand-x9' is not a timm RandAugment config"),
    ({"pretrained": True, "init_checkpoint": "w.pth"}, "give one"),
])
def test_config_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(data="d", output="o", **bad)
