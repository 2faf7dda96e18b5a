"""Run-directory files: the resumable training checkpoint (the export is ``trainer.export``).

:func:`claim_run_dir` decides whether a directory may take a run, :func:`save_training` and
:func:`resume_training` write and read the checkpoint of a run on every rank.

``RUN_DIR/checkpoint.pt`` (written every epoch and every ``--checkpoint-every`` steps) holds
everything needed to continue exactly: model, optimizer, scheduler, grad scaler, epoch and
step, the metric history and the running sums of the current epoch, and every rank's RNG
states. The data position needs no state of its own: the sample order is a pure function of
(seed, epoch) and the step says how many batches of the epoch were consumed.

A semantic run's head trains with its rows in level order (``LevelLayout.head_order``, so the
loss reads its logits without reordering). The checkpoint stores the model and the optimizer as
they train, plus ``head_rows`` (the head's tensors and their order), so resuming loads them as
they are; only the export (and a prediction from a running checkpoint) turns the head back to
class order (output ``c`` is class ``c``) with :func:`class_order`.

Every file is written to a temporary name in the same directory and moved into place with
``os.replace``, so a crash never leaves a torn file.
"""
from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from hierarchy.atomic import atomic_path, atomic_write_bytes
from trainer.config import ConfigError
from trainer.distributed import all_gather_objects, broadcast_flag

CHECKPOINT = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FORMAT = 3  # 2: model and optimizer as trained, with head_rows; 3: + identity


def run_files(run_dir: Path) -> list[Path]:
    """The files (and the TensorBoard folder) a run writes that ``run_dir`` already holds (a
    previous run's)."""
    if not run_dir.is_dir():
        return []
    from trainer.export import EXPORT_FILES  # trainer.export reads checkpoints: imported here, not above
    from trainer.steplog import STEPS_FILE, TENSORBOARD_DIR

    names = {CHECKPOINT, METRICS_FILE, STEPS_FILE, *EXPORT_FILES}
    return sorted(p for p in run_dir.iterdir()
                  if (p.is_file() and (p.name in names or p.suffix == ".png")) or (p.is_dir() and p.name == TENSORBOARD_DIR))


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> list[Path]:
    """The previous run's files in ``run_dir`` that a new run would delete (``--overwrite``);
    refuses (:class:`ConfigError`) a directory holding a run without ``--resume`` or
    ``--overwrite``. Changes nothing: a refused command leaves no trace."""
    previous = run_files(run_dir)
    if previous and not resume and not overwrite:
        raise ConfigError(
            f"{run_dir} already holds a run ({', '.join(p.name for p in previous)}): "
            "--resume continues it, --overwrite deletes it and starts over, or choose another --output")
    return [] if resume else previous


def prepare_run_dir(run_dir: Path, replaced: list[Path]) -> None:
    """Create ``run_dir`` and delete the ``replaced`` files of a previous run (main rank only,
    once every check of the new run has passed)."""
    for path in replaced:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save`` straight into a temp file beside ``path``, flushed and renamed: no second
    copy of the serialised bytes in memory (a TResNet-M checkpoint is ~630 MB)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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
    names, ``meta`` (identity, counters, history, ...), and every rank's RNG states and
    ``running`` sums. A collective (every rank calls it); the other ranks go on to the next
    step at once and wait for the main rank only at the next gradient all-reduce."""
    per_rank = all_gather_objects({"rng": rng_state(), "running": running.cpu()})
    if is_main:
        state = {"format": CHECKPOINT_FORMAT, **meta, "per_rank": per_rank}
        state.update({name: part.state_dict() for name, part in parts.items()})
        save_checkpoint(run_dir, state)


def identity_differences(saved: dict, current: dict) -> list[str]:
    """``name (old -> new)`` for each entry of a run's identity (:func:`run_identity` in
    ``trainer.train``) that differs between a checkpoint and the command resuming it."""
    return [f"{key} ({saved.get(key)!r} -> {current[key]!r})" for key in current if saved.get(key) != current[key]]


def resume_training(state: dict, parts: dict, identity: dict, context, running: torch.Tensor, log) -> dict:
    """Load a checkpoint ``state`` (:func:`load_checkpoint`) into ``parts``, this rank's RNG
    states and ``running``; returns ``state`` (its counters and history).

    Refuses (:class:`ConfigError`) a checkpoint whose identity (every setting that changes what
    the run computes, the dataset, the data lanes) differs from ``identity``. With another number
    of ranks the data order is kept, but RNG streams and the epoch's running sums start over (the
    main rank takes the sum of all ranks')."""
    changed = identity_differences(state["identity"], identity)
    if changed:
        raise ConfigError("cannot resume: settings differ from the checkpoint: " + ", ".join(changed)
                          + " (give the checkpoint's values, or start over with --overwrite)")
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


class CheckpointClock:
    """When to checkpoint inside an epoch: about every ``minutes`` of wall time and/or every
    ``steps`` optimizer steps (0 turns either off). All ranks must agree, so in a job of
    several ranks the main rank's clock decides and is shared by one broadcast every
    ``sync_steps`` steps (no per-step synchronisation)."""

    def __init__(self, minutes: float, steps: int, context, sync_steps: int = 20):
        self.seconds, self.steps, self.context, self.sync_steps = minutes * 60.0, steps, context, sync_steps
        self.restart()

    def restart(self) -> None:
        """Count from now (after each checkpoint)."""
        self.since = time.monotonic()

    def due(self, global_step: int) -> bool:
        if self.steps and global_step % self.steps == 0:
            return True
        if not self.seconds or (self.context.distributed and global_step % self.sync_steps):
            return False
        late = time.monotonic() - self.since >= self.seconds
        return broadcast_flag(late, self.context.device) if self.context.distributed else late
