"""Tar member headers: a hand-written USTAR parse against ``tarfile.TarInfo.frombuf``, at full scale.

    .venv/bin/python benchmarks/tar_headers.py [--headers 200000] [--release-images 6000] [--repeat 5]
                                               [--photos ../shared/bench-photos]

(about 1 minute). Builds ``--headers`` 512-byte member headers shaped like the raw archive's (GNU
format as GNU tar writes it, ``nXXXXXXXX_N.JPEG`` image members with the bench photos' sizes and
one ``nXXXXXXXX.tar`` class-tar header per 650 images, the fall11 mix), checks that both parsers
agree on name, size and type, and times them over the same headers, taking turns, best of
``--repeat`` rounds, in CPU seconds:

* **ours** — :func:`pipeline.tarstream.parse_header`: plain USTAR / GNU headers parsed by hand
  (octal size and checksum read straight from the block), anything else handed to tarfile;
* **tarfile** — ``tarfile.TarInfo.frombuf(buf, "utf-8", "surrogateescape")``.

Both are projected onto the full raw archive (14,197,122 image members in 21,841 class tars: every
header is parsed once, by the outer listing or by a convert task) and set against the convert
stage there: ``pipeline.images.squish_resize_with_size`` (224 px, quality 95) per bench photo,
times 14,197,122. Then the same for the official processed download read as its ``.tar.gz``
(11,582,723 images), where the images are copied, not resized: a ``.tar.gz`` of ``--release-images``
ready 224² JPEGs (the bench photos squish-resized) goes through
``pipeline.release.convert_release_gzip`` with each parser (patched into
``pipeline.tarstream.parse_header``), taking turns; the CPU time of the thread that parses (one
stream: its whole pass) is set against the saving. The hand-written parse earns its place in
:mod:`pipeline.tarstream` if the saving is material (>= 1 %) in either; with ``ours`` equal to
tarfile's (the fast path removed) the ratio reads 1.0×.
"""
from __future__ import annotations

import argparse
import gzip
import io
import random
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from photo_archive import PHOTOS, load_photos  # noqa: E402
import pipeline.tarstream as tarstream  # noqa: E402
from pipeline.convert import ConvertSettings  # noqa: E402
from pipeline.images import squish_resize_with_size  # noqa: E402
from pipeline.release import convert_release_gzip  # noqa: E402

IMAGES, CLASS_TARS = 14_197_122, 21_841  # fall11
RELEASE_IMAGES = 11_060_223 + 522_500  # the processed download: train + validation
SHARE_THAT_MATTERS = 0.01


ours = tarstream.parse_header  # the pipeline's parse (patched below, so taken once here)


def tarfile_parse_header(buf: bytes):
    return tarfile.TarInfo.frombuf(buf, "utf-8", "surrogateescape")


PARSERS = {"ours": ours, "tarfile": tarfile_parse_header}


def realistic_headers(n: int, photo_sizes: list[int], seed: int = 0) -> list[bytes]:
    """``n`` GNU-format headers: image members of the bench photos' sizes, a class tar every
    ``IMAGES // CLASS_TARS`` (650) images."""
    rng = random.Random(seed)
    per_class = IMAGES // CLASS_TARS
    out = []
    wnid = ""
    for i in range(n):
        if i % per_class == 0:
            wnid = f"n{rng.randrange(10 ** 8):08d}"
            ti = tarfile.TarInfo(f"{wnid}.tar")
            ti.size = sum(rng.choice(photo_sizes) + 512 for _ in range(per_class))
        else:
            ti = tarfile.TarInfo(f"{wnid}_{rng.randrange(1, 20000)}.JPEG")
            ti.size = rng.choice(photo_sizes)
        ti.mtime, ti.mode = 1318291200 + rng.randrange(10 ** 6), 0o644
        out.append(ti.tobuf(tarfile.GNU_FORMAT))
    return out


def release_tar_gz(path: Path, photos: list[bytes], n: int, per_class: int = 500) -> None:
    """The download's layout as a ``.tar.gz``: ``n`` ready 224² JPEGs, 10 % of each class in val."""
    ready = [squish_resize_with_size(p, size=224, quality=95)[0] for p in photos]
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=1) as z, \
            tarfile.open(fileobj=z, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(n):
            wnid = f"n{10_000_000 + i // per_class:08d}"
            split = "imagenet21k_val" if i % per_class < per_class // 10 else "imagenet21k_train"
            ti = tarfile.TarInfo(f"imagenet21k_resized/{split}/{wnid}/{wnid}_{i}.JPEG")
            data = ready[i % len(ready)]
            ti.size, ti.mtime, ti.mode = len(data), 1318291200, 0o644
            tf.addfile(ti, io.BytesIO(data))


def cpu_seconds(fn, items) -> float:
    start = time.process_time()
    for item in items:
        fn(item)
    return time.process_time() - start


def release_pass(archive: Path, work: Path) -> float:
    """CPU seconds of this thread (the one that parses) converting the download's ``.tar.gz``."""
    shutil.rmtree(work, ignore_errors=True)
    start = time.thread_time()
    convert_release_gzip(archive, work, ConvertSettings(min_images=20, val_per_class=50), lambda w: True,
                         part_bytes=1 << 40)
    return time.thread_time() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headers", type=int, default=200_000)
    parser.add_argument("--release-images", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    args = parser.parse_args(argv)
    photos = load_photos(args.photos)
    headers = realistic_headers(args.headers, [len(p) for p in photos])
    for buf in headers:
        a, b = ours(buf), tarfile_parse_header(buf)
        assert (a.name, a.size, a.type) == (b.name, b.size, b.type), (a.name, b.name)

    best = {name: float("inf") for name in (*PARSERS, "convert", *(f"release {p}" for p in PARSERS))}
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "imagenet21k_resized.tar.gz"
        release_tar_gz(archive, photos, args.release_images)
        try:
            for round_ in range(args.repeat + 1):  # round 0 warms up
                times = {name: cpu_seconds(fn, headers) for name, fn in PARSERS.items()}
                times["convert"] = cpu_seconds(lambda data: squish_resize_with_size(data, size=224, quality=95),
                                               photos)
                for name, fn in PARSERS.items():
                    tarstream.parse_header = fn
                    times[f"release {name}"] = release_pass(archive, Path(tmp) / "parts")
                    tarstream.parse_header = ours
                if round_:
                    best = {k: min(v, times[k]) for k, v in best.items()}
        finally:
            tarstream.parse_header = ours

    per_header = {name: best[name] / len(headers) for name in PARSERS}
    n_headers = IMAGES + CLASS_TARS
    saved = (per_header["tarfile"] - per_header["ours"]) * n_headers
    convert_full = best["convert"] / len(photos) * IMAGES
    print(f"{len(headers):,} GNU-format headers (image members, a class tar per {IMAGES // CLASS_TARS}), "
          f"best of {args.repeat}, CPU time of one process")
    for name in PARSERS:
        print(f"  {name:13s} {per_header[name] * 1e6:6.2f} µs/header  -> {per_header[name] * n_headers:5.0f} CPU s "
              f"for the raw archive's {n_headers:,} headers")
    print(f"  tarfile / ours = {per_header['tarfile'] / per_header['ours']:.1f}×")
    print(f"raw archive: squish_resize_with_size 224 px q95, {best['convert'] / len(photos) * 1e3:.2f} ms/image "
          f"-> {convert_full / 3600:.1f} CPU h for {IMAGES:,} images; ours saves "
          f"{saved:.0f} CPU s = {saved / convert_full:.2%} of it")
    release = {name: best[f"release {name}"] / args.release_images for name in PARSERS}
    r_saved = (release["tarfile"] - release["ours"]) * RELEASE_IMAGES
    r_full = release["tarfile"] * RELEASE_IMAGES
    print("processed download .tar.gz (copy path, one stream), CPU of the parsing thread: "
          + ", ".join(f"{n} {release[n] * 1e6:.1f} µs/image" for n in PARSERS))
    print(f"  -> {r_full / 60:.1f} CPU min with tarfile for {RELEASE_IMAGES:,} images; ours "
          f"saves {r_saved:.0f} CPU s = {r_saved / r_full:.1%} of that pass")
    share = max(saved / convert_full, r_saved / r_full)
    print(f"verdict: {'material' if share >= SHARE_THAT_MATTERS else 'immaterial'} "
          f"(largest share {share:.1%}; threshold {SHARE_THAT_MATTERS:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
