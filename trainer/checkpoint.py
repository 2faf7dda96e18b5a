"""Run-directory files: the resumable training checkpoint and the final model export.

:func:`claim_run_dir` decides whether a directory may take a run, :func:`save_training` and
:func:`resume_training` write and read the checkpoint of a run on every rank.

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
from trainer.config import RESUME_KEYS, ConfigError
from trainer.distributed import all_gather_objects, barrier

CHECKPOINT = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FORMAT = 2  # 2: model and optimizer as trained, with head_rows
EXPORT_WEIGHTS = "model.pth"
EXPORT_TREE = TREE_FILE  # a copy of the dataset's tree, beside the weights
EXPORT_META = "model.json"


def run_files(run_dir: Path) -> list[Path]:
    """The files a run writes that ``run_dir`` already holds (a previous run's)."""
    if not run_dir.is_dir():
        return []
    names = {CHECKPOINT, METRICS_FILE, EXPORT_WEIGHTS, EXPORT_META, EXPORT_TREE}
    return sorted(p for p in run_dir.iterdir() if p.is_file() and (p.name in names or p.suffix == ".png"))


def claim_run_dir(run_dir: Path, resume: bool, overwrite: bool, is_main: bool) -> None:
    """Make ``run_dir`` ready for a run: a previous run's files stay for ``--resume``, go with
    ``--overwrite`` (deleted by the main rank) and refuse the run otherwise."""
    previous = run_files(run_dir)
    if previous and not resume:
        if not overwrite:
            raise ConfigError(
                f"{run_dir} already holds a run ({', '.join(p.name for p in previous)}): "
                "--resume continues it, --overwrite deletes it and starts over, or choose another --output")
        if is_main:
            for path in previous:
                path.unlink(missing_ok=True)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)


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


def save_training(run_dir: Path, parts: dict, meta: dict, running: torch.Tensor, is_main: bool) -> None:
    """Write ``checkpoint.pt``: the state dicts of ``parts`` (model, optimizer, ...) under their
    names, ``meta`` (config, counters, history, ...), and every rank's RNG states and
    ``running`` sums. A collective: every rank calls it."""
    per_rank = all_gather_objects({"rng": rng_state(), "running": running.cpu()})
    if is_main:
        state = {"format": CHECKPOINT_FORMAT, **meta, "per_rank": per_rank}
        state.update({name: part.state_dict() for name, part in parts.items()})
        save_checkpoint(run_dir, state)
    barrier()


def resume_training(run_dir: Path, parts: dict, config, data_lanes: int, context, running: torch.Tensor,
                    log) -> dict | None:
    """Load ``run_dir``'s checkpoint into ``parts``, this rank's RNG states and ``running``;
    returns the checkpoint (its counters and history), or None when there is none yet.

    Refuses (:class:`ConfigError`) a checkpoint of other settings (``RESUME_KEYS``, data lanes).
    With another number of ranks the data order is kept, but RNG streams and the epoch's running
    sums start over (the main rank takes the sum of all ranks')."""
    state = load_checkpoint(run_dir)
    if state is None:
        log(f"--resume: no checkpoint in {run_dir}, starting from scratch")
        return None
    saved = state["config"]
    changed = [k for k in RESUME_KEYS if saved.get(k) != getattr(config, k)]
    if state["data_lanes"] != data_lanes:
        changed.append(f"data_lanes ({state['data_lanes']} -> {data_lanes}; pass "
                       f"--data-lanes {state['data_lanes']} to keep the data order)")
    if changed:
        raise ConfigError(f"cannot resume {run_dir}: settings differ from the checkpoint: " + ", ".join(changed))
    for name, part in parts.items():
        part.load_state_dict(state[name])  # as trained: a level-ordered head needs no reordering
    if state["world_size"] == context.world_size:
        mine = state["per_rank"][context.rank]
        restore_rng_state(mine["rng"])
        running.copy_(mine["running"])
    else:
        log("--resume with a different number of ranks: data order is kept, RNG "
            "streams (dropout) and the epoch's running loss restart")
        if context.is_main:
            running.copy_(sum(r["running"] for r in state["per_rank"]))
    log(f"resumed from epoch {state['epoch'] + 1}, step {state['step']} (global step {state['global_step']})")
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
