"""What a training checkpoint costs: seconds and extra memory per ``checkpoint.pt``, and its share
of training time at the old cadence (every 1000 steps) against the new one (every
``--checkpoint-minutes``, default 30).

The state is the trainer's own for ``tresnet_m`` at 11,221 classes: model, Adam state after one
step (exp_avg, exp_avg_sq), scheduler, grad scaler, RNG states (~630 MB). Two writers take turns,
each in a fresh process (so its peak memory is its own), best of ``--rounds``:

* *before*: ``torch.save`` into a ``BytesIO``, its bytes copied out, then written, fsynced and
  renamed (the trainer's writer until this change);
* *ours*: ``torch.save`` straight into the temp file beside ``checkpoint.pt``, fsynced, renamed
  (:func:`trainer.checkpoint.atomic_torch_save`).

    python benchmarks/checkpoint_cost.py [--model tresnet_m] [--classes 11221] [--rounds 3]
        [--steps-per-second 6.25]

``--steps-per-second``: an optimizer step rate of the paper's global batch 512 on current GPUs
(8 x ~400-800 img/s per GPU on V100s -> ~6-12 steps/s; the issue's 64k images in 10-20 s per
current GPU) — the share of time at the old 1000-step cadence depends on it, the new one does not.
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def training_state(model_name: str, classes: int) -> dict:
    """The parts of a real checkpoint: model and Adam state after one step, schedule, scaler."""
    import torch

    from trainer.checkpoint import rng_state
    from trainer.config import TrainConfig
    from trainer.initial_weights import create_model
    from trainer.model import make_optimizer
    from trainer.schedule import one_cycle_scheduler

    config = TrainConfig(data="d", output="o", model=model_name)
    model = create_model(model_name, classes)
    optimizer = make_optimizer(model, config, 3e-4, torch.device("cpu"))
    for param in model.parameters():
        param.grad = torch.randn_like(param) * 1e-3
    optimizer.step()
    scheduler = one_cycle_scheduler(optimizer, 1000, 0.1, 20, 1e4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return {"format": 3, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "per_rank": [{"rng": rng_state()}]}


def write_before(state: dict, path: Path) -> None:
    """The previous writer: serialise into memory, copy the bytes out, write them atomically."""
    import torch

    from hierarchy.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def write_ours(state: dict, path: Path) -> None:
    from trainer.checkpoint import atomic_torch_save

    atomic_torch_save(state, path)


def child(args) -> None:
    """One measurement in this fresh process: build the state, then write it once."""
    state = training_state(args.model, args.classes)
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path = Path(args.dir) / "checkpoint.pt"
    started = time.perf_counter()
    (write_ours if args.child == "ours" else write_before)(state, path)
    seconds = time.perf_counter() - started
    extra_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb) / 1024
    print(json.dumps({"seconds": seconds, "extra_mb": extra_mb, "size_mb": path.stat().st_size / 2**20}))


def measure(writer: str, args, folder: str) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", writer, "--dir", folder, "--model", args.model,
                             "--classes", str(args.classes)], capture_output=True, text=True, check=True,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tresnet_m")
    parser.add_argument("--classes", type=int, default=11221)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps-per-second", type=float, default=6.25,
                        help="optimizer steps per second of the run whose time share is printed")
    parser.add_argument("--minutes", type=float, default=30.0, help="the new cadence (--checkpoint-minutes)")
    parser.add_argument("--child", choices=["before", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=ROOT) as folder:  # on the project's disk, as a run dir
        for _ in range(args.rounds):
            for writer in ("before", "ours"):
                result = measure(writer, args, folder)
                if writer not in best or result["seconds"] < best[writer]["seconds"]:
                    best[writer] = result
    old_interval = 1000 / args.steps_per_second
    print(f"{args.model} at {args.classes} classes: checkpoint.pt {best['ours']['size_mb']:.0f} MB, best of {args.rounds}")
    for writer, label in (("before", "before (BytesIO + copy)"), ("ours", "ours (straight to file)")):
        r = best[writer]
        print(f"  {label:26s} {r['seconds']:6.2f} s, peak memory +{r['extra_mb']:5.0f} MB")
    print(f"  ours / before: time {best['ours']['seconds'] / best['before']['seconds']:.2f}x, "
          f"extra memory {best['ours']['extra_mb']:.0f} MB vs {best['before']['extra_mb']:.0f} MB")
    print(f"share of training time at {args.steps_per_second:g} steps/s (global batch 512):")
    print(f"  before: every 1000 steps = every {old_interval:.0f} s -> "
          f"{100 * best['before']['seconds'] / (old_interval + best['before']['seconds']):.1f} %")
    interval = args.minutes * 60
    print(f"  ours:   every {args.minutes:g} min -> {100 * best['ours']['seconds'] / (interval + best['ours']['seconds']):.2f} % "
          f"(target <= 1 %), at any step rate")


if __name__ == "__main__":
    main()
