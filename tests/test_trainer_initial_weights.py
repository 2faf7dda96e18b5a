"""trainer.initial_weights: initial weights through timm's loader (real timm models and files):
every tensor but the classifier, the architecture's filter, refusal and --init-partial, sources
that are no weights."""
from __future__ import annotations

import argparse

import pytest
import timm
import torch
from safetensors.torch import save_file

from trainer.config import ConfigError, TrainConfig
from trainer.initial_weights import create_model, initial_model, read_weights


def init_config(model: str, source, partial: bool = False) -> TrainConfig:
    return TrainConfig(data="d", output="o", model=model, init_checkpoint=str(source), init_partial=partial)


def init(model: str, source, num_classes: int = 7, partial: bool = False) -> tuple[torch.nn.Module, list[str]]:
    """``initial_model`` and the lines it logged."""
    lines = []
    return initial_model(init_config(model, source, partial), num_classes, lines.append), lines


@pytest.fixture(scope="module")
def resnet18_files(tmp_path_factory):
    """A timm resnet18 (1000 classes) saved as timm users save one: a plain ``.pth`` state dict,
    ``.safetensors``, and timm's train.py checkpoint ``*.pth.tar`` (args, EMA weights beside)."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(1)
    source = timm.create_model("resnet18")
    state = source.state_dict()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, folder / "resnet18.pth")
    save_file(state, folder / "resnet18.safetensors")
    torch.save({"epoch": 3, "arch": "resnet18", "state_dict": state, "state_dict_ema": ema,
                "args": argparse.Namespace(model="resnet18")}, folder / "checkpoint-3.pth.tar")
    torch.save({"model": state, "epoch": 3}, folder / "torchvision_style.pth")
    return folder, state, ema


@pytest.mark.parametrize("name", ["resnet18.pth", "resnet18.safetensors", "checkpoint-3.pth.tar",
                                  "torchvision_style.pth"])
def test_init_loads_every_tensor_but_the_classifier(resnet18_files, name):
    folder, state, ema = resnet18_files
    model, lines = init("resnet18", folder / name)
    expected = ema if name.endswith(".pth.tar") else state  # timm prefers a checkpoint's EMA weights
    assert lines == [f"init: loaded 120 of 122 tensors from {folder / name} (skipped: fc.weight, fc.bias)"]
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in loaded if not k.startswith("fc."))
    assert model.fc.weight.shape == (7, 512)


def test_init_goes_through_the_architectures_filter(tmp_path):
    """A ViT trained at another image size: timm's checkpoint_filter_fn resamples its position
    embedding to the model's grid (a name/shape match would refuse it)."""
    source = timm.create_model("test_vit", img_size=128)  # 8 x 8 patches; the model has 10 x 10
    torch.save(source.state_dict(), tmp_path / "vit128.pth")
    model, lines = init("test_vit", tmp_path / "vit128.pth")
    assert lines == [f"init: loaded 78 of 80 tensors from {tmp_path / 'vit128.pth'} (skipped: head.weight, head.bias)"]
    resampled = timm.layers.resample_abs_pos_embed(source.pos_embed, new_size=[10, 10], num_prefix_tokens=1)
    torch.testing.assert_close(model.pos_embed, resampled)
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_weights_that_do_not_fit_are_refused_or_loaded_in_part(resnet18_files):
    path = resnet18_files[0] / "resnet18.pth"
    with pytest.raises(ConfigError) as refused:
        init("test_resnet", path)
    assert str(refused.value) == (
        f"{path} does not fit test_resnet: 75 of its 90 tensors besides the classifier are missing "
        "from the source or shaped otherwise (conv1.0.weight: missing, conv1.1.weight: missing, "
        "conv1.1.bias: missing, conv1.1.running_mean: missing, conv1.1.running_var: missing, and 70 "
        "more); --init-partial loads the 9 that fit and leaves the rest as initialised")
    torch.manual_seed(0)
    model, lines = init("test_resnet", path, partial=True)
    assert lines == [f"init: loaded 9 of 92 tensors from {path} (skipped: fc.weight, fc.bias; 75 left as "
                     "initialised; 6 BatchNorm counters not in the source; 64 source tensors unused)"]
    torch.manual_seed(0)
    fresh = create_model("test_resnet", 7)
    assert torch.equal(model.conv1[0].weight, fresh.conv1[0].weight)  # left as initialised
    with pytest.raises(ConfigError, match="no tensor fits, so --init-partial would load nothing"):
        init("test_vit", path, partial=True)  # ResNet weights into a ViT


def test_init_sources_that_are_no_weights(tmp_path):
    (tmp_path / "notes.txt").write_text("not weights")
    torch.save([1, 2], tmp_path / "list.pth")
    for name, message in [("missing.pth", "weights {} not found (a weights file or a trainer run directory)"),
                          ("notes.txt", "{} is not a weights file timm can read ("),
                          ("list.pth", "{} is not a weights file timm can read (")]:
        with pytest.raises(ConfigError) as error:
            read_weights(tmp_path / name)
        assert str(error.value).startswith(message.format(tmp_path / name))
    with pytest.raises(FileNotFoundError, match="is not a trainer run directory"):
        read_weights(tmp_path)
