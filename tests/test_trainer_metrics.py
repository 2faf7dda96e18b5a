"""trainer.metrics: binned AP and the semantic accuracies, by hand; the epoch's running sums."""
from __future__ import annotations

import pytest
import torch

from tests.trainer_fixtures import fixture_tree
from trainer.levels import LevelLayout
from trainer.metrics import EvalMetrics, RunningSums, binned_average_precision


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


def test_running_sums_average_losses_over_micro_batches():
    sums = RunningSums(num_levels=2, device=torch.device("cpu"))
    assert sums.mean_loss() == 0.0
    sums.add(torch.tensor(3.0), torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.0]))
    sums.add(torch.tensor(1.0), torch.tensor([3.0, 4.0]))
    assert sums.mean_loss() == 2.0
    assert sums.reduced() == {"loss": 2.0, "level_loss": [2.0, 3.0], "teacher_confidence": [0.25, 0.5]}
