"""The training loop: one process or one rank of a torchrun job.

Per epoch: stream the rank's share of every global batch (``trainer.data.rank_plan``), forward
under mixed precision, the scheme's loss (``trainer.losses.make_criterion``, + semantic KD),
accumulate gradients over ``--accum-steps`` micro-batches, AdamW + one-cycle step
(:meth:`Trainer.train_step`); checkpoint every ``--checkpoint-every`` steps; at the end of the
epoch validate (``trainer.evaluate``), append the epoch's metrics to ``metrics.jsonl``, redraw the
plots and checkpoint (``trainer.checkpoint``).

Semantic runs keep the classifier's rows in level order (``LevelLayout.head_order``) while they
train, so the semantic loss (and KD) read the logits without reordering them; validation and the
exported weights see the class order.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from hierarchy.atomic import atomic_write_bytes
from pipeline.dataset_format import TREE_FILE, read_build_parameters
from trainer import checkpoint as ckpt
from trainer.config import RESUME_KEYS, ConfigError, TrainConfig
from trainer.data import TrainChunks, make_loader, rank_batches, rank_plan, read_split
from trainer.distributed import (DistContext, all_gather_objects, all_reduce_sum, barrier,
                                 init_distributed, shutdown)
from trainer.evaluate import evaluate
from trainer.levels import LevelLayout
from trainer.losses import SemanticKDLoss, make_criterion
from trainer.model import build_model, build_teacher, make_optimizer
from trainer.plots import write_plots
from trainer.schedule import one_cycle_scheduler
from trainer.transforms import SampleTransform

METRICS_FILE = "metrics.jsonl"


def run_training(config: TrainConfig) -> int:
    """Train as described by ``config``; returns the process exit code."""
    context = init_distributed(config.device)
    try:
        Trainer(config, context).fit()
    finally:
        shutdown()
    return 0


def stored_images(dataset_dir: str | Path) -> dict:
    """How the dataset's images were stored (``stats.json`` → parameters; the pipeline's
    defaults when the file is absent): what ``predict`` must make of a new image."""
    params = read_build_parameters(dataset_dir)
    return {"image_size": int(params.get("image_size", 224)), "jpeg_quality": int(params.get("jpeg_quality", 95))}


def run_files(run_dir: Path) -> list[Path]:
    """The files a run writes that ``run_dir`` already holds (a previous run's)."""
    if not run_dir.is_dir():
        return []
    names = {ckpt.CHECKPOINT, METRICS_FILE, ckpt.EXPORT_WEIGHTS, ckpt.EXPORT_META, ckpt.EXPORT_TREE}
    return sorted(p for p in run_dir.iterdir() if p.is_file() and (p.name in names or p.suffix == ".png"))


def load_tree(dataset_dir: str | Path):
    from hierarchy import SemanticTree

    path = Path(dataset_dir) / TREE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --data must be a dataset built by the pipeline")
    return SemanticTree.load(path)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where the GPU supports it, else fp16; None (off) on CPU."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device")
    return torch.bfloat16 if mode == "bf16" else torch.float16


class RunningSums:
    """Per-rank sums of the training losses of the current epoch (device tensors, no syncs)."""

    def __init__(self, num_levels: int, device: torch.device):
        self.values = torch.zeros(2 + 2 * num_levels, dtype=torch.float64, device=device)
        self.num_levels = num_levels

    def add(self, loss, level_losses=None, confidence=None) -> None:
        L = self.num_levels
        self.values[0] += loss.detach().double()
        self.values[1] += 1
        if level_losses is not None:
            self.values[2:2 + L] += level_losses.double()
        if confidence is not None:
            self.values[2 + L:] += confidence.double()

    def reduced(self) -> dict:
        """Means over all ranks' micro-batches (a collective: call on every rank)."""
        total = all_reduce_sum(self.values.clone()).cpu()
        count, L = max(float(total[1]), 1.0), self.num_levels
        return {"loss": round(float(total[0]) / count, 6),
                "level_loss": [round(float(x) / count, 6) for x in total[2:2 + L]],
                "teacher_confidence": [round(float(x) / count, 6) for x in total[2 + L:]]}

    def mean_loss(self) -> float:
        return float(self.values[0] / self.values[1].clamp(min=1))


class Trainer:
    """Holds the model, optimisation state and data plan of one run on one rank."""

    def __init__(self, config: TrainConfig, context: DistContext):
        self.config, self.context = config, context
        self.device = context.device
        self.run_dir = Path(config.output)
        previous = run_files(self.run_dir)
        if previous and not config.resume:
            if not config.overwrite:
                raise ConfigError(
                    f"{self.run_dir} already holds a run ({', '.join(p.name for p in previous)}): "
                    "--resume continues it, --overwrite deletes it and starts over, or choose another --output")
            if context.is_main:
                for path in previous:
                    path.unlink(missing_ok=True)
        if context.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
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
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"the train split holds {self.train_split.num_samples} samples: fewer than one "
                f"optimizer step of {self.plan.global_batch * config.accum_steps} samples")
        self.micro_per_epoch = self.steps_per_epoch * config.accum_steps

        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.amp_dtype = resolve_amp(config.amp, self.device)
        self.channels_last = (config.channels_last == "on"
                              or (config.channels_last == "auto" and self.device.type == "cuda"))
        self.level_head = config.scheme == "semantic"
        # a semantic model's head keeps its rows in level order (head_keys: the tensors moved)
        self.model, self.head_keys = build_model(config, self.layout, self.device, self.channels_last,
                                                 context.distributed, self._log)
        self.criterion = make_criterion(config, self.layout).to(self.device)
        self.teacher = build_teacher(config, self.layout, self.device, self.channels_last)
        self.kd_loss = (SemanticKDLoss(self.layout, top_fraction=config.kd_top_fraction, logits_order="level")
                        .to(self.device) if self.teacher is not None else None)
        self.optimizer = make_optimizer(self.model, config, self.device)
        self.scheduler = one_cycle_scheduler(
            self.optimizer, config.epochs * self.steps_per_epoch, config.pct_start,
            config.div_factor, config.final_div_factor)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ddp_model = self.model
        if context.distributed:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        # the training forward (compiled on request); weights, checkpoints and validation use self.model
        self.train_model = torch.compile(self.ddp_model) if config.compile else self.ddp_model

        self.epoch, self.step, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self.running = RunningSums(self.layout.num_levels, self.device)
        if config.resume:
            self._resume()

    # ----------------------------------------------------------------------------- setup
    def _log(self, message: str) -> None:
        if self.context.is_main:
            tqdm.write(message)

    # ------------------------------------------------------------------- checkpointing
    def _state(self) -> dict:
        per_rank = all_gather_objects({"rng": ckpt.rng_state(),
                                       "running": self.running.values.cpu()})
        return {
            "format": ckpt.CHECKPOINT_FORMAT,
            "config": asdict(self.config),
            "data_lanes": self.plan.num_lanes,
            "world_size": self.context.world_size,
            "model": self.model.state_dict(),  # as trained: a semantic head in level order ...
            "head_rows": ckpt.head_rows(self.head_keys, self.layout.head_order),  # ... which says so
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "step": self.step, "global_step": self.global_step,
            "history": self.history,
            "per_rank": per_rank,
        }

    def save(self) -> None:
        state = self._state()  # collective: every rank takes part
        if self.context.is_main:
            ckpt.save_checkpoint(self.run_dir, state)
        barrier()

    def _resume(self) -> None:
        state = ckpt.load_checkpoint(self.run_dir)
        if state is None:
            self._log(f"--resume: no checkpoint in {self.run_dir}, starting from scratch")
            return
        saved = state["config"]
        changed = [k for k in RESUME_KEYS if saved.get(k) != getattr(self.config, k)]
        if state["data_lanes"] != self.plan.num_lanes:
            changed.append(f"data_lanes ({state['data_lanes']} -> {self.plan.num_lanes}; pass "
                           f"--data-lanes {state['data_lanes']} to keep the data order)")
        if changed:
            raise ConfigError(f"cannot resume {self.run_dir}: settings differ from the checkpoint: "
                              + ", ".join(changed))
        self.model.load_state_dict(state["model"])  # stored as trained: no reordering
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.global_step = state["epoch"], state["step"], state["global_step"]
        self.history = state["history"]
        if state["world_size"] == self.context.world_size:
            mine = state["per_rank"][self.context.rank]
            ckpt.restore_rng_state(mine["rng"])
            self.running.values.copy_(mine["running"])
        else:
            self._log("--resume with a different number of ranks: data order is kept, RNG "
                      "streams (dropout) and the epoch's running loss restart")
            if self.context.is_main:
                self.running.values.copy_(sum(r["running"] for r in state["per_rank"]))
        self._log(f"resumed from epoch {self.epoch + 1}, step {self.step} "
                  f"(global step {self.global_step})")

    # ------------------------------------------------------------------------ training
    def fit(self) -> None:
        config = self.config
        if self.context.is_main:
            ckpt.write_model_card(self.run_dir, Path(config.data) / TREE_FILE, self._model_card())
        self._log(f"{config.model} / {config.scheme}: {self.layout.num_classes} classes, "
                  f"{self.layout.num_levels} softmax levels, {self.train_split.num_samples} train "
                  f"samples, {self.steps_per_epoch} steps/epoch of "
                  f"{self.plan.global_batch * config.accum_steps} samples, "
                  f"{self.context.world_size} rank(s), device {self.device}, "
                  f"amp {self.amp_dtype or 'off'}, channels-last {'on' if self.channels_last else 'off'}, "
                  f"fused optimizer {'on' if self.optimizer.defaults.get('fused') else 'off'}, "
                  f"compile {'on' if config.compile else 'off'}")
        while self.epoch < config.epochs:
            if not self._train_epoch():
                self._log(f"stopped after {self.global_step} steps (--stop-after-steps); "
                          f"continue with --resume")
                return
            entry = {"epoch": self.epoch + 1, "global_step": self.global_step,
                     "lr": round(self.scheduler.get_last_lr()[0], 10),
                     "train": self.running.reduced()}
            if config.scheme != "semantic":
                del entry["train"]["level_loss"]
            if not self.teacher:
                del entry["train"]["teacher_confidence"]
            if (self.epoch + 1) % config.val_every == 0 or self.epoch + 1 == config.epochs:
                entry["val"] = evaluate(self.model, self.val_split, self.layout, config, self.context,
                                        self._prepare, self._autocast, self.level_head)
            self.history.append(entry)
            self.epoch, self.step = self.epoch + 1, 0
            self.running = RunningSums(self.layout.num_levels, self.device)
            self._write_epoch_outputs(entry)
            self.save()
        if self.context.is_main:
            path = ckpt.export_weights(self.run_dir, ckpt.class_order(
                self.model.state_dict(), ckpt.head_rows(self.head_keys, self.layout.head_order)))
            plots = ", ".join(p.name for p in sorted(self.run_dir.glob("*.png")))
            self._log(f"outputs in {self.run_dir}:\n"
                      f"  weights    {path} (plain timm state_dict; semantic_tree.json beside it)\n"
                      f"  checkpoint {self.run_dir / ckpt.CHECKPOINT} (continue with --resume)\n"
                      f"  metrics    {self.run_dir / METRICS_FILE}\n"
                      f"  plots      {plots}")

    def _model_card(self) -> dict:
        config = self.config
        return {"model": config.model, "num_classes": self.layout.num_classes,
                "input_size": config.input_size, "scheme": config.scheme,
                "weights": ckpt.EXPORT_WEIGHTS, "tree": ckpt.EXPORT_TREE, **stored_images(config.data)}

    def _train_loader(self):
        config = self.config
        transform = SampleTransform(config.input_size, config.randaugment or None, config.cutout)
        chunks = TrainChunks(self.train_split, self.plan, self.rank_lanes, self.epoch,
                             self.step * config.accum_steps, self.micro_per_epoch, transform,
                             self.layout.num_classes)
        loader = make_loader(chunks, config.workers, pin_memory=self.device.type == "cuda")
        return rank_batches(loader, len(self.rank_lanes), self.device)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` -> float in [0, 1] (paper B.1: no mean/std normalization)."""
        images = images.float().div_(255)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return images.contiguous(memory_format=fmt)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _train_epoch(self) -> bool:
        """Train the rest of the current epoch; False when --stop-after-steps ended the run."""
        config, accum = self.config, self.config.accum_steps
        self.ddp_model.train()
        first_micro = self.step * accum
        bar = tqdm(total=self.steps_per_epoch, initial=self.step, desc=f"epoch {self.epoch + 1}",
                   disable=not (self.context.is_main and config.progress), leave=False)
        started, seen = time.perf_counter(), 0
        for micro, (images, labels) in enumerate(self._train_loader(), start=first_micro):
            last_micro = (micro + 1) % accum == 0
            self.train_step(images, labels, last_micro)
            seen += labels.shape[0]
            if not last_micro:
                continue
            self.step, self.global_step = self.step + 1, self.global_step + 1
            bar.update(1)
            if self.step % 10 == 0 or self.step == self.steps_per_epoch:
                bar.set_postfix(loss=f"{self.running.mean_loss():.4f}",
                                lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if config.stop_after_steps and self.global_step >= config.stop_after_steps:
                bar.close()
                self.save()
                return False
            if (config.checkpoint_every and self.global_step % config.checkpoint_every == 0
                    and self.step < self.steps_per_epoch):
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
            loss, level_losses, confidence = self._forward_loss(self._prepare(images), labels)
            self.scaler.scale(loss / self.config.accum_steps).backward()
        self.running.add(loss, level_losses, confidence)
        if last_micro:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()

    def _forward_loss(self, images, labels):
        with self._autocast():
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

    def _write_epoch_outputs(self, entry: dict) -> None:
        if not self.context.is_main:
            return
        lines = "".join(json_line(e) for e in self.history)
        atomic_write_bytes(self.run_dir / METRICS_FILE, lines.encode())
        write_plots(self.history, self.tree, self.run_dir)
        val = entry.get("val")
        summary = f"epoch {entry['epoch']}/{self.config.epochs}: loss {entry['train']['loss']:.4f}"
        if val:
            summary += (f" | val semantic top-1 {val['semantic_top1']:.2f}% "
                        f"(class-weighted {val['semantic_top1_class_weighted']:.2f}%), "
                        f"top-1 {val['top1']:.2f}%, top-5 {val['top5']:.2f}%, "
                        f"mAP {val['map_macro']:.2f}%")
        self._log(summary)


def json_line(obj) -> str:
    return json.dumps(obj, sort_keys=True) + "\n"
