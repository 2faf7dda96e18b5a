"""The resumable training checkpoint ``RUN_DIR/checkpoint.pt``: saving it, loading it, resuming from it.

The checkpoint (written at every epoch end, about every ``--checkpoint-minutes`` and every
``--checkpoint-every`` steps: :class:`CheckpointClock`) holds everything needed to continue
exactly: model, optimizer, scheduler, grad scaler, epoch and step, the metric history, and every
rank's running sums of the current epoch and RNG states (:func:`rng_state`). The data position
needs no state of its own: the sample order is a pure function of (seed, epoch) and the step
says how many batches of the epoch were consumed. :func:`save_training` and
:func:`resume_training` write and read it on every rank.

A semantic run's head trains with its rows in level order (``trainer.head_order``); the
checkpoint stores the model and the optimizer as they train, plus ``head_rows`` (the head's
tensors and their order), so resuming loads them as they are.

It is written to a temporary name in the same directory and moved into place with
``os.replace``, so a crash never leaves a torn file. Claiming the run directory is
``trainer.run_dir``'s job; the exported model is ``trainer.export``'s.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch

from hierarchy.atomic import atomic_path
from trainer.config import ConfigError
from trainer.distributed import all_gather_objects, broadcast_flag

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 3  # 2: model and optimizer as trained, with head_rows; 3: + identity


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save`` straight into a temp file beside ``path``, flushed and renamed: no second
    copy of the serialised bytes in memory (a checkpoint of a large model is hundreds of MB:
    ``benchmarks/checkpoint_cost.py`` measures the writer)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def rng_state() -> dict:
    """This process's RNG states (torch CPU, CUDA when used, NumPy, Python)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict) -> None:
    """Set this process's RNG states to those :func:`rng_state` took."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


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
        atomic_torch_save(state, Path(run_dir) / CHECKPOINT)


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
