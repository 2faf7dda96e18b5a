"""trainer.precision: the autocast dtype per device and the step's input preparation."""
from __future__ import annotations

import pytest
import torch

from trainer.config import ConfigError, TrainConfig
from trainer.precision import Precision, resolve_amp

CPU = torch.device("cpu")


def test_amp_modes_on_the_cpu():
    assert resolve_amp("auto", CPU) is None and resolve_amp("off", CPU) is None
    assert resolve_amp("bf16", CPU) is torch.bfloat16
    with pytest.raises(ConfigError, match="--amp fp16 needs a CUDA device"):
        resolve_amp("fp16", CPU)


def test_prepare_scales_to_unit_range_in_the_chosen_memory_format():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).repeat(2, 3, 1, 1)  # [2, 3, 1, 3]
    plain = Precision.of(TrainConfig(data="d", output="o"), CPU)
    assert (plain.amp_dtype, plain.channels_last) == (None, False)  # auto: off on the CPU
    prepared = plain.prepare(images)
    assert prepared.dtype == torch.float32 and prepared[0, 0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])
    last = Precision.of(TrainConfig(data="d", output="o", channels_last="on", amp="bf16"), CPU)
    assert last.prepare(images).is_contiguous(memory_format=torch.channels_last)
    with last.autocast():
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with plain.autocast():
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
