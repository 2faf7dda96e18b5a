"""Per-step scalars of a training run, for watching it: ``RUN/steps.jsonl`` and TensorBoard.

Every ``--log-every`` optimizer steps and at the last step of each epoch, :class:`StepLog` writes
one record of the steps since the previous record: the mean loss (and per-level losses, teacher
confidence) over all ranks' micro-batches, the lr, images per second, the share of the wall time
spent waiting for the loader and the peak GPU memory. Between records it only adds host numbers
(the loader wait, the batch sizes): the losses are the difference of the epoch's
:class:`~trainer.metrics.RunningSums` since the last record, so a record costs one all-reduce of
one small tensor (on every rank) and the steps in between no device synchronisation at all.

A run resumed at global step ``s`` drops the records after ``s`` (``steps.jsonl`` rewritten once,
the event files purged from ``s + 1`` on), so a kill -9 leaves no duplicates. Unlike the
deterministic ``metrics.jsonl``, these records hold timings.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from hierarchy.atomic import atomic_write_text
from trainer.distributed import all_reduce_sum

STEPS_FILE = "steps.jsonl"
TENSORBOARD_DIR = "tensorboard"
TRAIN_SCALARS = ("loss", "level_loss", "teacher_confidence", "lr")
RATES = ("img_per_s", "img_per_s_per_device", "data_wait")
SPEED_SCALARS = (*RATES, "gpu_mem_gb")


def period_summary(totals: list[float], num_levels: int, world_size: int) -> dict:
    """Means and rates of a period between two records from its sums over all ranks:
    ``totals = [loss, micro-batches, level losses (num_levels), teacher confidences
    (num_levels), images, seconds waiting for the loader, wall seconds]``."""
    L = num_levels
    count = max(totals[1], 1.0)
    images, waited, wall = totals[2 + 2 * L:]
    seconds = max(wall / world_size, 1e-9)  # each rank's wall time of the period, averaged
    return {"loss": round(totals[0] / count, 6),
            "level_loss": [round(x / count, 6) for x in totals[2:2 + L]],
            "teacher_confidence": [round(x / count, 6) for x in totals[2 + L:2 + 2 * L]],
            "img_per_s": round(images / seconds, 1),
            "img_per_s_per_device": round(images / seconds / world_size, 1),
            "data_wait": round(waited / max(wall, 1e-9), 4)}


def records_up_to(text: str, last_step: int) -> str:
    """The lines of a ``steps.jsonl`` whose ``global_step`` is at most ``last_step`` (a torn last
    line, from a killed writer, is dropped too)."""
    kept = []
    for line in text.splitlines(keepends=True):
        try:
            if line.endswith("\n") and json.loads(line)["global_step"] <= last_step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    return "".join(kept)


def scalar_tags(group: str, values: dict, keys) -> list[tuple[str, float]]:
    """``(tag, value)`` for TensorBoard: ``group/key`` for each number of ``values`` under
    ``keys``, ``group/key/i`` for each entry of a list (per level); None (nothing measured) and
    absent keys skipped."""
    tags = []
    for key in keys:
        value = values.get(key)
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        tags += [(f"{group}/{key}" if i is None else f"{group}/{key}/{i}", float(v))
                 for i, v in items if v is not None]
    return tags


def summary_writer(log_dir: Path, purge_step: int):
    """A TensorBoard ``SummaryWriter`` that hides the events from ``purge_step`` on, or None
    (with one warning line) when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        print(f"warning: --tensorboard: the tensorboard package is not importable ({exc}); writing "
              f"{STEPS_FILE} only (pip install tensorboard, or pass --no-tensorboard)", file=sys.stderr)
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


class StepLog:
    """The per-step records of one run on one rank (only the main rank writes them).

    ``epoch_batches`` wraps an epoch's batch iterator (timing the loader), ``after_step`` is called
    after every optimizer step, ``epoch_end`` with each ``metrics.jsonl`` entry; ``close`` at the
    end. Nothing is written before the first epoch starts."""

    def __init__(self, run_dir: Path, config, context, num_levels: int, steps_per_epoch: int):
        self.run_dir, self.context, self.num_levels = Path(run_dir), context, num_levels
        self.every, self.steps_per_epoch, self.tensorboard = config.log_every, steps_per_epoch, config.tensorboard
        self.loss_keys = [key for key, kept in [("loss", True), ("level_loss", config.scheme == "semantic"),
                                                ("teacher_confidence", bool(config.teacher))] if kept]
        self.opened, self.writer = False, None

    def _open(self, global_step: int) -> None:
        """Drop the records after ``global_step`` (a resumed run's position) and start writing."""
        self.opened = True
        if not self.context.is_main:
            return
        path = self.run_dir / STEPS_FILE
        if path.is_file():
            text = path.read_text()
            kept = records_up_to(text, global_step)
            if kept != text:
                atomic_write_text(path, kept)
        if self.tensorboard:
            self.writer = summary_writer(self.run_dir / TENSORBOARD_DIR, purge_step=global_step + 1)

    def epoch_batches(self, batches, running, global_step: int):
        """Yield ``batches`` (one epoch's, from ``global_step`` on), timing each wait for the
        next one; ``running`` holds the epoch's loss sums so far (what the first record of the
        epoch subtracts)."""
        if not self.opened:
            self._open(global_step)
        self.running, self.since_record = running, running.values.clone()
        self.images, self.waited, self.started = 0, 0.0, time.perf_counter()
        iterator = iter(batches)
        while True:
            asked = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.waited += time.perf_counter() - asked
            self.images += batch[1].shape[0]
            yield batch

    def after_step(self, global_step: int, epoch: int, step: int, lr: float) -> None:
        """Record the period ending at this optimizer step when it is a record step (every
        ``log_every`` steps and the epoch's last one); a collective then, on every rank."""
        last = step == self.steps_per_epoch
        if not last and not (self.every > 0 and global_step % self.every == 0):
            return
        device = self.running.values.device
        now = time.perf_counter()
        host = torch.tensor([self.images, self.waited, now - self.started], dtype=torch.float64, device=device)
        sums = torch.cat([self.running.values - self.since_record, host])
        self.since_record = self.running.values.clone()
        self.images, self.waited, self.started = 0, 0.0, now
        totals = all_reduce_sum(sums).tolist()
        if self.context.is_main:
            self._write(global_step, epoch + step / self.steps_per_epoch, lr, totals)

    def _write(self, global_step: int, epoch: float, lr: float, totals: list[float]) -> None:
        summary = period_summary(totals, self.num_levels, self.context.world_size)
        record = {"global_step": global_step, "epoch": round(epoch, 4), "time": round(time.time(), 3)}
        record.update({key: summary[key] for key in self.loss_keys}, lr=round(lr, 10))
        record.update({key: summary[key] for key in RATES})
        if self.context.device.type == "cuda":
            record["gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(self.context.device) / 2**30, 3)
            torch.cuda.reset_peak_memory_stats(self.context.device)
        with open(self.run_dir / STEPS_FILE, "a") as file:
            file.write(json.dumps(record) + "\n")
        self._scalars(scalar_tags("train", record, TRAIN_SCALARS) + scalar_tags("speed", record, SPEED_SCALARS),
                      global_step)

    def epoch_end(self, entry: dict) -> None:
        """Put an epoch's validation metrics (a ``metrics.jsonl`` entry's ``val``) into TensorBoard."""
        val = entry.get("val")
        if val and self.context.is_main:
            self._scalars(scalar_tags("val", val, [k for k in val if k != "samples"]), entry["global_step"])

    def _scalars(self, tags: list[tuple[str, float]], step: int) -> None:
        if self.writer is not None:
            for tag, value in tags:
                self.writer.add_scalar(tag, value, step)
            self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file (a later record would open a new one)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
