"""A synthetic copy of the official processed ImageNet-21K-P download, for tests and benchmarks.

``make_release(OUT)`` takes a demo archive (:func:`tools.demo_archive.make_archive`) and processes it
the way the release was made: classes with at least ``min_images`` images are split (the first
``val_per_class`` images as ``ls`` lists them under en_US.UTF-8 go to ``imagenet21k_val``, the
rest to ``imagenet21k_train``) and squish-resized to 224² baseline JPEGs; smaller classes go,
unresized, to ``imagenet21k_small_classes``. To exercise every path, the first class's first names
are ``_1000``, ``_10000``, ``_10001``, ... (where that order and a bytewise sort pick different val
images), one train image stays at its original size, one is a progressive 224² JPEG, and one is
not an image at all. With
``compressed=True`` it writes ``OUT`` as the download's ``.tar.gz`` (``imagenet21k_resized/...``,
directory members included, fixed metadata); ``short_names`` uses ``train``/``val``/``small_classes``.
Everything is a pure function of the arguments.

CLI: ``python -m tools.demo_release OUT [--compressed] [--short-names] [--seed S]``.
"""
from __future__ import annotations

import argparse
import gzip
import io
import os
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from hierarchy.atomic import atomic_dir, atomic_write_bytes

from pipeline.convert import ls_order_key
from tools.demo_archive import make_archive
from pipeline.images import squish_resize

ROOT_NAME = "imagenet21k_resized"
LONG = {"train": "imagenet21k_train", "validation": "imagenet21k_val", "small": "imagenet21k_small_classes"}
SHORT = {"train": "train", "validation": "val", "small": "small_classes"}


@dataclass
class ReleaseFixture:
    """What :func:`make_release` wrote: file names per split and class, and the special files."""

    path: Path
    files: dict[str, dict[str, dict[str, bytes]]] = field(default_factory=dict)  # split -> wnid -> name -> bytes
    not_resized: dict[str, str] = field(default_factory=dict)  # "original_size" / "progressive" -> name
    corrupt: str = ""

    def names(self, split: str) -> set[str]:
        return {name for files in self.files.get(split, {}).values() for name in files}


def make_release(out_path: str | os.PathLike, *, compressed: bool = False, short_names: bool = False,
                 seed: int = 0, min_images: int = 31, val_per_class: int = 5, orphan_val: bool = False) -> ReleaseFixture:
    """Write the fixture at ``out_path``; ``orphan_val`` adds a val folder for a class that has no
    train folder (the first small class, 2 images)."""
    out = Path(out_path)
    folders = SHORT if short_names else LONG
    fixture = ReleaseFixture(out, {split: {} for split in folders})
    with tempfile.TemporaryDirectory() as tmp:
        raw = make_archive(Path(tmp) / "raw", format="folders-dir", seed=seed).path
        for class_dir in sorted(p for p in raw.iterdir() if p.is_dir()):
            names = sorted(p.name for p in class_dir.iterdir())
            data = {n: (class_dir / n).read_bytes() for n in names}
            if len(names) >= min_images and not fixture.files["train"]:
                data = _mixed_widths(class_dir.name, data, val_per_class)
                names = sorted(data)
            if len(names) < min_images:
                fixture.files["small"][class_dir.name] = data
                continue
            listed = sorted(names, key=ls_order_key)
            val, train = listed[:val_per_class], sorted(listed[val_per_class:])
            fixture.files["validation"][class_dir.name] = {n: squish_resize(data[n], 224, 95) for n in sorted(val)}
            fixture.files["train"][class_dir.name] = {n: squish_resize(data[n], 224, 95) for n in train}
    _add_special_files(fixture)
    if orphan_val:
        wnid = sorted(fixture.files["small"])[0]
        small = fixture.files["small"][wnid]
        fixture.files["validation"][wnid] = {n: squish_resize(small[n], 224, 95) for n in sorted(small)[:2]}
    members = [(f"{folders[split]}/{wnid}/{name}", blob) for split in folders
               for wnid, files in sorted(fixture.files[split].items()) for name, blob in files.items()]
    if compressed:
        _write_tar_gz(out, members, folders)
    else:
        _write_folders(out, members)
    return fixture


def _mixed_widths(wnid: str, data: dict[str, bytes], val_per_class: int) -> dict[str, bytes]:
    """The class's first names renamed to ``wnid_1000.JPEG``, ``wnid_10000.JPEG``, ``wnid_10001.JPEG``,
    ...: where ``ls`` under en_US.UTF-8 and a bytewise sort choose different first ``val_per_class``."""
    names = sorted(data)
    wanted = [f"{wnid}_1000.JPEG"] + [f"{wnid}_{10000 + i}.JPEG" for i in range(val_per_class)]
    renamed = dict(zip(names, wanted))
    return {renamed.get(n, n): blob for n, blob in data.items()}


def _add_special_files(fixture: ReleaseFixture) -> None:
    train = fixture.files["train"]
    wnids = sorted(train)
    first, second, third = train[wnids[0]], train[wnids[1]], train[wnids[2]]
    name = sorted(first)[0]  # one image left at a size other than 224 x 224
    image = Image.open(io.BytesIO(first[name])).resize((300, 200))
    first[name] = _jpeg(image)
    fixture.not_resized["original_size"] = name
    name = sorted(second)[0]  # one 224 x 224 JPEG, but progressive
    second[name] = _jpeg(Image.open(io.BytesIO(second[name])), progressive=True)
    fixture.not_resized["progressive"] = name
    fixture.corrupt = f"{wnids[2]}_999999.JPEG"  # a file named like an image that is not one
    third[fixture.corrupt] = b"\xff\xd8\xff\xe0 this is not a JPEG"


def _jpeg(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=90, **options)
    return out.getvalue()


def _write_folders(out: Path, members: list[tuple[str, bytes]]) -> None:
    with atomic_dir(out) as tmp:
        for name, blob in members:
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)


def _write_tar_gz(out: Path, members: list[tuple[str, bytes]], folders: dict[str, str]) -> None:
    def info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode = size, 0, 0o755 if directory else 0o644
        ti.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        ti.uname = ti.gname = ""
        return ti

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info(f"{ROOT_NAME}/", directory=True))
        seen = set()
        for name, blob in members:
            for depth in (1, 2):
                folder = "/".join(name.split("/")[:depth]) + "/"
                if folder not in seen:
                    seen.add(folder)
                    tar.addfile(info(f"{ROOT_NAME}/{folder}", directory=True))
            tar.addfile(info(f"{ROOT_NAME}/{name}", len(blob)), io.BytesIO(blob))
    atomic_write_bytes(out, gzip.compress(raw.getvalue(), compresslevel=6, mtime=0), durable=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo_release", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (or the .tar.gz with --compressed)")
    parser.add_argument("--compressed", action="store_true", help="write the download's .tar.gz")
    parser.add_argument("--short-names", action="store_true", help="train/val/small_classes folders")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fixture = make_release(args.out, compressed=args.compressed, short_names=args.short_names, seed=args.seed)
    print(f"wrote {fixture.path}: {len(fixture.names('train'))} train, {len(fixture.names('validation'))} val images, "
          f"{len(fixture.files['small'])} small classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
