"""WordNet semantic tree of ImageNet-21K-P: levels, semantic-softmax targets and weights.

``SemanticTree.build(wnids)`` turns kept classes into the tree; ``python -m hierarchy --help``
is the command line. No torch here: the dataset pipeline uses this package too.
"""
from hierarchy.isa import SOURCES, parent_mapping, placeable, unknown_wnids
from hierarchy.tree import SemanticTree

__all__ = ["SOURCES", "SemanticTree", "parent_mapping", "placeable", "unknown_wnids"]
