"""trainer.predict: the semantic chain of one image, by either strategy."""
from __future__ import annotations

import torch

from tests.trainer_fixtures import fixture_tree
from trainer.levels import LevelLayout
from trainer.predict import semantic_chain


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
