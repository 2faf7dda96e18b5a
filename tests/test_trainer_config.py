"""trainer.config: settings refused with the reason."""
from __future__ import annotations

import pytest

from trainer.config import ConfigError, TrainConfig


@pytest.mark.parametrize("bad, message", [
    ({"teacher": "test_vit"}, "--teacher and --teacher-checkpoint go together"),
    ({"teacher": "x", "teacher_checkpoint": "y", "scheme": "single"}, "needs --scheme semantic"),
    ({"batch_size": 0}, "--batch-size must be >= 1"),
])
def test_config_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(data="d", output="o", **bad)
