"""How a batch meets the model on the device: mixed precision and memory format."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from trainer.config import ConfigError


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where the GPU supports it, else fp16; None (off) on CPU."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device")
    return torch.bfloat16 if mode == "bf16" else torch.float16


@dataclass(frozen=True)
class Precision:
    """The training step's input preparation and autocast, shared with validation."""

    device_type: str
    amp_dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def of(cls, config, device: torch.device) -> "Precision":
        """``--amp`` and ``--channels-last`` (``auto``: on for CUDA) on ``device``."""
        channels_last = (config.channels_last == "on"
                         or (config.channels_last == "auto" and device.type == "cuda"))
        return cls(device.type, resolve_amp(config.amp, device), channels_last)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` -> float in [0, 1] (paper B.1: no mean/std normalization)."""
        images = images.float().div_(255)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return images.contiguous(memory_format=fmt)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.amp_dtype)
