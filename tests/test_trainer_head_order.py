"""trainer.head_order: a semantic run's level-ordered classifier head and the class-order state
dict its checkpoint rows give back."""
from __future__ import annotations

import pytest
import torch

from tests.trainer_fixtures import fixture_tree
from trainer.config import ConfigError
from trainer.head_order import class_order, head_rows, permute_classifier
from trainer.initial_weights import create_model
from trainer.levels import LevelLayout


def test_level_ordered_head_and_its_class_order_state():
    """A semantic run's head: outputs permuted to ``head_order``; ``class_order`` with the
    checkpoint's ``head_rows`` gives back a class-order timm state dict."""
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
    restored = class_order(model.state_dict(), head_rows(keys, rows))
    assert all(torch.equal(restored[k], v) for k, v in original.items())
    fresh = create_model("test_vit", layout.num_classes)
    fresh.load_state_dict(restored)  # plain timm model in class order
    assert class_order(original, head_rows([], rows)) is original  # a head in class order stays
    with pytest.raises(ConfigError, match="no classifier"):
        permute_classifier(create_model("test_vit", 0), rows)


def test_class_order_undoes_a_level_ordered_head():
    order = torch.tensor([2, 0, 1])  # row r holds class order[r]
    head = {"fc.weight": torch.tensor([[20.0], [0.0], [10.0]]), "fc.bias": torch.tensor([2.0, 0.0, 1.0]),
            "body.weight": torch.ones(1)}
    rows = head_rows(["fc.weight", "fc.bias"], order)
    back = class_order(head, rows)
    assert back["fc.weight"].flatten().tolist() == [0.0, 10.0, 20.0]
    assert back["fc.bias"].tolist() == [0.0, 1.0, 2.0]
    assert back["body.weight"] is head["body.weight"]
    assert class_order(head, head_rows([], order)) is head
