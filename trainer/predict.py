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
import sys
from pathlib import Path

import torch
from PIL import Image

from trainer.distributed import resolve_device
from trainer.levels import LevelLayout
from trainer.metrics import class_probabilities
from trainer.trained_model import load_trained_model
from trainer.transforms import decode_rgb


class UnreadableImage(ValueError):
    """An input image that cannot be read or decoded (its message: ``PATH: not a readable image (...)``)."""


def load_image(path: str | Path, size: int, stored_size: int = 224, quality: int = 95) -> torch.Tensor:
    """``[1, 3, size, size]`` float image in [0, 1], the pixels training saw for such a file: the
    pipeline's own :func:`pipeline.images.squish_resize` to the dataset's stored JPEG
    (``stored_size``² at ``quality``: the bytes a shard would hold), then the trainer's decode.
    Raises :class:`UnreadableImage` for a file that cannot be read or is no image."""
    from pipeline.images import BadImage, squish_resize

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableImage(f"{path}: not a readable image ({exc.strerror or exc})") from None
    try:
        jpeg = squish_resize(data, stored_size, quality)
    except BadImage as exc:
        raise UnreadableImage(f"{path}: not a readable image ({exc})") from None
    array = decode_rgb(jpeg, size)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255)


def expand_images(arguments: list[str]) -> tuple[list[Path], list[str]]:
    """The image files the arguments name (a folder: its image files, recursively, by name) and
    one problem line per argument that names none."""
    extensions = {ext.lower() for ext in Image.registered_extensions()}
    files, problems = [], []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions
                           and not p.name.startswith("."))
            files += found
            if not found:
                problems.append(f"{path}: a folder holding no image files")
        elif path.exists():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    return files, problems


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
    """Load the model of the run directory ``args.run`` (:func:`~trainer.trained_model.load_trained_model`:
    its export, or the weights in ``checkpoint.pt`` while it runs) and print one chain per image;
    a file that cannot be read is reported on its own line (stderr) and skipped. Returns 1 when
    any argument failed."""
    from hierarchy import SemanticTree

    trained = load_trained_model(args.run)
    meta = trained.card
    tree = SemanticTree.load(trained.tree_file)
    layout = LevelLayout.from_tree(tree)
    device = resolve_device(args.device, 0)
    model = trained.model.to(device).eval()
    files, problems = expand_images(args.images)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    failed = len(problems)
    for path in files:
        try:
            image = load_image(path, int(meta["input_size"]), int(meta.get("image_size", 224)),
                               int(meta.get("jpeg_quality", 95))).to(device)
        except UnreadableImage as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
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
    if failed:
        print(f"error: {failed} of {len(files) + len(problems)} input(s) could not be read (listed above)",
              file=sys.stderr)
    return 1 if failed else 0
