"""Trainer loader throughput per worker (= per core): decode + to-tensor, and with augmentation.

Builds demo-like shards from the bench photos (squish-resized to 224x224 JPEG q95 by the
pipeline's own ``squish_resize``, in WebDataset tars) and measures, in one process and in CPU
seconds (the machines are shared), images per CPU second of:

* the JPEG decoders alone, each ending in a uint8 CHW tensor: PIL (pillow-simd), simplejpeg
  (libjpeg-turbo, what the trainer uses), torchvision.io.decode_jpeg;
* the trainer's stream (``trainer.data.TrainChunks``: tar reading + decode + collate) at 224,
  at ``--input-size 64`` (DCT-scaled decode), and with RandAugment + Cutout.

Run: ``.venv/bin/python benchmarks/loader.py [--photos ../shared/bench-photos] [--samples 960]``.
Target: >= 1000 img/s per core for decode + to-tensor of 224x224 JPEGs.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import simplejpeg  # noqa: E402
import torch  # noqa: E402
import torchvision.io  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.images import squish_resize  # noqa: E402
from trainer.data import TrainChunks, TrainPlan, read_split  # noqa: E402
from trainer.transforms import SampleTransform  # noqa: E402


def build_shards(photos: list[Path], samples: int, out: Path, per_shard: int = 256) -> list[bytes]:
    """Write ``samples`` demo-like samples into shards + ``_info.json``; return the JPEGs."""
    jpegs = [squish_resize(p.read_bytes(), 224, 95) for p in photos]
    jpegs = [jpegs[i % len(jpegs)] for i in range(samples)]
    names, lengths = [], []
    for shard, start in enumerate(range(0, samples, per_shard)):
        name = f"train/bench-{shard:06d}.tar"
        (out / "train").mkdir(parents=True, exist_ok=True)
        chunk = jpegs[start:start + per_shard]
        with tarfile.open(out / name, "w", format=tarfile.USTAR_FORMAT) as archive:
            for i, jpeg in enumerate(chunk):
                for ext, data in (("cls", str(i % 10).encode()), ("jpg", jpeg)):
                    info = tarfile.TarInfo(f"n0000000{i % 10}_{start + i}.{ext}")
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
        names.append(name)
        lengths.append(len(chunk))
    (out / "_info.json").write_text(json.dumps({"splits": {"train": {
        "filenames": names, "shard_lengths": lengths, "num_samples": samples}}}))
    return jpegs


def decode_pil(jpeg: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(jpeg)) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1)


def decode_simplejpeg(jpeg: bytes) -> torch.Tensor:
    return torch.from_numpy(simplejpeg.decode_jpeg(jpeg, colorspace="RGB")).permute(2, 0, 1)


def decode_torchvision(jpeg: bytes) -> torch.Tensor:
    return torchvision.io.decode_jpeg(torch.frombuffer(bytearray(jpeg), dtype=torch.uint8))


def cpu_rate(run, count: int, repeat: int) -> float:
    """Best images per CPU second over ``repeat`` rounds (after one warm-up round)."""
    run()
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "bench-photos")
    parser.add_argument("--samples", type=int, default=960)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    photos = sorted(args.photos.glob("*.jpg"))
    if not photos:
        sys.exit(f"no photos in {args.photos}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        jpegs = build_shards(photos, args.samples, out)
        split = read_split(out, "train")
        rows = []
        for name, decode in [("decode PIL (pillow-simd) + to-tensor", decode_pil),
                             ("decode simplejpeg + to-tensor (trainer)", decode_simplejpeg),
                             ("decode torchvision.io + to-tensor", decode_torchvision)]:
            rows.append((name, cpu_rate(lambda: [decode(j) for j in jpegs], len(jpegs),
                                        args.repeat)))
        plan = TrainPlan(split.lengths, seed=0, num_lanes=1, chunk_size=32, shuffle_buffer=256)
        used = plan.batches_per_epoch * plan.chunk_size
        for name, transform in [
                ("stream 224: tar + decode + collate", SampleTransform(224)),
                ("stream 64 (--input-size 64, DCT-scaled decode)", SampleTransform(64)),
                ("stream 224 + RandAugment m9 + Cutout 0.5",
                 SampleTransform(224, "rand-m9-mstd101", 0.5))]:
            chunks = TrainChunks(split, plan, [0], 0, 0, plan.batches_per_epoch, transform, 10)
            rows.append((name, cpu_rate(lambda: [c for c in chunks], used, args.repeat)))
    width = max(len(name) for name, _ in rows)
    print(f"{len(jpegs)} demo-like 224x224 JPEGs (mean {np.mean([len(j) for j in jpegs]) / 1024:.1f}"
          f" KiB) from {len(photos)} photos; one process, images per CPU second (best of "
          f"{args.repeat})")
    for name, rate in rows:
        print(f"  {name:<{width}}  {rate:8.0f} img/s")
    base = dict(rows)["decode PIL (pillow-simd) + to-tensor"]
    stream = dict(rows)["stream 224: tar + decode + collate"]
    print(f"ratios: simplejpeg / PIL = {dict(rows)['decode simplejpeg + to-tensor (trainer)'] / base:.2f}, "
          f"stream 224 / PIL decode = {stream / base:.2f}; target stream 224 >= 1000 img/s per "
          f"core: {'met' if stream >= 1000 else 'NOT met'} ({stream:.0f})")


if __name__ == "__main__":
    main()
