"""``python -m trainer predict``: the semantic chain a trained model sees in an image.

Per image, one pick per softmax level, from the root level down:

* ``tree`` strategy (default): level 0's best class, then at each next level the best class
  among the *descendants of the previous pick* - the printed chain is always a path of the tree
  (``animal > vertebrate > bird > aquatic_bird > swan``);
* ``argmax`` strategy: each level's best class on its own (the released visualiser's rule);
  the picks need not be related.

The chain stops at the first level whose pick has a probability below ``--min-prob`` (the root
level is always shown) or when the pick has no descendants further down. Probabilities are the
scheme's per-class scores (level softmax for semantic models, softmax over all classes for
single-label, sigmoid for multi-label models).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainer.checkpoint import read_export
from trainer.distributed import resolve_device
from trainer.levels import LevelLayout
from trainer.metrics import class_probabilities
from trainer.model import create_model


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """``[1, 3, size, size]`` float image in [0, 1]: any format, squish-resized like the pipeline."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            image = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
            array = np.asarray(image)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"{path}: not a readable image ({exc})") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255)


def semantic_chain(probs: torch.Tensor, layout: LevelLayout, strategy: str = "tree",
                   min_prob: float = 0.5) -> list[tuple[int, float]]:
    """``[(class_index, probability), ...]`` from the root level down for one image.

    ``probs`` is the ``[num_classes]`` score vector (see :func:`class_probabilities`).
    """
    chain: list[tuple[int, float]] = []
    for level, columns in enumerate(layout.level_slices()):
        candidates = layout.order[columns]
        if strategy == "tree" and chain:
            below = (layout.chain_table.index_select(0, candidates) == chain[-1][0]).any(dim=1)
            candidates = candidates[below]
            if candidates.numel() == 0:
                break
        scores = probs.index_select(0, candidates)
        best = int(scores.argmax())
        pick, prob = int(candidates[best]), float(scores[best])
        if chain and prob < min_prob:
            break
        chain.append((pick, prob))
    return chain


def run_predict(args) -> int:
    """Load the run directory's model and print one chain per image."""
    from hierarchy import SemanticTree

    meta, state, tree_file = read_export(args.checkpoint)
    tree = SemanticTree.load(tree_file)
    layout = LevelLayout.from_tree(tree)
    device = resolve_device(args.device, 0)
    model = create_model(meta["model"], meta["num_classes"])
    model.load_state_dict(state)
    model.to(device).eval()
    for path in args.images:
        image = load_image(path, int(meta["input_size"])).to(device)
        with torch.no_grad():
            logits = model(image).float().cpu()
        probs = class_probabilities(logits, layout, meta.get("scheme", "semantic"))[0]
        chain = semantic_chain(probs, layout, args.strategy, args.min_prob)
        if args.json:
            print(json.dumps({"image": str(path), "chain": [
                {"class_index": c, "wnid": tree.class_list[c], "name": tree.name(c),
                 "probability": round(p, 6)} for c, p in chain]}))
        else:
            print(f"{path}: " + " > ".join(f"{tree.name(c)} ({p:.2f})" for c, p in chain))
    return 0
