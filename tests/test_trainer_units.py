"""Small pure pieces of the trainer: metrics, the schedule, weight loading, the predicted chain,
configuration checks."""
from __future__ import annotations

import pytest
import torch

from tests.trainer_fixtures import fixture_tree
from trainer.config import ConfigError, TrainConfig
from trainer.levels import LevelLayout
from trainer.metrics import EvalMetrics, binned_average_precision
from trainer.checkpoint import permute_optimizer_rows, permute_rows
from trainer.model import (create_model, load_matching_weights, parameter_groups,
                           permute_classifier)
from trainer.predict import semantic_chain
from trainer.schedule import one_cycle_factor


def test_binned_average_precision_is_exact_ap_of_the_bins():
    # ranking (bin: label): 3: +, 2: -, 1: +, 1: -, 0: +  -> precisions at the positives' bins
    positives = torch.tensor([1, 1, 0, 1])
    negatives = torch.tensor([0, 1, 1, 0])
    expected = (1 / 1 + 2 / 4 + 3 / 5) / 3
    assert binned_average_precision(positives, negatives).item() == pytest.approx(expected)
    assert binned_average_precision(torch.zeros(4), torch.ones(4)).isnan()


def test_eval_metrics_semantic_accuracy_by_hand():
    tree = fixture_tree()  # levels: 3 roots, 4, 4, 2, 2 classes
    layout = LevelLayout.from_tree(tree)
    swan, plant = tree.index_of("n01858441"), tree.index_of("n00017222")
    logits = torch.full((2, tree.num_classes), -5.0)
    for c in tree.chain(swan):  # sample 1: a perfect swan chain (5 levels right)
        logits[0, c] = 5.0
    logits[1, tree.index_of("n00015388")] = 5.0  # sample 2: says animal, is plant (1 level wrong)
    metrics = EvalMetrics(layout, "semantic", torch.device("cpu"))
    metrics.update(logits, torch.tensor([swan, plant]))
    metrics.reduce()
    result = metrics.compute()
    assert result["semantic_top1_per_level"] == [50.0, 100.0, 100.0, 100.0, 100.0]
    assert result["semantic_top1"] == pytest.approx(100 * 5 / 6, abs=1e-4)
    sizes = [3, 4, 4, 2, 2]
    weighted = (50 * 3 + 100 * (4 + 4 + 2 + 2)) / sum(sizes)
    assert result["semantic_top1_class_weighted"] == pytest.approx(weighted, abs=1e-4)
    assert result["top1"] == 0.0 and result["samples"] == 2


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


def test_init_weights_skip_the_mismatched_head():
    source = create_model("test_vit", 1000)
    model = create_model("test_vit", 15)
    skipped = load_matching_weights(model, source.state_dict())
    assert skipped == ["head.bias", "head.weight"]
    torch.testing.assert_close(model.patch_embed.proj.weight, source.patch_embed.proj.weight)
    no_decay, decay = parameter_groups(model, 1e-4)
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 1e-4
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    with pytest.raises(ConfigError, match="unknown timm model"):
        create_model("no_such_net", 15)


def test_level_ordered_head_and_its_class_order_state():
    """A semantic run's head: outputs permuted to ``head_order``; ``permute_rows`` with
    ``head_inverse`` gives back a class-order timm state dict, and optimizer moments follow."""
    layout = LevelLayout.from_tree(fixture_tree())
    rows, back = layout.head_order, layout.head_inverse
    assert sorted(rows.tolist()) == list(range(layout.num_classes))
    assert torch.equal(rows[: layout.offsets[-1]], layout.order)
    assert torch.equal(rows[back], torch.arange(layout.num_classes))
    torch.manual_seed(0)
    model = create_model("test_vit", layout.num_classes).eval()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)
        keys = permute_classifier(model, rows)
        assert keys == ["head.weight", "head.bias"]
        torch.testing.assert_close(model(images), expected[:, rows])
        torch.testing.assert_close(layout.class_ordered(model(images)), expected)
    restored = permute_rows(model.state_dict(), keys, back)
    assert all(torch.equal(restored[k], v) for k, v in original.items())
    fresh = create_model("test_vit", layout.num_classes)
    fresh.load_state_dict(restored)  # plain timm model in class order

    optimizer = torch.optim.AdamW(model.parameters())
    model(images).sum().backward()
    optimizer.step()
    ids = [i for i, (name, _) in enumerate(model.named_parameters()) if name in keys]
    state = optimizer.state_dict()
    round_trip = permute_optimizer_rows(permute_optimizer_rows(state, ids, back), ids, rows)
    for i, moments in state["state"].items():
        for name, value in moments.items():
            assert torch.equal(round_trip["state"][i][name], value)
    with pytest.raises(ConfigError, match="no classifier"):
        permute_classifier(create_model("test_vit", 0), rows)


def test_tree_strategy_follows_descendants():
    tree = fixture_tree()
    layout = LevelLayout.from_tree(tree)
    probs = torch.full((tree.num_classes,), 0.1)
    probs[tree.index_of("n00017222")] = 0.9  # plant wins the root level
    probs[tree.index_of("n01471682")] = 0.95  # vertebrate (an animal) wins level 1 overall
    probs[tree.index_of("n13104059")] = 0.6  # tree: plant's best child
    chain = semantic_chain(probs, layout, "tree", min_prob=0.5)
    assert [tree.name(c) for c, _ in chain] == ["plant", "tree"]
    argmax = semantic_chain(probs, layout, "argmax", min_prob=0.5)
    assert [tree.name(c) for c, _ in argmax] == ["plant", "vertebrate"]


@pytest.mark.parametrize("bad, message", [
    ({"teacher": "test_vit"}, "--teacher and --teacher-checkpoint go together"),
    ({"teacher": "x", "teacher_checkpoint": "y", "scheme": "single"}, "needs --scheme semantic"),
    ({"batch_size": 0}, "--batch-size must be >= 1"),
])
def test_config_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(data="d", output="o", **bad)
