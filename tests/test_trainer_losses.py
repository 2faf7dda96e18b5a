"""Losses of the trainer: semantic softmax (hand-computed and vs the released formula), the
single- and multi-label schemes, and semantic KD with appendix F's teacher confidence."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hierarchy import SemanticTree
from tests.trainer_fixtures import fixture_tree
from trainer.levels import LevelLayout
from trainer.losses import (AsymmetricMultiLabelLoss, SemanticKDLoss, SemanticSoftmaxLoss,
                            SingleLabelLoss, _level_exps, teacher_confidence)


def tiny_tree() -> SemanticTree:
    """Roots A, B; a1, a2 under A. Levels [[A, B], [a1, a2]], weights [1, 4/2 = 2]."""
    names = {"n00000001": "A", "n00000002": "B", "n00000003": "a1", "n00000004": "a2"}
    parents = {"n00000001": None, "n00000002": None, "n00000003": "n00000001",
               "n00000004": "n00000001"}
    return SemanticTree.from_parents(list(names), parents, names=names)


def dropped_level_tree() -> SemanticTree:
    """Depth 1 holds one class (no softmax): class 2 sits in no softmax level."""
    parents = {"n00000001": None, "n00000002": None, "n00000003": "n00000001",
               "n00000004": "n00000003", "n00000005": "n00000003"}
    return SemanticTree.from_parents(list(parents), parents)


def released_semantic_loss(tree, logits, labels, label_smooth=0.2):
    """The released SemanticSoftmaxLoss.forward, transcribed (per-level one-hot products)."""
    targets = torch.as_tensor(tree.target_table)[labels]
    total = 0
    for i, level in enumerate(tree.levels):
        logits_i = logits[:, level]
        log_preds = F.log_softmax(logits_i, dim=1)
        targets_i = targets[:, i]
        valid = targets_i.clone()
        valid[valid < 0] = 0
        classes = torch.zeros_like(logits_i).scatter_(1, valid.unsqueeze(1), 1)
        classes = classes * (1 - label_smooth) + label_smooth / logits_i.shape[1]
        ce = -classes * log_preds * (targets_i >= 0).unsqueeze(1)
        total = total + ce.sum(-1).mean() * tree.normalization_factors[i]
    return total


def ours_and_released(tree, logits, labels):
    """``SemanticSoftmaxLoss`` on ``logits`` and the released formula on them in float64, both
    backpropagated: ``(value, expected, our gradient, the released gradient)``."""
    ours = logits.clone().requires_grad_()
    reference = logits.double().clone().requires_grad_()
    value = SemanticSoftmaxLoss(tree)(ours, labels)
    expected = released_semantic_loss(tree, reference, labels)
    value.backward()
    expected.backward()
    return value.item(), expected.item(), ours.grad, reference.grad


def test_semantic_loss_matches_hand_computed_value():
    tree = tiny_tree()  # classes: 0=A, 1=B, 2=a1, 3=a2
    logits = torch.tensor([[math.log(3.0), 0.0, 0.0, 0.0],   # label a1: P(A)=.75, P(a1)=.5
                           [0.0, 0.0, 5.0, -5.0]])            # label B: level 1 masked
    labels = torch.tensor([2, 1])
    # smoothed targets with ls=0.2 over 2 classes: 0.9 / 0.1
    level0 = (-(0.9 * math.log(0.75) + 0.1 * math.log(0.25)) + math.log(2)) / 2
    level1 = math.log(2) / 2  # sample 2 has no level-1 label, but the mean is over both
    loss = SemanticSoftmaxLoss(tree, label_smoothing=0.2)
    assert loss(logits, labels).item() == pytest.approx(1.0 * level0 + 2.0 * level1, rel=1e-6)
    assert loss.last_level_losses.tolist() == pytest.approx([level0, level1], rel=1e-6)


def test_semantic_loss_and_gradient_match_released_code():
    tree = fixture_tree()
    torch.manual_seed(0)
    logits = torch.randn(64, tree.num_classes, dtype=torch.float64) * 3
    labels = torch.randint(0, tree.num_classes, (64,))
    value, expected, grad, expected_grad = ours_and_released(tree, logits, labels)
    assert value == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("offset", [0.0, 200.0, -120.0, "one level far below"])
def test_semantic_loss_float32_at_any_logit_range(offset):
    """Float32 logits: unshifted exps where the sums allow it, each level shifted by its max
    where ``exp`` would overflow (+200) or a level's sum underflow (-120) - the released formula
    (log_softmax) either way."""
    tree = fixture_tree()
    torch.manual_seed(3)
    logits = torch.randn(32, tree.num_classes) * 3
    if offset == "one level far below":
        logits[:, tree.levels[1]] -= 150.0
    else:
        logits += offset
    labels = torch.randint(0, tree.num_classes, (32,))
    value, expected, grad, expected_grad = ours_and_released(tree, logits, labels)
    assert value == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(grad, expected_grad.float(), rtol=1e-4, atol=1e-7)
    layout = LevelLayout.from_tree(tree)
    head = logits[:, layout.head_order][:, :layout.offsets[-1]]
    exps = _level_exps(head, tuple(layout.level_sizes))[0]
    assert torch.allclose(exps, torch.exp(head), rtol=1e-5) == (offset == 0.0)  # the path taken


def test_semantic_loss_gradcheck_and_dropped_level():
    tree = dropped_level_tree()
    loss = SemanticSoftmaxLoss(tree)
    logits = torch.randn(6, tree.num_classes, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 4])
    assert torch.autograd.gradcheck(lambda x: loss(x, labels), (logits,))
    loss(logits, labels).backward()
    assert torch.all(logits.grad[:, 2] == 0)  # the one-class level has no softmax


@pytest.mark.parametrize("make_tree", [fixture_tree, dropped_level_tree])
def test_semantic_loss_on_level_ordered_head_equals_class_order(make_tree):
    """``logits_order="level"`` (the trainer's path) = class order on permuted columns, gradient
    included; columns of classes in no softmax level get a zero gradient."""
    tree = make_tree()
    layout = LevelLayout.from_tree(tree)
    torch.manual_seed(1)
    logits = torch.randn(16, tree.num_classes, dtype=torch.float64, requires_grad=True) * 3
    logits.retain_grad()
    labels = torch.randint(0, tree.num_classes, (16,))
    head = logits.detach()[:, layout.head_order].requires_grad_()
    value = SemanticSoftmaxLoss(tree)(logits, labels)
    level_value = SemanticSoftmaxLoss(tree, logits_order="level")(head, labels)
    value.backward()
    level_value.backward()
    assert level_value.item() == pytest.approx(value.item(), rel=1e-12)
    torch.testing.assert_close(head.grad, logits.grad[:, layout.head_order], rtol=1e-12,
                               atol=1e-14)
    assert torch.all(head.grad[:, layout.offsets[-1]:] == 0)
    assert torch.autograd.gradcheck(
        lambda x: SemanticSoftmaxLoss(tree, logits_order="level")(x, labels[:4]),
        (head.detach()[:4].clone().requires_grad_(),))
    with pytest.raises(ValueError, match="logits_order"):
        SemanticSoftmaxLoss(tree, logits_order="row")


def test_semantic_loss_backward_twice_through_a_retained_graph():
    """The backward turns the forward's buffer of exps into the gradient; a second backward
    (``retain_graph``) recomputes it and adds the same gradient again."""
    tree = fixture_tree()
    torch.manual_seed(2)
    logits = torch.randn(8, tree.num_classes, dtype=torch.float64, requires_grad=True)
    loss = SemanticSoftmaxLoss(tree, logits_order="level")(logits, torch.arange(8))
    loss.backward(retain_graph=True)
    once = logits.grad.clone()
    loss.backward()
    torch.testing.assert_close(logits.grad, 2 * once, rtol=1e-12, atol=0)


def test_semantic_loss_half_precision_logits():
    tree = fixture_tree()
    logits = (torch.randn(8, tree.num_classes) * 5).to(torch.bfloat16).requires_grad_()
    value = SemanticSoftmaxLoss(tree)(logits, torch.arange(8))
    value.backward()
    assert value.dtype == torch.float32 and logits.grad.dtype == torch.bfloat16
    assert torch.isfinite(logits.grad.float()).all()
    in_float32 = SemanticSoftmaxLoss(tree)(logits.detach().float(), torch.arange(8))
    assert value.item() == pytest.approx(in_float32.item(), rel=1e-6)  # computed in float32


def test_single_label_loss_is_label_smoothed_cross_entropy():
    logits, labels = torch.randn(5, 7), torch.tensor([0, 3, 6, 2, 2])
    expected = F.cross_entropy(logits, labels, label_smoothing=0.2)
    assert SingleLabelLoss(0.2)(logits, labels).item() == pytest.approx(expected.item())


def test_asymmetric_loss_on_class_and_ancestors():
    tree = tiny_tree()
    asl = AsymmetricMultiLabelLoss(tree, gamma_neg=4, gamma_pos=0, clip=0.05)
    labels = torch.tensor([2, 1])  # a1 -> {a1, A}; B -> {B}
    assert asl.targets(labels).tolist() == [[1, 0, 1, 0], [0, 1, 0, 0]]
    logits = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 3.0, -1.0, 2.0]])
    total = 0.0
    for row, positives in zip(logits.tolist(), [{0, 2}, {1}]):
        for c, z in enumerate(row):
            p = 1 / (1 + math.exp(-z))
            if c in positives:
                total -= math.log(p)  # gamma_pos = 0
            else:
                p_m = max(p - 0.05, 0.0)
                total -= p_m ** 4 * math.log(1 - p_m)
    assert asl(logits, labels).item() == pytest.approx(total / 2, rel=1e-5)


def test_teacher_confidence_follows_appendix_f():
    probs = [torch.tensor([[0.6, 0.4], [0.3, 0.7]]),
             torch.softmax(torch.arange(40.0).view(1, 40).repeat(2, 1), dim=1)]
    valid = torch.tensor([[True, True], [True, False]])
    confidence = teacher_confidence(probs, valid, top_fraction=0.05)
    top2 = probs[1][1].topk(2).values.sum().item()  # ceil(5 % of 40) = 2 classes
    torch.testing.assert_close(confidence, torch.tensor([[1.0, 1.0], [1.0, top2]]))


def test_semantic_kd_loss_value_and_gradient():
    tree = tiny_tree()
    kd = SemanticKDLoss(tree)
    labels = torch.tensor([2, 1])  # sample 2 has no level-1 label -> teacher confidence used
    teacher = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 3.0]])
    same = teacher.clone().requires_grad_()
    assert kd(same, teacher, labels).item() == pytest.approx(0.0, abs=1e-12)

    student = torch.zeros(2, 4, requires_grad=True)  # uniform per level
    value = kd(student, teacher, labels)
    layout = LevelLayout.from_tree(tree)
    expected = 0.0
    for i, columns in enumerate(layout.level_slices()):
        t = torch.softmax(teacher[:, layout.order[columns]], dim=1)
        squared = ((0.5 - t) ** 2).sum(dim=1)
        weight = torch.tensor([1.0, 1.0 if i == 0 else t[1].max().item()])
        expected += (weight * squared).mean().item()
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert kd.last_confidence.tolist() == pytest.approx(
        [1.0, (1.0 + torch.softmax(torch.tensor([0.0, 3.0]), 0).max().item()) / 2])
    value.backward()
    assert student.grad.abs().sum() > 0


def test_semantic_kd_loss_on_level_ordered_heads_equals_class_order():
    tree = dropped_level_tree()
    layout = LevelLayout.from_tree(tree)
    torch.manual_seed(2)
    student, teacher = torch.randn(6, tree.num_classes), torch.randn(6, tree.num_classes)
    labels = torch.tensor([0, 1, 2, 3, 4, 4])
    expected = SemanticKDLoss(tree)(student, teacher, labels)
    value = SemanticKDLoss(tree, logits_order="level")(student[:, layout.head_order],
                                                       teacher[:, layout.head_order], labels)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
