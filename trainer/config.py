"""Settings of a training run: one dataclass, whose fields are also the command-line flags.

Defaults are the recipe of the released weights (paper B.1, 3.1-3.3; the released
``train_semantic_softmax.py`` where the paper is vague): TResNet-M, semantic softmax, 80 epochs,
batch 64 per GPU on 8 GPUs (global batch 512), ``torch.optim.Adam`` with L2 weight decay 1e-4
coupled into the gradient on weights only (what the paper calls "true weight decay"; none on
biases and 1-d parameters), lr 3e-4 with a per-step one-cycle schedule (10 % warm-up, div 20),
label smoothing 0.2, Cutout 0.5 then RandAugment, inputs in [0, 1], input 224.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from hierarchy.command_line import flag


class ConfigError(ValueError):
    """A setting (or a file a setting names) cannot be used."""


def _flag(help: str, **extra) -> dict:
    return {"help": help, **extra}


@dataclass
class TrainConfig:
    data: str = field(default=None, metadata=_flag(
        "dataset directory written by the pipeline (_info.json, shards, semantic_tree.json)",
        required=True))
    output: str = field(default=None, metadata=_flag(
        "run directory: checkpoint.pt, metrics.jsonl, plots, model.json, semantic_tree.json and "
        "at the end a timm model folder (model.safetensors, config.json, labels.txt)", required=True))
    model: str = field(default="tresnet_m", metadata=_flag(
        "any timm model name (head sized to the tree's classes)"))
    pretrained: bool = field(default=False, metadata=_flag(
        "start from timm's own pretrained weights for --model (local Hugging Face cache, else the "
        "hub), loaded by timm's loader for that architecture; the classifier is skipped"))
    init_checkpoint: str | None = field(default=None, metadata=_flag(
        "start from these weights instead: a weights file (.safetensors, .pth, timm's *.pth.tar "
        "training checkpoint) or a trainer run directory; loaded as --pretrained, classifier skipped"))
    init_partial: bool = field(default=False, metadata=_flag(
        "accept initial weights that fill only part of the model's non-classifier tensors "
        "(without it such weights are refused)"))
    scheme: str = field(default="semantic", metadata=_flag(
        "semantic: one softmax per hierarchy level (paper 3.3); single: one softmax over all "
        "classes (3.1); multi: sigmoids over class + ancestors with ASL (3.2)",
        choices=["semantic", "single", "multi"]))
    epochs: int = field(default=80, metadata=_flag("training epochs"))
    batch_size: int = field(default=64, metadata=_flag(
        "samples per rank per micro-batch (global batch = batch size x ranks x accum steps)"))
    accum_steps: int = field(default=1, metadata=_flag(
        "gradient accumulation: micro-batches per optimizer step"))
    lr: float | None = field(default=None, metadata=_flag(
        "peak learning rate of the one-cycle schedule (default: --lr-base scaled from "
        "--lr-base-size to the run's global batch by --lr-base-scale, as timm's train.py)"))
    lr_base: float = field(default=3e-4, metadata=_flag(
        "the recipe's peak learning rate at a global batch of --lr-base-size"))
    lr_base_size: int = field(default=512, metadata=_flag(
        "global batch that --lr-base is meant for (the recipe: 8 GPUs x 64)"))
    lr_base_scale: str = field(default="auto", metadata=_flag(
        "how the default lr follows the global batch: sqrt or linear in global batch / "
        "--lr-base-size; auto = sqrt for Adam-family optimizers (timm's rule); none keeps --lr-base",
        choices=["auto", "sqrt", "linear", "none"]))
    weight_decay: float = field(default=1e-4, metadata=_flag(
        "weight decay on weights (none on biases and 1-d parameters); with adam an L2 term "
        "coupled into the gradient (the released code), with adamw a decoupled shrink of "
        "lr x decay per step"))
    optimizer: str = field(default="adam", metadata=_flag(
        "adam: torch.optim.Adam with coupled L2 decay, as the released code; adamw: decoupled "
        "decay (each weight shrinks by lr x weight decay per step)", choices=["adam", "adamw"]))
    pct_start: float = field(default=0.1, metadata=_flag("one-cycle warm-up fraction"))
    div_factor: float = field(default=20.0, metadata=_flag(
        "one-cycle start lr = lr / div_factor (released code: 20)"))
    final_div_factor: float = field(default=1e4, metadata=_flag(
        "one-cycle final lr = start lr / final_div_factor"))
    label_smoothing: float = field(default=0.2, metadata=_flag(
        "label smoothing of the semantic and single-label softmaxes (paper 3.1: 0.2)"))
    asl_gamma_neg: float = field(default=4.0, metadata=_flag("ASL focusing of negatives (multi)"))
    asl_gamma_pos: float = field(default=0.0, metadata=_flag("ASL focusing of positives (multi)"))
    asl_clip: float = field(default=0.05, metadata=_flag("ASL probability margin of negatives"))
    teacher: str | None = field(default=None, metadata=_flag(
        "semantic KD: timm model name of the teacher (needs --teacher-checkpoint; "
        "--scheme semantic)"))
    teacher_checkpoint: str | None = field(default=None, metadata=_flag(
        "teacher weights: a trainer run directory or a weights file (.safetensors, .pth, timm's .pth.tar)"))
    kd_weight: float = field(default=1.0, metadata=_flag(
        "factor of the semantic KD term added to the semantic loss"))
    kd_top_fraction: float = field(default=0.05, metadata=_flag(
        "teacher confidence where the label has no such level: sum of the top fraction of the "
        "level's probabilities (appendix F: 5 %%)"))
    input_size: int = field(default=224, metadata=_flag(
        "network input side; the stored 224x224 images are resized on the fly if different "
        "(e.g. 64 for CPU demos)"))
    randaugment: str = field(default="rand-m9-mstd101", metadata=_flag(
        "timm RandAugment config for training images, or 'none'; the default (two of 15 ops per "
        "image, each with probability 0.5, magnitude uniform in [0, 9] of 10) is timm's form of "
        "the released code's policy (randaugment 1.0.2: two of 15 ops, p 0.5, magnitude 1-9 of 10)"))
    cutout: float = field(default=0.5, metadata=_flag(
        "Cutout square side as a fraction of the image (paper: 0.5); 0 disables"))
    shuffle_buffer: int = field(default=1000, metadata=_flag(
        "samples in each data lane's shuffle buffer"))
    data_lanes: int | None = field(default=None, metadata=_flag(
        "number of data lanes the train stream is cut into (default: ranks x max(workers, 1)); "
        "the sample order depends on it and not on the number of ranks, so keep it fixed to "
        "compare or resume runs of different layouts"))
    workers: int = field(default=8, metadata=_flag("data-loader worker processes per rank"))
    device: str = field(default="auto", metadata=_flag(
        "auto: CUDA when available", choices=["auto", "cpu", "cuda"]))
    amp: str = field(default="auto", metadata=_flag(
        "mixed precision: auto = bf16 on GPUs that support it, else fp16 with grad scaling; "
        "off on CPU", choices=["auto", "bf16", "fp16", "off"]))
    channels_last: str = field(default="auto", metadata=_flag(
        "channels-last memory format (auto: on GPU)", choices=["auto", "on", "off"]))
    compile: bool = field(default=False, metadata=_flag(
        "torch.compile the model for training (inductor): the first steps compile for a minute or "
        "more, later steps may run faster; measure with benchmarks/train_throughput.py"))
    fused_optimizer: str = field(default="auto", metadata=_flag(
        "fused Adam/AdamW kernels (one kernel for all parameters; auto: on GPU)",
        choices=["auto", "on", "off"]))
    sync_bn: bool = field(default=False, metadata=_flag(
        "convert BatchNorm to SyncBatchNorm when training on several ranks"))
    seed: int = field(default=0, metadata=_flag(
        "seed of model init, data order and augmentation (shared by all ranks)"))
    steps_per_epoch: int | None = field(default=None, metadata=_flag(
        "cap on optimizer steps per epoch (quick runs); default: a full pass"))
    stop_after_steps: int | None = field(default=None, metadata=_flag(
        "save a checkpoint and exit after this many optimizer steps in total (resume later "
        "with --resume)"))
    checkpoint_minutes: float = field(default=30.0, metadata=_flag(
        "also checkpoint about every N minutes of training (0: only at epoch ends)"))
    checkpoint_every: int = field(default=0, metadata=_flag(
        "also checkpoint every N optimizer steps (0: off; the cadence in minutes still applies)"))
    log_every: int = field(default=50, metadata=_flag(
        "record per-step scalars (losses, lr, img/s, data wait, memory) every N optimizer steps "
        "to RUN/steps.jsonl and TensorBoard"))
    tensorboard: bool = field(default=True, metadata=_flag(
        "also write the per-step and per-epoch scalars as TensorBoard event files (RUN/tensorboard)"))
    resume: bool = field(default=False, metadata=_flag(
        "continue from OUTPUT/checkpoint.pt exactly where it stopped (fresh start if none)"))
    overwrite: bool = field(default=False, metadata=_flag(
        "start over in an OUTPUT that already holds a run, deleting its checkpoint, metrics, "
        "plots and model (without it, such an OUTPUT needs --resume)"))
    val_batch_size: int | None = field(default=None, metadata=_flag(
        "validation batch size per rank (default: --batch-size)"))
    val_every: int = field(default=1, metadata=_flag(
        "validate every N epochs (and always after the last)"))
    progress: bool = field(default=True, metadata=_flag("tqdm progress bars on rank 0"))

    def __post_init__(self):
        for name in ("epochs", "batch_size", "accum_steps", "input_size", "shuffle_buffer",
                     "val_every", "lr_base_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{flag(name)} must be >= 1")
        for name in ("stop_after_steps", "steps_per_epoch", "data_lanes", "val_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{flag(name)} must be >= 1 (leave it out for the default)")
        for name in ("lr", "lr_base", "div_factor", "final_div_factor"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(f"{flag(name)} must be > 0")
        for name in ("weight_decay", "kd_weight", "workers", "checkpoint_minutes", "checkpoint_every",
                     "asl_gamma_neg", "asl_gamma_pos", "asl_clip"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{flag(name)} must be >= 0")
        for name, bounds in (("pct_start", "(0, 1]"), ("kd_top_fraction", "(0, 1]"),
                             ("label_smoothing", "[0, 1)"), ("cutout", "[0, 1]")):
            value = getattr(self, name)
            if not (0 <= value <= 1) or (value == 0 and bounds[0] == "(") or (value == 1 and bounds[-1] == ")"):
                raise ConfigError(f"{flag(name)} {value} is outside {bounds}")
        if (self.teacher is None) != (self.teacher_checkpoint is None):
            raise ConfigError("--teacher and --teacher-checkpoint go together")
        if self.teacher and self.scheme != "semantic":
            raise ConfigError("semantic KD (--teacher) needs --scheme semantic")
        if self.pretrained and self.init_checkpoint:
            raise ConfigError("--pretrained (timm's weights) and --init-checkpoint (a file or run) "
                              "both give initial weights: give one")
        if self.resume and self.overwrite:
            raise ConfigError("--resume continues the run in --output, --overwrite deletes it: give one")
        if self.randaugment.lower() == "none":
            self.randaugment = ""
        if self.randaugment:
            check_randaugment(self.randaugment)

    def global_batch(self, world_size: int) -> int:
        """Samples per optimizer step over all ranks: batch size x ranks x accumulation steps."""
        return self.batch_size * world_size * self.accum_steps

    def peak_lr(self, world_size: int) -> float:
        """``--lr``, or ``--lr-base`` scaled to the run's global batch (timm's train.py rule:
        ratio = global batch / ``--lr-base-size``, its square root for Adam-family optimizers)."""
        if self.lr is not None:
            return self.lr
        return self.lr_base * lr_batch_factor(self.global_batch(world_size), self.lr_base_size,
                                              self.lr_base_scale, self.optimizer)


def check_randaugment(config: str) -> None:
    """Refuse (:class:`ConfigError`) a RandAugment string timm cannot build (``trainer.transforms``
    builds it)."""
    from timm.data.auto_augment import rand_augment_transform

    try:
        rand_augment_transform(config, {"translate_const": 100, "img_mean": (124, 116, 104)})
    except Exception as exc:  # timm asserts, or fails to parse a number
        raise ConfigError(f"--randaugment {config!r} is not a timm RandAugment config such as "
                          f"'rand-m9-mstd101' ({str(exc) or 'unknown format'}); 'none' turns it off") from None


def lr_scale_rule(scale: str, optimizer: str) -> str:
    """``--lr-base-scale`` resolved: ``auto`` is sqrt for Adam-family optimizers (timm's rule)."""
    if scale == "auto":
        return "sqrt" if optimizer.startswith("adam") else "linear"
    return scale


def lr_batch_factor(global_batch: int, base_size: int, scale: str, optimizer: str) -> float:
    """How much the recipe's lr is multiplied by at ``global_batch`` (1 at ``base_size``)."""
    ratio = global_batch / base_size
    return {"sqrt": ratio ** 0.5, "linear": ratio, "none": 1.0}[lr_scale_rule(scale, optimizer)]


# Settings that change what a run computes: a resumed run must match them (``--resume`` names
# the ones that differ). The checkpoint also records derived values that must match: the global
# batch, the peak lr, the data lanes, the mixed precision and the dataset's identity. Settings
# left out (workers, device, progress, checkpoint and logging cadence, validation batch) only
# change how a run is carried out, and the new command's values are taken.
RESUME_KEYS = ("model", "scheme", "epochs", "weight_decay", "optimizer", "pct_start", "div_factor",
               "final_div_factor", "label_smoothing", "asl_gamma_neg", "asl_gamma_pos", "asl_clip",
               "teacher", "kd_weight", "kd_top_fraction", "seed", "steps_per_epoch", "input_size",
               "randaugment", "cutout", "shuffle_buffer", "sync_bn")


def config_fields():
    """The dataclass fields, in declaration order (used to build the argument parser)."""
    return fields(TrainConfig)
