"""trainer.trained_model: one loader of trained models from a run directory or a weights file,
strict (predict, evaluate) or through timm's loader (the KD teacher)."""
from __future__ import annotations

import pytest
import torch

from tests.trainer_fixtures import fixture_tree
from trainer.config import ConfigError
from trainer.export import EXPORT_TREE, export_model, write_model_card
from trainer.initial_weights import create_model
from trainer.trained_model import UnfitWeights, load_trained_model


@pytest.fixture()
def exported(tmp_path):
    """A run directory as a finished run leaves it (model card, tree, export) and its weights."""
    tree = fixture_tree()
    tree_file = tmp_path / "tree.json"
    tree.save(tree_file)
    run = tmp_path / "run"
    torch.manual_seed(0)
    state = create_model("test_resnet", tree.num_classes).state_dict()
    write_model_card(run, tree_file, {"model": "test_resnet", "num_classes": tree.num_classes, "input_size": 32})
    export_model(run, "test_resnet", state, tree, 32)
    return run, state, tree.num_classes


def test_a_run_directory_gives_its_model_card_and_tree(exported):
    run, state, num_classes = exported
    trained = load_trained_model(run)
    assert trained.card["model"] == "test_resnet" and trained.tree_file == run / EXPORT_TREE
    assert all(torch.equal(v, state[k]) for k, v in trained.model.state_dict().items())
    assert trained.model.fc.out_features == num_classes


def test_a_weights_file_needs_the_architecture_and_must_fit(exported, tmp_path):
    run, state, num_classes = exported
    torch.save(state, tmp_path / "w.pth")
    trained = load_trained_model(tmp_path / "w.pth", "test_resnet", num_classes)
    assert trained.card is None and trained.tree_file is None
    assert all(torch.equal(v, state[k]) for k, v in trained.model.state_dict().items())
    with pytest.raises(FileNotFoundError, match="is not a trainer run directory"):
        load_trained_model(tmp_path / "w.pth")
    with pytest.raises(ConfigError, match=f"^the weights of {tmp_path / 'w.pth'} do not fit test_vit with "
                                          f"{num_classes} classes: "):
        load_trained_model(tmp_path / "w.pth", "test_vit", num_classes)
    with pytest.raises(UnfitWeights, match=f"does not fit resnet18: .*its {num_classes}-class head included"):
        load_trained_model(run, "resnet18", num_classes, timm_loader=True)
