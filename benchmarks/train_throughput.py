"""Training throughput: img/s of ``python -m trainer``'s own step, from memory and from the shards.

For each model and variant, with the trainer's real :class:`trainer.train.Trainer` (its model,
semantic softmax loss, optimizer, autocast, channels-last, ``--compile``), in steady state after
warm-up steps:

(a) *synthetic*: one real batch held on the device, stepped again and again — the model's
    ceiling (forward + semantic loss + backward + optimizer step);
(b) *loader*: the trainer's streaming loader (``--workers`` processes, the paper's RandAugment +
    Cutout) on shards the pipeline built from ``../shared/bench-photos`` — what a user gets.

It prints img/s per device, (b)/(a), and (a) against the paper's ~625 img/s per V100 (5,000 img/s
on 8 V100s, mixed precision); then the input pipeline's CPU cost: loader images per CPU second of
one process with the paper's augmentations and decode-only, and the loader workers one device
needs at (a)'s rate.

    python benchmarks/train_throughput.py --device cuda            # resnet50, tresnet_m, mobilenetv3_large_100
    python benchmarks/train_throughput.py --device cuda --variants bf16,bf16+compile --batch-size 128
    python benchmarks/train_throughput.py                          # CPU: a tiny configuration

On a CPU-only machine the default is a tiny configuration (``test_resnet`` at 64 px, a few steps)
that keeps the benchmark tested; its figures say nothing about GPUs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from loader import cpu_rate  # noqa: E402
from photo_archive import PHOTOS, write_archive  # noqa: E402

PAPER_IMG_S_PER_V100 = 625
CUDA_MODELS = ("resnet50", "tresnet_m", "mobilenetv3_large_100")
PAPER_AUGMENT = ("rand-m9-mstd101", 0.5)


def build_dataset(folder: Path, samples: int, source: str) -> Path:
    """Shards + tables made by the pipeline: from the bench photos (cycled under 10 real wnids)
    or, with ``source="demo"``, from the project's synthetic demo archive."""
    from pipeline import build_dataset as pipeline_build

    if source == "demo":
        from tools.demo_archive import make_archive

        archive = make_archive(folder / "demo.tar", seed=0).path
        params = dict(min_images=31, val_per_class=5)
    else:
        classes = 10
        per_class = max(60, math.ceil(samples / classes) + 10)
        archive = folder / "photos.tar"
        write_archive(archive, "tar", classes, per_class)
        params = dict(min_images=per_class, val_per_class=10)
    return pipeline_build(archive, folder / "dataset", workers=os.cpu_count() or 1, samples_per_shard=256,
                          **params)


def make_trainer(dataset: Path, run: Path, model: str, variant: str, args):
    from trainer.config import TrainConfig
    from trainer.distributed import DistContext
    from trainer.train import Trainer

    amp = "off" if args.device == "cpu" else variant.split("+")[0]
    config = TrainConfig(data=str(dataset), output=str(run), model=model, device=args.device,
                         input_size=args.input_size, batch_size=args.batch_size, epochs=1,
                         steps_per_epoch=args.warmup + args.steps, workers=args.workers, amp=amp,
                         compile="compile" in variant.split("+"), progress=False, overwrite=True,
                         randaugment=PAPER_AUGMENT[0], cutout=PAPER_AUGMENT[1])
    device = torch.device(args.device)
    return Trainer(config, DistContext(0, 1, 0, device))


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def synthetic_rate(trainer, args) -> float:
    """(a): one real batch kept on the device, stepped ``warmup + steps`` times."""
    images, labels = next(iter(trainer._train_loader()))
    for _ in range(args.warmup):
        trainer.train_step(images, labels)
    synchronize(args.device)
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step(images, labels)
    synchronize(args.device)
    return args.steps * labels.shape[0] / (time.perf_counter() - start)


def loader_rate(trainer, args) -> float:
    """(b): the trainer's streaming loader feeding the same step; the clock starts after warm-up."""
    seen, start = 0, None
    for step, (images, labels) in enumerate(trainer._train_loader()):
        if step == args.warmup:
            synchronize(args.device)
            start = time.perf_counter()
        trainer.train_step(images, labels)
        if start is not None:
            seen += labels.shape[0]
    synchronize(args.device)
    return seen / (time.perf_counter() - start)


def input_pipeline(dataset: Path, size: int, samples: int) -> dict[str, float]:
    """Loader images per CPU second of one process (= one worker): paper augmentations, decode only."""
    from trainer.data import TrainChunks, TrainPlan, load_tree, read_split
    from trainer.transforms import SampleTransform

    split, num_classes = read_split(dataset, "train"), load_tree(dataset).num_classes
    plan = TrainPlan(split.lengths, seed=0, num_lanes=1, chunk_size=32, shuffle_buffer=256)
    batches = max(1, min(plan.batches_per_epoch, samples // plan.chunk_size))
    rates = {}
    for name, transform in [("RandAugment + Cutout", SampleTransform(size, *PAPER_AUGMENT)),
                            ("decode only", SampleTransform(size))]:
        chunks = TrainChunks(split, plan, [0], 0, 0, batches, transform, num_classes)
        rates[name] = cpu_rate(lambda: [c for c in chunks], batches * plan.chunk_size, repeat=2)
    return rates


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--models", help=f"comma-separated timm names (cuda: {','.join(CUDA_MODELS)}; cpu: test_resnet)")
    parser.add_argument("--variants", help="comma-separated: bf16, fp16, off, each optionally +compile "
                                           "(cuda default: bf16,bf16+compile; cpu: off)")
    parser.add_argument("--batch-size", type=int, help="per device (cuda: 64, the paper's; cpu: 16)")
    parser.add_argument("--input-size", type=int, help="cuda: 224; cpu: 64")
    parser.add_argument("--steps", type=int, help="timed steps (cuda: 30; cpu: 3)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (cuda: 15, compile included; cpu: 2)")
    parser.add_argument("--workers", type=int, help="loader processes (default: cores - 1, at most 16)")
    parser.add_argument("--source", choices=["photos", "demo"], default="photos",
                        help="shards from ../shared/bench-photos, or from the synthetic demo archive")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    models = (args.models or (",".join(CUDA_MODELS) if cuda else "test_resnet")).split(",")
    variants = (args.variants or ("bf16,bf16+compile" if cuda else "off")).split(",")
    args.batch_size = args.batch_size or (64 if cuda else 16)
    args.input_size = args.input_size or (224 if cuda else 64)
    args.steps = args.steps or (30 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (15 if cuda else 2)
    args.workers = args.workers if args.workers is not None else max(1, min(16, (os.cpu_count() or 2) - 1))
    if args.source == "photos" and not any(PHOTOS.glob("*.jpg")):
        parser.error(f"no photos in {PHOTOS}: use --source demo")
    torch.backends.cudnn.benchmark = True

    results = {"device": torch.cuda.get_device_name() if cuda else "cpu", "batch_size": args.batch_size,
               "input_size": args.input_size, "workers": args.workers, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        samples = (args.warmup + args.steps + 1) * args.batch_size
        dataset = build_dataset(tmp, samples, args.source)
        print(f"{results['device']}: batch {args.batch_size} at {args.input_size} px, {args.warmup} warm-up + "
              f"{args.steps} timed steps, {args.workers} loader workers, RandAugment + Cutout")
        print(f"  {'model':<24} {'variant':<14} {'(a) synthetic':>14} {'(b) loader':>11} {'(b)/(a)':>8} "
              f"{'(a)/625':>8}")
        for model in models:
            for variant in variants:
                trainer = make_trainer(dataset, tmp / "run", model, variant, args)
                synthetic = synthetic_rate(trainer, args)
                streamed = loader_rate(trainer, args)
                run = dict(model=model, variant=variant, synthetic_img_s=synthetic, loader_img_s=streamed,
                           loader_over_synthetic=streamed / synthetic,
                           synthetic_over_paper=synthetic / PAPER_IMG_S_PER_V100)
                results["runs"].append(run)
                print(f"  {model:<24} {variant:<14} {synthetic:>10.1f} img/s {streamed:>7.1f} img/s "
                      f"{run['loader_over_synthetic']:>7.2f}× {run['synthetic_over_paper']:>7.2f}×")
                del trainer
                if cuda:
                    torch.cuda.empty_cache()
        rates = input_pipeline(dataset, args.input_size, samples=max(256, 8 * args.batch_size))
    results["input_pipeline_img_s_per_core"] = rates
    fastest = max(r["synthetic_img_s"] for r in results["runs"])
    per_core = rates["RandAugment + Cutout"]
    results["workers_per_device"] = math.ceil(fastest / per_core)
    print(f"input pipeline, one process: {per_core:.0f} img/s per CPU second with RandAugment + Cutout, "
          f"{rates['decode only']:.0f} decode only; the fastest step above ({fastest:.0f} img/s) needs "
          f"{results['workers_per_device']} loader workers per device")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
