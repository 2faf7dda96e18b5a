"""Run-directory files: the resumable training checkpoint and the final model export.

``RUN_DIR/checkpoint.pt`` (written every epoch and every ``--checkpoint-every`` steps) holds
everything needed to continue exactly: model, optimizer, scheduler, grad scaler, epoch and
step, the metric history and the running sums of the current epoch, and every rank's RNG
states. The data position needs no state of its own: the sample order is a pure function of
(seed, epoch) and the step says how many batches of the epoch were consumed.

The export is what downstream users load: ``semantic_tree.json`` (the dataset's tree) and
``model.json`` (model name, classes, input size, scheme), written when the run starts, and
``model.pth`` (a plain timm state dict, loadable with
``timm.create_model(name, num_classes=N).load_state_dict``), written when it ends.

A semantic run's head trains with its rows in level order (``LevelLayout.head_order``, so the
loss reads its logits without reordering). The checkpoint stores the model and the optimizer as
they train, plus ``head_rows`` (the head's tensors and their order), so resuming loads them as
they are; only the export (and a prediction from a running checkpoint) turns the head back to
class order (output ``c`` is class ``c``) with :func:`class_order`.

Every file is written to a temporary name in the same directory and moved into place with
``os.replace``, so a crash never leaves a torn file.
"""
from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import torch

from hierarchy.atomic import atomic_write_bytes
from pipeline.dataset_format import TREE_FILE
from trainer.config import ConfigError

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 2  # 2: model and optimizer as trained, with head_rows
EXPORT_WEIGHTS = "model.pth"
EXPORT_TREE = TREE_FILE  # a copy of the dataset's tree, beside the weights
EXPORT_META = "model.json"


def atomic_torch_save(obj, path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_json(obj, path: str | Path) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def rng_state() -> dict:
    """This process's RNG states (torch CPU, CUDA when used, NumPy, Python)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def head_rows(keys: list[str], order: torch.Tensor) -> dict:
    """What a checkpoint records of a level-ordered head: its tensors' names and the class of each
    row (none for a head in class order)."""
    return {"keys": list(keys), "order": order.tolist() if keys else []}


def class_order(state: dict, rows: dict) -> dict:
    """A copy of the state dict ``state`` with the head described by ``rows`` (:func:`head_rows`)
    back in class order; the other tensors are shared."""
    if not rows["keys"]:
        return state
    back = torch.argsort(torch.tensor(rows["order"]))  # class c sits in row order.index(c)
    keys = set(rows["keys"])
    return {k: v.index_select(0, back.to(v.device)) if k in keys else v for k, v in state.items()}


def save_checkpoint(run_dir: str | Path, state: dict) -> Path:
    path = Path(run_dir) / CHECKPOINT
    atomic_torch_save(state, path)
    return path


def load_checkpoint(run_dir: str | Path) -> dict | None:
    """The training checkpoint of ``run_dir``, or None when there is none yet; raises
    :class:`~trainer.config.ConfigError` for one an older trainer wrote in another format."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} was written by an older trainer (format {state.get('format')}, this one reads "
                         f"{CHECKPOINT_FORMAT}): start over with --overwrite")
    return state


def write_model_card(run_dir: str | Path, tree_file: str | Path, meta: dict) -> None:
    """Write ``semantic_tree.json`` (a copy of the dataset's tree) and ``model.json``."""
    run_dir = Path(run_dir)
    atomic_write_bytes(run_dir / EXPORT_TREE, Path(tree_file).read_bytes())
    atomic_write_json(meta, run_dir / EXPORT_META)


def export_weights(run_dir: str | Path, state_dict: dict) -> Path:
    """Write the final ``model.pth``: a plain CPU state dict with timm's parameter names."""
    path = Path(run_dir) / EXPORT_WEIGHTS
    atomic_torch_save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, path)
    return path


def read_export(run_dir: str | Path) -> tuple[dict, dict, Path]:
    """``(meta, state_dict, tree_file)`` of an exported model directory.

    Falls back to the weights inside ``checkpoint.pt`` when the run has not finished yet.
    """
    run_dir = Path(run_dir)
    meta_path = run_dir / EXPORT_META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: {run_dir} is not a trainer run directory")
    meta = json.loads(meta_path.read_text())
    weights = run_dir / EXPORT_WEIGHTS
    if weights.is_file():
        state = torch.load(weights, map_location="cpu", weights_only=True)
    else:
        checkpoint = load_checkpoint(run_dir)
        if checkpoint is None:
            raise FileNotFoundError(f"{run_dir} holds neither {EXPORT_WEIGHTS} nor {CHECKPOINT}")
        state = class_order(checkpoint["model"], checkpoint["head_rows"])
    return meta, state, run_dir / EXPORT_TREE
