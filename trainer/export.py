"""The run directory as a timm model folder: what downstream users load.

Written when the run starts: ``semantic_tree.json`` (a copy of the dataset's tree) and
``model.json`` (model name, classes, input size, scheme, how the dataset stored its images).
Written when it ends, in timm's local-dir / Hugging Face hub layout (``timm.models.save_for_hf``):

* ``model.safetensors`` - the weights, head in class order (output ``c`` is class ``c``);
* ``config.json`` - ``architecture``, ``num_classes``, ``label_names`` (the wnids in class order),
  ``label_descriptions`` (wnid -> class name) and a ``pretrained_cfg`` describing the inputs
  training fed: pixels in [0, 1] (mean 0, std 1, as timm's ``*_miil_in21k`` weights), input
  ``(3, S, S)`` with S = ``--input-size``, the whole image squashed to S x S (``crop_pct`` 1.0,
  ``crop_mode`` "squash"), bilinear;
* ``labels.txt`` - ``index<TAB>wnid<TAB>name``, one line per class.

So ``timm.create_model("local-dir:RUN", pretrained=True)`` is the trained model and
``timm.data.resolve_data_config({}, model=m)`` its preprocessing. Each file is written to a
temporary name in the run directory and moved into place (``hierarchy.atomic``); the weights go
last, so their presence marks a finished export. :func:`read_export` reads a run's weights back
(``trainer.trained_model`` builds the model from them).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import timm
from safetensors.torch import load_file

from hierarchy.atomic import atomic_path, atomic_write_bytes, atomic_write_text, temp_path
from pipeline.dataset_format import TREE_FILE
from trainer.checkpoint import CHECKPOINT, load_checkpoint
from trainer.head_order import class_order

EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "config.json"
EXPORT_LABELS = "labels.txt"
EXPORT_TREE = TREE_FILE
EXPORT_META = "model.json"
EXPORT_FILES = (EXPORT_WEIGHTS, EXPORT_CONFIG, EXPORT_LABELS, EXPORT_META, EXPORT_TREE)
# pretrained_cfg fields about timm's own weights for the architecture, not about a run's
SOURCE_FIELDS = ("tag", "license", "description", "origin_url", "paper_name", "paper_ids", "notes")


def write_model_card(run_dir: str | Path, tree_file: str | Path, meta: dict) -> None:
    """Write ``semantic_tree.json`` (a copy of the dataset's tree) and ``model.json``."""
    run_dir = Path(run_dir)
    atomic_write_bytes(run_dir / EXPORT_TREE, Path(tree_file).read_bytes())
    atomic_write_text(run_dir / EXPORT_META, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def data_config(input_size: int) -> dict:
    """timm's preprocessing for what training fed: the whole image squashed to
    ``input_size``² (bilinear), pixels in [0, 1] (no normalisation)."""
    return {"input_size": (3, input_size, input_size), "interpolation": "bilinear", "crop_pct": 1.0,
            "crop_mode": "squash", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def label_config(tree) -> dict:
    """``label_names`` (wnids in class order) and ``label_descriptions`` (wnid -> name)."""
    return {"label_names": list(tree.class_list),
            "label_descriptions": {wnid: tree.name(i) for i, wnid in enumerate(tree.class_list)}}


def labels_text(tree) -> str:
    """``labels.txt``: ``index<TAB>wnid<TAB>name`` per class."""
    return "".join(f"{i}\t{wnid}\t{tree.name(i)}\n" for i, wnid in enumerate(tree.class_list))


def export_model(run_dir: str | Path, model_name: str, state_dict: dict, tree, input_size: int) -> Path:
    """Write ``labels.txt``, ``config.json`` and ``model.safetensors`` (last) into ``run_dir``
    from a class-order ``state_dict`` of timm's ``model_name``; returns the weights' path."""
    run_dir = Path(run_dir)
    model = timm.create_model(model_name, num_classes=tree.num_classes,
                              pretrained_cfg_overlay=dict.fromkeys(SOURCE_FIELDS))
    model.load_state_dict(state_dict)  # strict: a plain timm model, contiguous on the CPU
    atomic_write_text(run_dir / EXPORT_LABELS, labels_text(tree))
    staging = temp_path(run_dir / EXPORT_WEIGHTS)  # a temp folder the atomic cleanups know
    try:
        timm.models.save_for_hf(model, staging, model_config=label_config(tree), safe_serialization=True,
                                data_config=data_config(input_size))
        for name in (EXPORT_CONFIG, EXPORT_WEIGHTS):
            with atomic_path(run_dir / name) as tmp:
                os.replace(staging / name, tmp)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return run_dir / EXPORT_WEIGHTS


def read_model_card(run_dir: str | Path) -> dict:
    """``model.json`` of a run directory (FileNotFoundError when it is not one)."""
    path = Path(run_dir) / EXPORT_META
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a trainer run directory")
    return json.loads(path.read_text())


def read_export(run_dir: str | Path) -> tuple[dict, dict, Path]:
    """``(meta, state_dict, tree_file)`` of a run directory, the head in class order: the
    exported ``model.safetensors``, or the weights inside ``checkpoint.pt`` while it runs."""
    run_dir = Path(run_dir)
    meta = read_model_card(run_dir)
    weights = run_dir / EXPORT_WEIGHTS
    if weights.is_file():
        state = load_file(weights)
    else:
        checkpoint = load_checkpoint(run_dir)
        if checkpoint is None:
            raise FileNotFoundError(f"{run_dir} holds neither {EXPORT_WEIGHTS} nor {CHECKPOINT}")
        state = class_order(checkpoint["model"], checkpoint["head_rows"])
    return meta, state, run_dir / EXPORT_TREE
