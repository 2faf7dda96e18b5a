"""Synthetic archives shaped exactly like the raw ImageNet-21K release, for tests and the demo.

``make_archive`` writes, in one of four layouts, a small dataset of real WordNet classes with
real JPEGs that carry a learnable class signal (see :mod:`tools.demo_images`):

- ``tar`` (fall11 style): an uncompressed outer tar of per-class tars ``nXXXXXXXX.tar``, each
  holding ``nXXXXXXXX_N.JPEG`` members (N an integer of no fixed width);
- ``tar.gz`` (winter21 style): the very same outer tar, gzip-compressed;
- ``tars-dir``: a directory of the per-class tars;
- ``folders-dir``: a directory of per-class folders of ``.JPEG`` files (``tar -x`` of each).

The classes come from :data:`CLASS_TABLE`, a curated slice of the official ImageNet-21K-P class
list whose semantic tree has 4 roots and 5 levels (animal > vertebrate > bird > aquatic bird >
swan). ``num_classes`` takes a prefix of the table; the table lists parents before children and
interleaves the roots, so every prefix is a closed tree that goes deep early. Classes marked
``kept`` get 36-60 images, the others 8-30: with the demo settings (``--min-images 31
--val-per-class 5``) the 16 kept ones pass and the 5 others (all leaves) are dropped.

Images vary like ImageNet's: mostly RGB, a few grayscale (L) and CMYK JPEGs, qualities 70-95,
sides 160-640 px at assorted aspect ratios plus a few over 1500 px. Opt-in bad entries
(:data:`BAD_KINDS`) are recorded in ``DemoArchive.bad_members``; ``truncate_at`` cuts the outer
archive like a broken download. Everything is a pure function of the arguments: the same seed
gives byte-identical output.

CLI: ``python -m tools.demo_archive make-archive OUT [--format ...] [--classes N] [--seed S]
[--bad KIND,...|all] [--truncate-at BYTES] [--large-images K]`` writes OUT and
``OUT.manifest.json`` (the :class:`DemoArchive` as JSON).
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import re
import sys
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from PIL import Image

from hierarchy.atomic import atomic_dir, atomic_path, atomic_write_text
from pipeline.archive import RAW_LAYOUTS

from tools.demo_images import (
    ClassLook,
    assign_looks,
    corrupt_scan_data,
    declare_size,
    draw_image,
    encode_gif,
    encode_jpeg,
    encode_png_with_alpha,
    make_noise_tile,
)


@dataclass(frozen=True)
class DemoClass:
    """One row of the class table: a real WordNet noun and its place in the demo's tree."""

    wnid: str
    name: str  # first lemma, as the released ImageNet-21K-P tree names it
    parent: str | None  # nearest ancestor among the table's classes (WordNet and is_a.txt agree)
    kept: bool  # gets enough images to pass the demo's --min-images 31 --val-per-class 5


#: The demo's classes, in prefix order (``num_classes`` takes the first N). Levels in comments.
CLASS_TABLE: tuple[DemoClass, ...] = (
    DemoClass("n00015388", "animal", None, True),  # 0
    DemoClass("n01471682", "vertebrate", "n00015388", True),  # 1
    DemoClass("n01503061", "bird", "n01471682", True),  # 2
    DemoClass("n00017222", "plant", None, True),  # 0
    DemoClass("n13104059", "tree", "n00017222", True),  # 1
    DemoClass("n00021939", "artifact", None, True),  # 0
    DemoClass("n04341686", "structure", "n00021939", True),  # 1
    DemoClass("n02512053", "fish", "n01471682", False),  # 2, dropped leaf
    DemoClass("n01844917", "aquatic_bird", "n01503061", True),  # 3
    DemoClass("n12268246", "oak", "n13104059", True),  # 2
    DemoClass("n02913152", "building", "n04341686", True),  # 2
    DemoClass("n01858441", "swan", "n01844917", True),  # 4
    DemoClass("n13108841", "conifer", "n13104059", False),  # 2, dropped leaf
    DemoClass("n12269241", "live_oak", "n12268246", True),  # 3
    DemoClass("n03028079", "church", "n02913152", True),  # 3
    DemoClass("n01861778", "mammal", "n01471682", True),  # 2
    DemoClass("n04460130", "tower", "n04341686", False),  # 2, dropped leaf
    DemoClass("n03094503", "container", "n00021939", True),  # 1
    DemoClass("n04531098", "vessel", "n03094503", True),  # 2
    DemoClass("n02876657", "bottle", "n04531098", False),  # 3, dropped leaf
    DemoClass("n00021265", "food", None, False),  # 0, dropped leaf root
)
UNKNOWN_WNID = "n99999999"  # `unknown_wnid`: shaped like a wnid, not a WordNet noun
EMPTY_CLASS_WNID = "n00007846"  # `empty_class_tar`: person, in the official list, unused here

FORMATS = RAW_LAYOUTS
TAR_FORMATS = ("tar", "tar.gz")
#: Opt-in bad entries. Member-level kinds land in a kept class; the last three add containers.
BAD_KINDS = {
    "corrupt": "a JPEG with valid headers and random scan data",
    "truncated": "a JPEG cut at half its length",
    "zero_byte": "an empty .JPEG member",
    "png_named_jpeg": "a decodable PNG with alpha named .JPEG (to be converted, not rejected)",
    "gif_named_jpeg": "a decodable GIF named .JPEG (to be converted, not rejected)",
    "non_image": "an HTML error page named .JPEG",
    "non_image_name": "members wnid_N.txt and readme.txt",
    "bomb": "a tiny JPEG whose header declares 60000x60000 pixels",
    "path_traversal": "JPEGs named ../wnid_N.JPEG and /abs/wnid_N.JPEG",
    "bad_name": "JPEGs named wnid_x.JPEG and <another wnid>_N.JPEG",
    "unknown_wnid": f"a class tar {UNKNOWN_WNID}.tar of valid JPEGs, enough to be kept",
    "empty_class_tar": f"a class tar {EMPTY_CLASS_WNID}.tar with no members",
    "outer_junk": "a README.txt beside the class tars",
}
#: Kinds a format cannot hold (a folder cannot hold a member named ``../x``).
UNSUPPORTED_BAD_KINDS = {"folders-dir": ("path_traversal",)}

KEPT_CLASS_SIZES = (36, 60)
DROPPED_CLASS_SIZES = (8, 30)
IMAGE_SIDES = (160, 640)
LARGE_LONG_SIDES = (1600, 2200)
JPEG_QUALITIES = (70, 95)
GRAYSCALE_IMAGES = 6
CMYK_IMAGES = 4
BOMB_SIDE = 60000
UNKNOWN_CLASS_IMAGES = KEPT_CLASS_SIZES[0]  # enough to be kept: dropped only for its wnid
MAX_IMAGE_NUMBER = 16000
_HTML_ERROR_PAGE = (  # `non_image`: what a dead photo link served instead of a JPEG
    b"<html><head><title>404 Not Found</title></head>\n"
    b"<body><h1>Not Found</h1><p>The requested photo is no longer available.</p></body></html>\n"
)
_OUTER_README = b"Synthetic ImageNet-21K-shaped demo archive (tools.demo_archive). One tar per class.\n"

TAR_MTIME = 1318291200  # 2011-10-11, the fall11 release
TAR_OWNER = "imagenet"
TAR_UID = 1000
TAR_FORMAT = tarfile.GNU_FORMAT


@dataclass(frozen=True)
class BadMember:
    """One deliberately broken entry of a demo archive.

    ``class_tar`` is the class container as written (``n01503061.tar``, or the folder
    ``n01503061`` in folders-dir; None for an entry of the outer archive itself); ``member`` is
    the entry's name inside it (None when the container itself is the bad thing). ``stage`` hints
    where a pipeline should catch it: ``archive`` (outer listing), ``member_name`` (name checks),
    ``decode`` (fails to decode) or ``convert`` (decodable non-JPEG: keep it, re-encoded).
    """

    class_tar: str | None
    member: str | None
    kind: str
    stage: str
    reason: str


@dataclass
class DemoArchive:
    """What :func:`make_archive` wrote.

    ``classes`` maps each real class to the sorted stems of its good JPEGs (``n01503061_17``);
    bad members are not in it but in ``bad_members``. ``parents`` is the nearest ancestor of each
    class among ``wnids``; ``special_images`` lists the stems of the ``grayscale`` (L),
    ``cmyk`` and ``large`` (> 1500 px) JPEGs. ``truncated_at`` is the byte length the outer
    archive was cut to, if it was.
    """

    path: Path
    format: str
    seed: int
    classes: dict[str, list[str]]
    class_sizes: dict[str, int]
    bad_members: list[BadMember]
    wnids: list[str]
    parents: dict[str, str | None]
    names: dict[str, str]
    special_images: dict[str, list[str]]
    truncated_at: int | None = None

    def to_json(self) -> str:
        """The manifest: this record as deterministic, indented JSON."""
        record = asdict(self)
        record["path"] = str(self.path)
        return json.dumps(record, indent=2, sort_keys=True) + "\n"


@dataclass
class _Container:
    """A class tar (or folder) to write: its wnid and its (name, bytes) members in order."""

    wnid: str
    members: list[tuple[str, bytes]] = field(default_factory=list)


def make_archive(out_path: str | os.PathLike, *, format: str = "tar", num_classes: int | None = None,
                 seed: int = 0, bad: str | Iterable[str] = (), truncate_at: int | None = None,
                 large_images: int = 3) -> DemoArchive:
    """Write a demo archive at ``out_path`` and describe it.

    ``bad`` is a list of :data:`BAD_KINDS` (or ``"all"``: every kind the format can hold);
    ``truncate_at`` (tar formats only) cuts the finished outer archive to that many bytes, like a
    broken download; ``large_images`` JPEGs get a long side over 1500 px. Raises ``ValueError``
    for bad arguments and ``FileExistsError`` when ``out_path`` is something else already.
    """
    out = Path(out_path)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    table = _select_classes(num_classes)
    kinds = _bad_kinds(bad, format)
    if truncate_at is not None and (format not in TAR_FORMATS or truncate_at <= 0):
        raise ValueError(f"truncate_at needs a format in {TAR_FORMATS} and a positive byte count")
    numbers = {row.wnid: _image_numbers(row, seed) for row in table}
    noise_tile = make_noise_tile(seed)
    containers, classes, special = _good_images(table, numbers, seed, large_images, noise_tile)
    top_files: list[tuple[str, bytes]] = []
    bad_members = _add_bad_members(kinds, table, numbers, seed, noise_tile, containers, top_files, format)
    for container in containers:
        random.Random(f"{seed}:{container.wnid}:order").shuffle(container.members)
    _write(out, format, containers, top_files, truncate_at)
    wnids = sorted(classes)
    return DemoArchive(
        path=out,
        format=format,
        seed=seed,
        classes=classes,
        class_sizes={wnid: len(classes[wnid]) for wnid in wnids},
        bad_members=bad_members,
        wnids=wnids,
        parents={row.wnid: row.parent for row in table},
        names={row.wnid: row.name for row in table},
        special_images=special,
        truncated_at=truncate_at,
    )


def manifest_path(out_path: str | os.PathLike) -> Path:
    """Where the CLI writes the manifest of the archive at ``out_path``: ``OUT.manifest.json``."""
    out = Path(out_path)
    return out.with_name(out.name + ".manifest.json")


def _select_classes(num_classes: int | None) -> tuple[DemoClass, ...]:
    if num_classes is None:
        return CLASS_TABLE
    if not 1 <= num_classes <= len(CLASS_TABLE):
        raise ValueError(f"num_classes must be 1..{len(CLASS_TABLE)}, got {num_classes}")
    return CLASS_TABLE[:num_classes]


def _bad_kinds(bad: str | Iterable[str], format: str) -> tuple[str, ...]:
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    unsupported = UNSUPPORTED_BAD_KINDS.get(format, ())
    if bad == "all":
        return tuple(kind for kind in BAD_KINDS if kind not in unsupported)
    requested = [bad] if isinstance(bad, str) else list(bad)
    for kind in requested:
        if kind not in BAD_KINDS:
            raise ValueError(f"unknown bad kind {kind!r}; choose from {', '.join(BAD_KINDS)} or 'all'")
        if kind in unsupported:
            raise ValueError(f"format {format!r} cannot hold bad kind {kind!r}")
    return tuple(kind for kind in BAD_KINDS if kind in requested)


def _good_images(table: tuple[DemoClass, ...], numbers: dict[str, list[int]], seed: int,
                 large_images: int, noise_tile: Image.Image):
    """Draw every class's good JPEGs: the containers, the stems per class, the special stems.

    The large, grayscale and CMYK images are drawn at random from the kept classes.
    """
    kept_pool = [(row.wnid, n) for row in table if row.kept for n in numbers[row.wnid]]
    most_large = len(kept_pool) - GRAYSCALE_IMAGES - CMYK_IMAGES
    if not 0 <= large_images <= most_large:
        raise ValueError(f"large_images must be 0..{most_large} for these classes, got {large_images}")
    wanted = large_images + GRAYSCALE_IMAGES + CMYK_IMAGES
    chosen = random.Random(f"{seed}:special").sample(kept_pool, wanted)
    large = set(chosen[:large_images])
    modes = {key: "L" for key in chosen[large_images:large_images + GRAYSCALE_IMAGES]}
    modes.update({key: "CMYK" for key in chosen[large_images + GRAYSCALE_IMAGES:]})
    looks = _looks()
    containers, classes = [], {}
    for row in table:
        container = _Container(row.wnid)
        for n in numbers[row.wnid]:
            rng = random.Random(f"{seed}:{row.wnid}:{n}")
            size = _large_size(rng) if (row.wnid, n) in large else _image_size(rng)
            image = draw_image(looks[row.wnid], size, rng, noise_tile)
            quality = rng.randint(*JPEG_QUALITIES)
            data = encode_jpeg(image, modes.get((row.wnid, n), "RGB"), quality)
            container.members.append((f"{row.wnid}_{n}.JPEG", data))
        containers.append(container)
        classes[row.wnid] = sorted(f"{row.wnid}_{n}" for n in numbers[row.wnid])
    special = {
        "large": sorted(f"{w}_{n}" for w, n in large),
        "grayscale": sorted(f"{w}_{n}" for (w, n), mode in modes.items() if mode == "L"),
        "cmyk": sorted(f"{w}_{n}" for (w, n), mode in modes.items() if mode == "CMYK"),
    }
    return containers, classes, special


def _looks():
    """The look of every table class, from the whole table (so prefixes keep their looks)."""
    return assign_looks({row.wnid: row.parent for row in CLASS_TABLE})


def _image_numbers(row: DemoClass, seed: int) -> list[int]:
    """Distinct image numbers of a class, one below 100 so name order differs from number order."""
    rng = random.Random(f"{seed}:{row.wnid}")
    count = rng.randint(*(KEPT_CLASS_SIZES if row.kept else DROPPED_CLASS_SIZES))
    small = rng.randint(1, 99)
    rest = rng.sample(range(100, MAX_IMAGE_NUMBER), count - 1)
    return [small, *rest]


def _image_size(rng: random.Random) -> tuple[int, int]:
    """Width and height within IMAGE_SIDES, aspect ratio between 1:2 and 2:1."""
    low, high = IMAGE_SIDES
    width = rng.randint(low, high)
    height = round(width * 2 ** rng.uniform(-1, 1))
    return width, min(high, max(low, height))


def _large_size(rng: random.Random) -> tuple[int, int]:
    """A size whose long side is within LARGE_LONG_SIDES, either orientation."""
    long_side = rng.randint(*LARGE_LONG_SIDES)
    short_side = round(long_side * rng.uniform(0.6, 0.85))
    return (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)


def _add_bad_members(kinds: tuple[str, ...], table: tuple[DemoClass, ...],
                     numbers: dict[str, list[int]], seed: int, noise_tile: Image.Image,
                     containers: list[_Container], top_files: list[tuple[str, bytes]],
                     format: str) -> list[BadMember]:
    """Add the requested bad entries to ``containers`` / ``top_files``; return their records.

    Each member-level kind lands in a kept class picked from the seed, under image numbers the
    class does not use yet.
    """
    by_wnid = {container.wnid: container for container in containers}
    used = {wnid: set(taken) for wnid, taken in numbers.items()}
    kept = [row.wnid for row in table if row.kept]
    looks = _looks()
    suffix = "" if format == "folders-dir" else ".tar"
    records: list[BadMember] = []
    for kind in kinds:
        rng = random.Random(f"{seed}:bad:{kind}")
        if kind == "unknown_wnid":
            maker = _BadEntryMaker(rng, UNKNOWN_WNID, set(), looks[table[0].wnid], noise_tile)
            containers.append(_Container(UNKNOWN_WNID, [
                (maker.fresh_name(), maker.jpeg()) for _ in range(UNKNOWN_CLASS_IMAGES)
            ]))
            records.append(BadMember(UNKNOWN_WNID + suffix, None, kind, "archive",
                                     f"{UNKNOWN_WNID} is not a WordNet noun id"))
        elif kind == "empty_class_tar":
            containers.append(_Container(EMPTY_CLASS_WNID))
            records.append(BadMember(EMPTY_CLASS_WNID + suffix, None, kind, "archive",
                                     "class container holds no images"))
        elif kind == "outer_junk":
            top_files.append(("README.txt", _OUTER_README))
            records.append(BadMember(None, "README.txt", kind, "archive", "not a class tar"))
        else:
            wnid = rng.choice(kept)
            maker = _BadEntryMaker(rng, wnid, used[wnid], looks[wnid], noise_tile)
            for name, data, stage, reason in _bad_class_members(kind, maker):
                by_wnid[wnid].members.append((name, data))
                records.append(BadMember(wnid + suffix, name, kind, stage, reason))
    return records


class _BadEntryMaker:
    """Images and unused member names for the bad entries of one class, from one seeded RNG."""

    def __init__(self, rng: random.Random, wnid: str, used: set[int], look: ClassLook,
                 noise_tile: Image.Image):
        self.rng, self.wnid, self.used, self.look, self.noise_tile = rng, wnid, used, look, noise_tile

    def image(self, size: tuple[int, int] = (320, 240)) -> Image.Image:
        return draw_image(self.look, size, self.rng, self.noise_tile)

    def jpeg(self, size: tuple[int, int] = (320, 240)) -> bytes:
        return encode_jpeg(self.image(size), "RGB", 85)

    def fresh_name(self, suffix: str = ".JPEG") -> str:
        number = self.rng.randint(1, MAX_IMAGE_NUMBER)
        while number in self.used:
            number = self.rng.randint(1, MAX_IMAGE_NUMBER)
        self.used.add(number)
        return f"{self.wnid}_{number}{suffix}"


def _bad_class_members(kind: str, make: _BadEntryMaker) -> list[tuple[str, bytes, str, str]]:
    """The (name, bytes, stage, reason) members of one member-level bad kind."""
    wnid = make.wnid
    if kind == "corrupt":
        return [(make.fresh_name(), corrupt_scan_data(make.jpeg(), make.rng), "decode",
                 "valid JPEG headers, random bytes for scan data")]
    if kind == "truncated":
        data = make.jpeg()
        return [(make.fresh_name(), data[: len(data) // 2], "decode", "JPEG cut at half its length")]
    if kind == "zero_byte":
        return [(make.fresh_name(), b"", "decode", "empty file")]
    if kind == "png_named_jpeg":
        return [(make.fresh_name(), encode_png_with_alpha(make.image()), "convert",
                 "PNG with alpha named .JPEG: decodable, re-encode as an RGB JPEG")]
    if kind == "gif_named_jpeg":
        return [(make.fresh_name(), encode_gif(make.image()), "convert",
                 "GIF named .JPEG: decodable, re-encode as an RGB JPEG")]
    if kind == "non_image":
        return [(make.fresh_name(), _HTML_ERROR_PAGE, "decode", "an HTML error page named .JPEG")]
    if kind == "non_image_name":
        return [(make.fresh_name(".txt"), b"image tags: unknown\n", "member_name", "not a .JPEG member"),
                ("readme.txt", b"class tar notes\n", "member_name", "not a .JPEG member")]
    if kind == "bomb":
        return [(make.fresh_name(), declare_size(make.jpeg((32, 32)), BOMB_SIDE, BOMB_SIDE), "decode",
                 f"header declares {BOMB_SIDE}x{BOMB_SIDE} pixels (decompression bomb)")]
    if kind == "path_traversal":
        return [(prefix + make.fresh_name(), make.jpeg(), "member_name", "member path leaves the class folder")
                for prefix in ("../", "/abs/")]
    if kind == "bad_name":
        other = next(row.wnid for row in CLASS_TABLE if row.wnid != wnid)
        return [(f"{wnid}_x.JPEG", make.jpeg(), "member_name", "stem is not <wnid>_<digits>"),
                (f"{other}_{make.rng.randint(1, MAX_IMAGE_NUMBER)}.JPEG", make.jpeg(), "member_name",
                 f"wnid {other} differs from the class tar's {wnid}")]
    raise ValueError(f"{kind!r} is not a member-level bad kind")


def _write(out: Path, format: str, containers: list[_Container],
           top_files: list[tuple[str, bytes]], truncate_at: int | None) -> None:
    """Write the archive in ``format`` atomically at ``out``."""
    if format in TAR_FORMATS:
        entries = sorted([(c.wnid + ".tar", _class_tar_bytes(c.members)) for c in containers] + top_files)
        _replace_file(out, lambda f: _write_outer_tar(f, entries, format == "tar.gz"), truncate_at)
    elif format == "tars-dir":
        files = [(c.wnid + ".tar", _class_tar_bytes(c.members)) for c in containers] + top_files
        _replace_dir(out, lambda d: _write_files(d, files))
    else:
        folders = [c.wnid for c in containers]
        files = [(f"{c.wnid}/{name}", data) for c in containers for name, data in c.members] + top_files
        _replace_dir(out, lambda d: _write_files(d, files, folders))


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, TAR_MTIME, 0o644
    info.uid = info.gid = TAR_UID
    info.uname = info.gname = TAR_OWNER
    return info


def _class_tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A per-class tar (GNU format, fixed metadata) holding ``members`` in the given order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=TAR_FORMAT) as tar:
        for name, data in members:
            tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
    return out.getvalue()


def _write_outer_tar(file, entries: list[tuple[str, bytes]], compress: bool) -> None:
    """The outer tar of ``entries`` into ``file``; gzip with no name and mtime 0 if asked."""
    stream = gzip.GzipFile(filename="", mode="wb", fileobj=file, mtime=0, compresslevel=1) if compress else file
    with tarfile.open(fileobj=stream, mode="w", format=TAR_FORMAT) as tar:
        for name, data in entries:
            tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
    if compress:
        stream.close()


def _write_files(root: Path, files: list[tuple[str, bytes]], folders: list[str] = ()) -> None:
    for folder in folders:
        (root / folder).mkdir()
    for name, data in files:
        (root / name).write_bytes(data)


def _replace_file(out: Path, write, truncate_at: int | None) -> None:
    """Run ``write(file)`` on a temp file beside ``out``, cut it if asked, then rename it."""
    if out.is_dir():
        raise FileExistsError(f"{out} is a directory; the format writes a single file")
    with atomic_path(out, durable=False) as tmp:  # test data: no fsync
        with open(tmp, "wb") as f:
            write(f)
            if truncate_at is not None:
                if truncate_at >= f.tell():
                    raise ValueError(f"truncate_at={truncate_at} is not below the archive size {f.tell()}")
                f.truncate(truncate_at)


_DEMO_DIR_ENTRY = re.compile(r"^(n\d{8}(\.tar)?|README\.txt)$")


def _replace_dir(out: Path, write) -> None:
    """Run ``write(dir)`` on a temp directory beside ``out``, then swap it in.

    An existing ``out`` is replaced only when it looks like an earlier demo archive (nothing but
    class tars / folders and README.txt); anything else raises ``FileExistsError``.
    """
    if out.exists() and not (out.is_dir() and all(_DEMO_DIR_ENTRY.match(p.name) for p in out.iterdir())):
        raise FileExistsError(f"{out} exists and is not a demo archive directory; remove it first")
    with atomic_dir(out) as tmp:
        write(tmp)


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.demo_archive make-archive OUT ...``: write an archive and its manifest."""
    parser = argparse.ArgumentParser(prog="python -m tools.demo_archive", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make-archive", help="write a synthetic ImageNet-21K-shaped archive")
    make.add_argument("out", type=Path, help="archive file (tar formats) or directory to write")
    make.add_argument("--format", choices=FORMATS, default="tar")
    make.add_argument("--classes", type=int, default=None, metavar="N",
                      help=f"first N classes of the table (1..{len(CLASS_TABLE)}; default all)")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--bad", default="", metavar="KIND,...|all",
                      help="bad entries to add: " + ", ".join(BAD_KINDS))
    make.add_argument("--truncate-at", type=int, default=None, metavar="BYTES",
                      help="cut the outer archive to BYTES (tar formats), like a broken download")
    make.add_argument("--large-images", type=int, default=3, metavar="K",
                      help="number of JPEGs with a long side over 1500 px")
    args = parser.parse_args(argv)
    bad = "all" if args.bad == "all" else [kind for kind in args.bad.split(",") if kind]
    try:
        archive = make_archive(args.out, format=args.format, num_classes=args.classes, seed=args.seed,
                               bad=bad, truncate_at=args.truncate_at, large_images=args.large_images)
        manifest = manifest_path(archive.path)
        atomic_write_text(manifest, archive.to_json(), durable=False)
    except (ValueError, OSError) as exc:  # bad arguments, an unwritable or occupied OUT
        parser.error(str(exc))
    images = sum(archive.class_sizes.values())
    print(f"wrote {archive.path} ({archive.format}: {len(archive.wnids)} classes, {images} images, "
          f"{len(archive.bad_members)} bad entries) and {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
