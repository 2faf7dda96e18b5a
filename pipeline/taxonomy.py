"""The is-a parents and names of an archive's classes, read beside the conversion so that the
semantic tree is a moment's work once the kept classes are known (``taxonomy-H.json``)."""
from __future__ import annotations

from typing import Callable


def read_taxonomy(wnids: list[str], placeable: Callable[[str], bool], tree_source: str, is_a_path: str,
                  words_path: str) -> dict:
    """``{"parents": {wnid: parent}, "names": {wnid: name}}`` of the placeable ``wnids``.

    Names come from ``words_path`` when given (a class it lacks matters only if it is kept: the
    plan refuses it), else from WordNet.
    """
    from hierarchy import parent_mapping
    from hierarchy.names import class_names, read_words

    wnids = [w for w in wnids if placeable(w)]
    parents = parent_mapping(wnids, tree_source, is_a_path or None) if wnids else {}
    if words_path:
        wanted = set(wnids)
        names = {w: n for w, n in read_words(words_path).items() if w in wanted}
    else:
        names = class_names(wnids)
    return {"parents": parents, "names": names}
