"""Writing shards: our packed USTAR headers against webdataset's TarWriter (same bytes).

    .venv/bin/python benchmarks/shard_tar.py [--samples 20000] [--rounds 3]

Both write the same samples (a 224² JPEG of the bench photos' size, ``.cls`` and ``.json``) to
memory, taking turns, best of ``--rounds``; prints µs per sample for each, the ratio, and the CPU
time each would spend on ImageNet-21K-P's 11.6 M samples.
"""
from __future__ import annotations

import argparse
import io
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.shard_tar import tar_bytes  # noqa: E402

FULL_SCALE = 11_600_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import webdataset as wds

    jpg = bytes(range(256)) * 100  # ~25 KB, a 224² JPEG's size
    samples = [(f"n01440764_{i}", {"cls": b"7", "jpg": jpg, "json": b'{"wnid":"n01440764","class_index":7}'})
               for i in range(args.samples)]

    def ours():
        return b"".join(tar_bytes(samples)[0])

    def theirs():
        buf = io.BytesIO()
        writer = wds.TarWriter(buf, user="", group="", mode=0o444, mtime=0, format=tarfile.USTAR_FORMAT,
                               encoder=False, keep_meta=False)
        for key, fields in samples:
            writer.write({"__key__": key, **fields})
        writer.close()
        return buf.getvalue()

    assert ours() == theirs(), "the two writers disagree"
    best = {"ours": float("inf"), "webdataset": float("inf")}
    for _ in range(args.rounds):
        for name, fn in (("ours", ours), ("webdataset", theirs)):
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    for name, seconds in best.items():
        per = seconds / args.samples
        print(f"{name:11s} {per * 1e6:7.1f} µs/sample   {per * FULL_SCALE / 60:6.1f} CPU-min for {FULL_SCALE:,} samples")
    print(f"ratio webdataset/ours: {best['webdataset'] / best['ours']:.2f}x")


if __name__ == "__main__":
    main()
