"""trainer.model: weight loading and the level-ordered classifier head (with its checkpoint rows)."""
from __future__ import annotations

import pytest
import torch

from tests.trainer_fixtures import fixture_tree
from trainer.checkpoint import class_order, head_rows
from trainer.config import ConfigError
from trainer.levels import LevelLayout
from trainer.model import (create_model, load_matching_weights, parameter_groups,
                           permute_classifier)


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
