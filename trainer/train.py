"""The training loop: one process or one rank of a torchrun job.

Per epoch: stream the rank's share of every global batch (``trainer.data.rank_plan``), forward
under mixed precision (``trainer.precision``), the scheme's loss (``trainer.losses``, + semantic
KD), accumulate gradients over ``--accum-steps`` micro-batches, Adam/AdamW + one-cycle step
(:meth:`Trainer.train_step`); checkpoint on the clock (``--checkpoint-minutes``,
``--checkpoint-every``); at the end of the
epoch validate (``trainer.evaluate``), write ``metrics.jsonl`` and the plots
(``trainer.report``) and checkpoint (``trainer.checkpoint``).

Semantic runs keep the classifier's rows in level order (``LevelLayout.head_order``) while they
train, so the semantic loss (and KD) read the logits without reordering them; validation and the
exported weights see the class order.
"""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from pipeline.dataset_format import TREE_FILE
from trainer import checkpoint as ckpt
from trainer import export
from trainer import report
from trainer.config import RESUME_KEYS, ConfigError, TrainConfig
from trainer.data import TrainChunks, dataset_identity, load_tree, make_loader, rank_batches, rank_plan, read_split
from trainer.distributed import DistContext, init_distributed, shutdown
from trainer.evaluate import evaluate
from trainer.head_order import class_order, head_rows
from trainer.levels import LevelLayout
from trainer.losses import SemanticKDLoss, make_criterion
from trainer.metrics import RunningSums
from trainer.model import build_model, build_teacher, make_optimizer
from trainer.precision import Precision
from trainer.run_dir import check_run_dir, prepare_run_dir
from trainer.schedule import one_cycle_scheduler
from trainer.steplog import StepLog
from trainer.transforms import SampleTransform


def run_identity(config: TrainConfig, global_batch: int, lr: float, data_lanes: int, precision: Precision) -> dict:
    """Everything that changes what a run computes (``--resume`` refuses a checkpoint whose
    identity differs): the settings of ``RESUME_KEYS``, the global batch, the peak lr, the data
    lanes, the mixed precision, the dataset's content and the teacher's weights file."""
    identity = {key: getattr(config, key) for key in RESUME_KEYS}
    identity.update(global_batch=global_batch, peak_lr=lr, data_lanes=data_lanes,
                    amp=str(precision.amp_dtype).removeprefix("torch.") if precision.amp_dtype else "off",
                    dataset=dataset_identity(config.data),
                    teacher_checkpoint=str(Path(config.teacher_checkpoint).resolve()) if config.teacher else None)
    return identity


def run_training(config: TrainConfig) -> int:
    """Train as described by ``config``; returns the process exit code."""
    context = init_distributed(config.device)
    try:
        with Trainer(config, context) as trainer:
            trainer.fit()
    finally:
        shutdown()
    return 0


class Trainer:
    """The model, optimisation state, data plan and position of one run on one rank."""

    def __init__(self, config: TrainConfig, context: DistContext):
        self.config, self.context = config, context
        self.device = context.device
        self.run_dir = Path(config.output)
        # checks first, and nothing written until all pass: a refused command leaves no trace
        self.replaced = check_run_dir(self.run_dir, config.resume, config.overwrite)
        resumed = ckpt.load_checkpoint(self.run_dir) if config.resume else None
        if resumed is not None and config.data_lanes is None:  # the order depends on the lanes only
            config = self.config = replace(config, data_lanes=resumed["data_lanes"])
        torch.manual_seed(config.seed)  # the same initial weights on every rank

        self.train_split = read_split(config.data, "train")
        self.val_split = read_split(config.data, "validation")
        self.tree = load_tree(config.data)
        self.layout = LevelLayout.from_tree(self.tree)
        self.plan, self.rank_lanes = rank_plan(self.train_split, config, context.world_size, context.rank)
        micro_batches = self.plan.batches_per_epoch
        if config.steps_per_epoch:
            micro_batches = min(micro_batches, config.steps_per_epoch * config.accum_steps)
        self.steps_per_epoch = micro_batches // config.accum_steps
        self.global_batch = config.global_batch(context.world_size)
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"the train split holds {self.train_split.num_samples} samples: fewer than one "
                f"optimizer step of {self.global_batch} samples")
        self.micro_per_epoch = self.steps_per_epoch * config.accum_steps
        self.lr = config.peak_lr(context.world_size)

        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.precision = Precision.of(config, self.device)
        self.level_head = config.scheme == "semantic"
        # a semantic model's head keeps its rows in level order (head_keys: the tensors moved)
        self.model, self.head_keys = build_model(config, self.layout, self.device, self.precision.channels_last,
                                                 context.distributed, self._log)
        self.criterion = make_criterion(config, self.layout).to(self.device)
        self.teacher = build_teacher(config, self.layout, self.device, self.precision.channels_last)
        self.kd_loss = (SemanticKDLoss(self.layout, top_fraction=config.kd_top_fraction, logits_order="level")
                        .to(self.device) if self.teacher is not None else None)
        self.optimizer = make_optimizer(self.model, config, self.lr, self.device)
        self.scheduler = one_cycle_scheduler(
            self.optimizer, config.epochs * self.steps_per_epoch, config.pct_start,
            config.div_factor, config.final_div_factor)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.amp_dtype == torch.float16)
        self.ddp_model = self.model
        if context.distributed:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        # the training forward (compiled on request); weights, checkpoints and validation use self.model
        self.train_model = torch.compile(self.ddp_model) if config.compile else self.ddp_model

        self.identity = run_identity(config, self.global_batch, self.lr, self.plan.num_lanes, self.precision)
        self.epoch, self.step, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self.running = RunningSums(self.layout.num_levels, self.device)
        self.checkpoint_clock = ckpt.CheckpointClock(config.checkpoint_minutes, config.checkpoint_every, context)
        if config.resume and resumed is None:
            self._log(f"--resume: no checkpoint in {self.run_dir}, starting from scratch")
        elif resumed is not None:
            ckpt.resume_training(resumed, self._stateful(), self.identity, context, self.running.values, self._log)
            self.epoch, self.step, self.global_step = resumed["epoch"], resumed["step"], resumed["global_step"]
            self.history = resumed["history"]

    def _log(self, message: str) -> None:
        if self.context.is_main:
            tqdm.write(message)

    def _stateful(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "scaler": self.scaler}

    def _head_rows(self) -> dict:
        return head_rows(self.head_keys, self.layout.head_order)

    def save(self) -> None:
        """Checkpoint the run (a collective: every rank calls it)."""
        meta = {"config": asdict(self.config), "identity": self.identity, "data_lanes": self.plan.num_lanes,
                "world_size": self.context.world_size, "head_rows": self._head_rows(),
                "epoch": self.epoch, "step": self.step, "global_step": self.global_step,
                "history": self.history}
        ckpt.save_training(self.run_dir, self._stateful(), meta, self.running.values, self.context.is_main)
        self.checkpoint_clock.restart()

    # ------------------------------------------------------------------------ training
    def fit(self) -> None:
        config = self.config
        if self.context.is_main:
            prepare_run_dir(self.run_dir, self.replaced)
            export.write_model_card(self.run_dir, Path(config.data) / TREE_FILE,
                                    report.model_card(config, self.layout.num_classes, self.global_batch, self.lr))
        self._log(self._describe())
        for line in report.recipe_lines(config, self.context.world_size, self.global_batch, self.lr,
                                        config.epochs * self.steps_per_epoch):
            self._log(line)
        while self.epoch < config.epochs:
            if not self._train_epoch():
                self._log(f"stopped after {self.global_step} steps (--stop-after-steps); continue with --resume")
                return
            entry = {"epoch": self.epoch + 1, "global_step": self.global_step,
                     "lr": round(self.scheduler.get_last_lr()[0], 10), "train": self.running.reduced()}
            if config.scheme != "semantic":
                del entry["train"]["level_loss"]
            if not self.teacher:
                del entry["train"]["teacher_confidence"]
            if (self.epoch + 1) % config.val_every == 0 or self.epoch + 1 == config.epochs:
                entry["val"] = evaluate(self.model, self.val_split, self.layout, config, self.context,
                                        self.precision, self.level_head)
            self.history.append(entry)
            self.steplog.epoch_end(entry)
            self.epoch, self.step = self.epoch + 1, 0
            self.running = RunningSums(self.layout.num_levels, self.device)
            if self.context.is_main:
                report.write_epoch_files(self.run_dir, self.history, self.tree)
            self._log(report.epoch_line(entry, config.epochs))
            self.save()
        if self.context.is_main:
            weights = export.export_model(self.run_dir, config.model,
                                          class_order(self.model.state_dict(), self._head_rows()),
                                          self.tree, config.input_size)
            self._log(report.outputs_lines(self.run_dir, weights))

    def _describe(self) -> str:
        config, precision = self.config, self.precision
        return (f"{config.model} / {config.scheme}: {self.layout.num_classes} classes, "
                f"{self.layout.num_levels} softmax levels, {self.train_split.num_samples} train "
                f"samples, {self.steps_per_epoch} steps/epoch of {self.global_batch} samples, "
                f"{self.context.world_size} rank(s), device {self.device}, "
                f"amp {precision.amp_dtype or 'off'}, channels-last {'on' if precision.channels_last else 'off'}, "
                f"fused optimizer {'on' if self.optimizer.defaults.get('fused') else 'off'}, "
                f"compile {'on' if config.compile else 'off'}")

    @functools.cached_property
    def steplog(self) -> StepLog:
        """The per-step records (``steps.jsonl``, TensorBoard); writes nothing before the first epoch."""
        return StepLog(self.run_dir, self.config, self.context, self.layout.num_levels, self.steps_per_epoch)

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.steplog.close()

    def _train_loader(self):
        config = self.config
        transform = SampleTransform(config.input_size, config.randaugment or None, config.cutout)
        chunks = TrainChunks(self.train_split, self.plan, self.rank_lanes, self.epoch,
                             self.step * config.accum_steps, self.micro_per_epoch, transform,
                             self.layout.num_classes)
        loader = make_loader(chunks, config.workers, pin_memory=self.device.type == "cuda")
        return rank_batches(loader, len(self.rank_lanes), self.device)

    def _train_epoch(self) -> bool:
        """Train the rest of the current epoch; False when --stop-after-steps ended the run."""
        config, accum = self.config, self.config.accum_steps
        self.ddp_model.train()
        bar = tqdm(total=self.steps_per_epoch, initial=self.step, desc=f"epoch {self.epoch + 1}",
                   disable=not (self.context.is_main and config.progress), leave=False)
        started, seen = time.perf_counter(), 0
        batches = self.steplog.epoch_batches(self._train_loader(), self.running, self.global_step)
        for micro, (images, labels) in enumerate(batches, start=self.step * accum):
            last_micro = (micro + 1) % accum == 0
            self.train_step(images, labels, last_micro)
            seen += labels.shape[0]
            if not last_micro:
                continue
            self.step, self.global_step = self.step + 1, self.global_step + 1
            bar.update(1)
            self.steplog.after_step(self.global_step, self.epoch, self.step, self.scheduler.get_last_lr()[0])
            if self.step % 10 == 0 or self.step == self.steps_per_epoch:
                bar.set_postfix(loss=f"{self.running.mean_loss():.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if config.stop_after_steps and self.global_step >= config.stop_after_steps:
                bar.close()
                self.save()
                return False
            if self.step < self.steps_per_epoch and self.checkpoint_clock.due(self.global_step):
                self.save()
        bar.close()
        elapsed = time.perf_counter() - started
        self._log(f"epoch {self.epoch + 1}: {seen * self.context.world_size / max(elapsed, 1e-9):.1f} "
                  f"img/s (train, all ranks)")
        return True

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, last_micro: bool = True) -> None:
        """One micro-batch on the device: forward, loss, backward; on the last micro-batch of an
        optimizer step also the step itself (scaler, optimizer, lr schedule)."""
        sync = (self.ddp_model.no_sync() if self.context.distributed and not last_micro
                else contextlib.nullcontext())
        with sync:
            loss, level_losses, confidence = self._forward_loss(self.precision.prepare(images), labels)
            self.scaler.scale(loss / self.config.accum_steps).backward()
        self.running.add(loss, level_losses, confidence)
        if last_micro:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()

    def _forward_loss(self, images, labels):
        with self.precision.autocast():
            logits = self.train_model(images)
            loss = self.criterion(logits, labels)
            confidence = None
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_logits = self.teacher(images)
                loss = loss + self.config.kd_weight * self.kd_loss(logits, teacher_logits, labels)
                confidence = self.kd_loss.last_confidence
        level_losses = getattr(self.criterion, "last_level_losses", None)
        return loss, level_losses, confidence
