"""trainer.model: the teacher's weights (through trainer.trained_model) and the parameter groups."""
from __future__ import annotations

import pytest
import torch

from tests.trainer_fixtures import fixture_tree
from trainer.config import ConfigError, TrainConfig
from trainer.initial_weights import create_model
from trainer.levels import LevelLayout
from trainer.model import build_teacher, parameter_groups


def test_teacher_needs_every_tensor_and_keeps_its_head(tmp_path):
    layout = LevelLayout.from_tree(fixture_tree())
    trained = create_model("test_resnet", layout.num_classes)
    torch.save(trained.state_dict(), tmp_path / "teacher.pth")
    config = TrainConfig(data="d", output="o", model="test_resnet", teacher="test_resnet",
                         teacher_checkpoint=str(tmp_path / "teacher.pth"))
    teacher = build_teacher(config, layout, torch.device("cpu"), channels_last=False)
    assert torch.equal(teacher.fc.weight, trained.fc.weight[layout.head_order])  # level order
    assert not any(p.requires_grad for p in teacher.parameters())
    other = TrainConfig(data="d", output="o", teacher="resnet18", teacher_checkpoint=str(tmp_path / "teacher.pth"))
    with pytest.raises(ConfigError, match=r"^teacher: .* does not fit resnet18: .*its \d+-class head included"):
        build_teacher(other, layout, torch.device("cpu"), channels_last=False)


def test_parameter_groups_and_unknown_models():
    no_decay, decay = parameter_groups(create_model("test_vit", 15), 1e-4)
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 1e-4
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    with pytest.raises(ConfigError, match="unknown timm model"):
        create_model("no_such_net", 15)
