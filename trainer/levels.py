"""The softmax levels of a semantic tree, laid out for tensor operations.

Every scheme, metric and the predictor need the same view of the tree: the classes of each
softmax level in one contiguous block of columns ("level order"), the semantic target table and
the ancestor chains as tensors. :class:`LevelLayout` computes it once from a
``hierarchy.SemanticTree`` so nothing downstream loops over samples in Python.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch


@dataclass(frozen=True)
class LevelLayout:
    """Tensor view of a tree's softmax levels.

    Attributes:
        num_classes: classes in the tree (= model outputs).
        order: ``[C']`` int64 class indices, level 0's sorted classes first, then level 1's, ...
            (classes of dropped one-class levels are absent, so ``C' <= num_classes``).
        offsets: ``num_levels + 1`` column offsets into ``order``; level ``i`` is
            ``order[offsets[i]:offsets[i + 1]]``.
        inverse: ``[num_classes]`` int64, position of each class in ``order`` or ``C'`` for a
            class in no softmax level (so a zero column appended at ``C'`` maps to it).
        head_order: ``[num_classes]`` int64, ``order`` followed by the classes in no softmax
            level (ascending): row ``r`` of a level-ordered classifier head is class
            ``head_order[r]``, so its logits need no reordering for the semantic loss.
        head_inverse: ``[num_classes]`` int64, the row of each class in such a head
            (``head_order[head_inverse] == arange``).
        target_table: ``[num_classes, num_levels]`` int64, the position of a class's
            ancestor-or-self inside each level, or -1 where it has no label at that level.
        weights: ``[num_levels]`` float32 normalization factors (paper eq. 3-4).
        chain_table: ``[num_classes, max_chain]`` int64 self + ancestors, padded with
            ``num_classes`` (a dummy column), for multi-hot targets.
    """

    num_classes: int
    order: torch.Tensor
    offsets: tuple[int, ...]
    inverse: torch.Tensor
    head_order: torch.Tensor
    head_inverse: torch.Tensor
    target_table: torch.Tensor
    weights: torch.Tensor
    chain_table: torch.Tensor

    @classmethod
    def from_tree(cls, tree) -> "LevelLayout":
        """Build the layout of a ``hierarchy.SemanticTree``."""
        num_classes = int(tree.num_classes)
        levels = [list(level) for level in tree.levels]
        if not levels:
            raise ValueError("the semantic tree has no softmax level (every depth holds one class)")
        order = np.concatenate([np.asarray(level, dtype=np.int64) for level in levels])
        offsets = tuple(int(x) for x in np.cumsum([0] + [len(level) for level in levels]))
        inverse = np.full(num_classes, len(order), dtype=np.int64)
        inverse[order] = np.arange(len(order))
        head_order = np.concatenate([order, np.flatnonzero(inverse == len(order))])
        table = np.asarray(tree.target_table, dtype=np.int64).reshape(num_classes, len(levels))
        chains = [list(chain) for chain in tree.class_tree_list]
        chain_table = np.full((num_classes, max(len(c) for c in chains)), num_classes, np.int64)
        for i, chain in enumerate(chains):
            chain_table[i, : len(chain)] = chain
        return cls(
            num_classes=num_classes,
            order=torch.from_numpy(order),
            offsets=offsets,
            inverse=torch.from_numpy(inverse),
            head_order=torch.from_numpy(head_order),
            head_inverse=torch.from_numpy(np.argsort(head_order)),
            target_table=torch.from_numpy(table),
            weights=torch.tensor([float(w) for w in tree.normalization_factors], dtype=torch.float32),
            chain_table=torch.from_numpy(chain_table),
        )

    @property
    def num_levels(self) -> int:
        return len(self.offsets) - 1

    @property
    def level_sizes(self) -> list[int]:
        """Classes per softmax level."""
        return [b - a for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def level_slices(self) -> list[slice]:
        """Column slices of each level inside level-ordered logits."""
        return [slice(a, b) for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def to(self, device) -> "LevelLayout":
        """The same layout with its tensors on ``device``."""
        tensors = ("order", "inverse", "head_order", "head_inverse", "target_table", "weights",
                   "chain_table")
        return replace(self, **{name: getattr(self, name).to(device) for name in tensors})

    def level_ordered(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits[:, order]`` as one contiguous ``[B, C']`` tensor."""
        return logits.index_select(1, self.order)

    def class_ordered(self, head_logits: torch.Tensor) -> torch.Tensor:
        """Logits of a level-ordered head (rows in ``head_order``) back in class order."""
        return head_logits.index_select(1, self.head_inverse)

    def semantic_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """``[B, num_levels]`` per-level target positions (-1 = no label), gathered on device."""
        return self.target_table.index_select(0, labels)

    def multi_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """``[B, num_classes]`` float targets: 1 for the class and each of its ancestors."""
        return multi_hot(self.chain_table, labels, self.num_classes)


def multi_hot(chain_table: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Rows of ``chain_table`` (self + ancestors, padded with ``num_classes``) as multi-hot
    ``[B, num_classes]`` float targets, built with one scatter on the labels' device."""
    hot = torch.zeros(labels.shape[0], num_classes + 1, device=labels.device)
    hot.scatter_(1, chain_table.index_select(0, labels), 1.0)
    return hot[:, :num_classes]
