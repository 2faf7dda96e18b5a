"""Benchmark archives of real photos: ImageNet-21K-shaped, in any layout the pipeline reads.

    python benchmarks/photo_archive.py OUT.tar [--classes 20] [--per-class 1000] [--format tar]

The photos of ``../shared/bench-photos`` are reused cyclically under real wnids of timm's official
ImageNet-21K-P list (spread over the list), named ``wnid_N.JPEG`` with N of mixed widths as in
ImageNet. Formats: ``tar`` (fall11: an outer tar of class tars), ``tar.gz`` (winter21: the same,
gzipped at level 6 like ``gzip``'s default), ``tars-dir`` and ``folders-dir``.
"""
from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.archive import RAW_LAYOUTS  # noqa: E402
PHOTOS = ROOT.parent / "shared" / "bench-photos"
FORMATS = RAW_LAYOUTS


def official_wnids() -> list[str]:
    """timm's official ImageNet-21K-P class list (found without importing torch)."""
    import importlib.util

    info = Path(importlib.util.find_spec("timm").origin).parent / "data" / "_info"
    return (info / "imagenet21k_miil_synsets.txt").read_text().split()


def load_photos(folder: Path = PHOTOS) -> list[bytes]:
    photos = [p.read_bytes() for p in sorted(folder.glob("*.jpg"))]
    if not photos:
        raise SystemExit(f"no photos in {folder}")
    return photos


def class_members(n_classes: int, per_class: int, photos: list[bytes]) -> dict[str, list[tuple[str, bytes]]]:
    """``{wnid: [(member name, JPEG bytes), ...]}``: ``per_class`` photos per class, cycled."""
    wnids = official_wnids()
    step = max(1, len(wnids) // n_classes)
    classes = {}
    for c, wnid in enumerate(wnids[::step][:n_classes]):
        numbers = [7 + 13 * i for i in range(per_class)]  # 7, 20, ..., 12994: widths 1 to 5 digits
        classes[wnid] = [(f"{wnid}_{n}.JPEG", photos[(c * per_class + i) % len(photos)])
                         for i, n in enumerate(numbers)]
    return classes


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), 1318291200, 0o644
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def write_archive(out: Path, fmt: str = "tar", n_classes: int = 20, per_class: int = 1000) -> int:
    """Write the archive at ``out``; return the number of images."""
    classes = class_members(n_classes, per_class, load_photos())
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("tar", "tar.gz"):
        with open(out, "wb") as raw:
            stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) \
                if fmt == "tar.gz" else raw
            with tarfile.open(fileobj=stream, mode="w", format=tarfile.GNU_FORMAT) as outer:
                for wnid, members in classes.items():
                    data = _tar_bytes(members)
                    ti = tarfile.TarInfo(f"{wnid}.tar")
                    ti.size, ti.mtime, ti.mode = len(data), 1318291200, 0o644
                    outer.addfile(ti, io.BytesIO(data))
            if stream is not raw:
                stream.close()
    elif fmt == "tars-dir":
        out.mkdir()
        for wnid, members in classes.items():
            (out / f"{wnid}.tar").write_bytes(_tar_bytes(members))
    elif fmt == "folders-dir":
        for wnid, members in classes.items():
            (out / wnid).mkdir(parents=True)
            for name, data in members:
                (out / wnid / name).write_bytes(data)
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return sum(len(m) for m in classes.values())


def archive_bytes(path: Path) -> int:
    """Size of an archive file, or of every file under an archive folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--format", choices=FORMATS, default="tar")
    args = parser.parse_args(argv)
    n = write_archive(args.out, args.format, args.classes, args.per_class)
    print(f"wrote {args.out}: {n} images, {archive_bytes(args.out) / 1e9:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
