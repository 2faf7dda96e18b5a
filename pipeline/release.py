"""Stage 1 for the official processed download (``imagenet21k_resized``): splits taken as given.

The download already holds ImageNet-21K-P's train and validation split, squish-resized, as
``train/`` and ``val/`` folders of class folders (plus the small classes it dropped). So here:

* every train image becomes a train sample and every val image a validation sample: nothing is
  re-filtered or re-split; the class list is the train folder's classes;
* an image that already is an ``image_size``² baseline colour JPEG (checked from its markers,
  :func:`pipeline.jpeg_header.is_ready_jpeg`) is copied byte for byte; anything else is
  squish-resized as usual; the part counts both;
* a small-classes folder is counted, never read: its classes are dropped as
  ``released_small_class``; val images of a class without a train folder are rejected
  (``class_not_in_train_folder``). A kept class's row (``classes.parquet``) comes from its train
  folder; val folders add rows only for classes that are dropped.

Folders are read with :func:`convert_release_folders` (class folders spread over convert tasks);
the ``.tar.gz`` is one stream (:func:`convert_release_gzip`), in parts of about ``part_bytes``
that a rerun does not convert again.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import pyarrow as pa

from pipeline.archive import CLASS_DIR_RE, ArchiveError, Container, release_member_split
from pipeline.convert import ContainerJob, ConvertSettings, Progress, convert_folders, convert_image, fingerprints_of
from pipeline.jpeg_header import is_ready_jpeg
from pipeline.members import reject_row
from pipeline.near_duplicates import eval_fingerprints, fingerprint as fingerprint_of
from pipeline.parts import PartBuilder, part_done, remove_stale_temp_files_of, train_order
from pipeline.streams import BlockStream, StreamError, gzip_blocks
from pipeline.tarstream import Entry, TarDamage, TarReader

SMALL_CLASS = "released_small_class"


def orphan_reason(wnid: str) -> tuple[str, str]:
    """The reject of a val image whose class has no train folder."""
    return "class_not_in_train_folder", f"a validation image of {wnid}, which the train folder lacks"


def release_image(data: bytes, settings: ConvertSettings, validation: bool = False) -> tuple[tuple, bool]:
    """``(result, copied)``: result ``("ok", jpeg, width, height, fingerprint, variants)`` or
    ``("reject", reason, detail)``. A ready JPEG is kept as it is (its fingerprint, and for a
    ``validation`` image its variants, only with ``settings.fingerprint_copies``: that needs a
    decode), anything else squish-resized."""
    size = settings.image_size
    if is_ready_jpeg(data, size):
        fingerprint = variants = None
        if settings.fingerprint_copies:
            from pipeline.images import squish_resized_image

            image = squish_resized_image(data, size)
            fingerprint = fingerprint_of(image)
            variants = eval_fingerprints(image).tolist() if validation else None
        return ("ok", data, size, size, fingerprint, variants), True
    result = convert_image(data, size, settings.jpeg_quality)
    if result[0] == "ok":  # one image: its cells made a fingerprint at once
        variants = eval_fingerprints(result[5]).tolist() if validation else None
        result = (*result[:4], fingerprints_of([result[4]])[0], variants)
    return result, False


class ReleaseFolderJob(ContainerJob):
    """One class folder of the download (a train, val or small-classes folder): its files go in
    with :meth:`add`, its class row and samples come out with :meth:`finish`."""

    def __init__(self, container: Container, known: bool, settings: ConvertSettings, part: PartBuilder):
        super().__init__(container, known, settings, part)
        self.split, self.orphan = container.split, container.kind == "val_only"
        self.reads = known and self.split != "small" and not self.orphan
        self.drop = SMALL_CLASS if self.split == "small" else (None if known else "not_in_wordnet")

    #: Read in the converting thread: a copy is only a marker check, so a read-ahead thread would
    #: overlap almost nothing and its hand-overs (the GIL, a queue) cost more than they save: the
    #: convert stage's "copy" line of ``.venv/bin/python benchmarks/release_copy.py`` is slower
    #: with this set to True.
    read_ahead = False

    @staticmethod
    def wants(container: Container, known: Callable[[str], bool]) -> bool:
        """Whether the folder's files are read at all (not for small, unplaceable or val-only classes)."""
        return container.split != "small" and container.kind != "val_only" and known(container.wnid)

    def member_label(self, member: str) -> str:
        return f"{self.container.name}/{member}"

    def take(self, entry: Entry, key: str, read: Callable[[], bytes] | None) -> None:
        if self.orphan:
            return self.reject(entry.name, *orphan_reason(self.wnid), key)
        if not self.reads:
            return
        data = self.read_member(entry, key, read)
        if data is None:
            return
        result, copied = release_image(data, self.settings, validation=self.split == "validation")
        if result[0] != "ok":
            return self.reject(entry.name, result[1], result[2], key, stage="decode")
        self.part.copied += copied
        self.part.resized += not copied
        order = train_order(self.settings.seed, key) if self.split == "train" else self.n_images - 1
        self.part.add_sample(key, self.wnid, entry.name, self.split, order, *result[1:])

    def damaged(self, offset: int, message: str, reason: str) -> None:
        self.n_entries += 1
        self.part.rejects.append(reject_row(self.container.name, self.wnid, reason, message))

    def finish(self) -> None:
        self._count_entries("folder")
        if not self.orphan and (self.split != "validation" or self.drop):  # a kept class's row: its train folder
            self.part.add_class(self.wnid, self.container.name, self.n_images, self.drop)


def convert_release_folders(root: str | Path, containers: list[Container], settings: ConvertSettings,
                            known: Callable[[str], bool], progress: Progress = None) -> PartBuilder:
    """The released layout's class folders ``containers`` (of :func:`pipeline.archive.list_containers`)
    under ``root``, read with :class:`ReleaseFolderJob`: :func:`pipeline.convert.convert_folders`'s
    signature and part."""
    return convert_folders(root, containers, settings, known, progress, job_class=ReleaseFolderJob)


def convert_release_gzip(archive: str | Path, parts_dir: Path, settings: ConvertSettings,
                         known: Callable[[str], bool], part_bytes: int = 1 << 30,
                         progress: Callable[[int], None] | None = None) -> list[str]:
    """Convert the download's ``.tar.gz`` into parts ``part-00000``... under ``parts_dir``, one
    pass front to back; return their bases. A part closes at the first class folder boundary
    after ``part_bytes`` of member data, so the cuts are the same every run and a rerun streams
    past the members of the parts already written."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    bases: list[str] = []
    part, job, data_bytes = PartBuilder(), None, 0
    trained: set[str] = set()
    val_only: dict[str, list[tuple[str, str]]] = {}  # val members of classes no train folder has (yet)

    def base(k: int) -> Path:
        return parts_dir / f"part-{k:05d}"

    skip = part_done(base(0))  # the current part was written by an earlier run: stream past it

    def close_part() -> None:
        nonlocal part, data_bytes, skip
        b = base(len(bases))
        if not skip:
            part.write(b)
        bases.append(str(b))
        part, data_bytes, skip = PartBuilder(), 0, part_done(base(len(bases)))

    stream = BlockStream(gzip_blocks(archive, 1))
    try:
        with stream:
            reader = TarReader(stream)
            for member in reader:
                where = release_member_split(member.name)
                if not member.is_file and (where is None or len(where[2]) <= 1):
                    continue  # a directory of the layout itself (imagenet21k_resized/...): not an entry
                split, top, rest = where if where is not None else (None, None, [])
                folder = (split, rest[0]) if len(rest) == 2 and CLASS_DIR_RE.match(rest[0]) else None
                if job is not None and (folder is None or folder != (job.split, job.wnid)):
                    if not skip:
                        job.finish()
                    job = None
                    if data_bytes >= part_bytes:
                        close_part()
                data_bytes += member.size
                if folder is None:
                    if not skip:
                        part.entries += 1
                        part.rejects.append(reject_row(member.name, None, "not_in_a_class_folder",
                                                       "expected SPLIT/nXXXXXXXX/FILE"))
                    continue
                if job is None:
                    c = Container(f"{top}/{rest[0]}", rest[0], member.name, 0, 0, "folder", 0, split)
                    job = ReleaseFolderJob(c, known(rest[0]), settings, part)
                if split == "train":
                    trained.add(job.wnid)
                elif split == "validation":
                    val_only.setdefault(job.wnid, []).append((rest[1], f"{top}/{rest[0]}/{rest[1]}"))
                if not skip:
                    job.add(replace(member, name=rest[1]), reader.read_data)
                if progress:
                    progress(stream.tell())
            reader.finish()
    except TarDamage as exc:
        raise ArchiveError(f"truncated or corrupt archive {archive}: {exc} (offsets count inflated bytes)") from None
    except StreamError as exc:
        raise ArchiveError(f"truncated or corrupt gzip archive {archive}: inflating failed after byte "
                           f"{stream.tell()} of the tar inside ({exc})") from None
    if job is not None and not skip:
        job.finish()
    close_part()
    # val images of classes without a train folder: rejected here, left out by the plan
    orphans = PartBuilder()
    for wnid in sorted(w for w in set(val_only) - trained if known(w)):  # (unplaceable ones: a dropped class row)
        for name, path in val_only[wnid]:
            key = name.rsplit(".", 1)[0]
            orphans.rejects.append(reject_row(path, wnid, *orphan_reason(wnid), key))
    remove_stale_temp_files_of(parts_dir / "part-orphans")
    orphans.write(parts_dir / "part-orphans")
    return bases + [str(parts_dir / "part-orphans")]


def timm_w21_wnids() -> list[str] | None:
    """timm's list of the download's 10,450 classes (``imagenet21k_miil_w21_synsets.txt``), found
    without importing timm (or torch); None when timm is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "_info" / "imagenet21k_miil_w21_synsets.txt"
    return path.read_text().split() if path.is_file() else None


def val_order_match(samples: pa.Table) -> dict:
    """Which rule picks each class's val images among its train + val images: the first N by
    name bytewise (``first``) and/or as ``ls`` lists them under en_US.UTF-8 (``first_en_us``);
    counts over the classes with validation images."""
    from pipeline.convert import ls_order_key

    names: dict[str, tuple[list[str], list[str]]] = {}
    columns = [samples.column(c).to_pylist() for c in ("wnid", "member", "split")]
    for wnid, member, split in zip(*columns):
        names.setdefault(wnid, ([], []))[split == "validation"].append(member)
    counts = {"classes": 0, "first": 0, "first_en_us": 0}
    for train, val in names.values():
        if not val:
            continue
        every, want = train + val, set(val)
        counts["classes"] += 1
        counts["first"] += set(sorted(every)[:len(val)]) == want
        counts["first_en_us"] += set(sorted(every, key=ls_order_key)[:len(val)]) == want
    return counts


#: The wnid lists of a release build against timm's w21 list (``stats.json`` keeps counts and examples).
VS_TIMM_FILE = "release_vs_timm_w21.json"
EXAMPLES = 10


def release_report(samples: pa.Table, class_list: list[str], summaries: list[dict], tree_source: str) -> tuple:
    """``(stats.json → release, the wnid lists or None)``: images copied / re-encoded, the class
    list against timm's w21 list (counts and a few examples; every wnid in the lists, for
    :data:`VS_TIMM_FILE`), which val rule the val folder follows, and the tree source used."""
    report = {"copied": sum(s.get("copied", 0) for s in summaries),
              "resized": sum(s.get("resized", 0) for s in summaries),
              "val_order": val_order_match(samples), "tree_source": tree_source}
    official = timm_w21_wnids()
    if official is None:
        return report, None
    mine, theirs = set(class_list), set(official)
    lists = {"missing": sorted(theirs - mine), "extra": sorted(mine - theirs)}
    report["vs_timm_w21"] = {"classes": len(theirs), "file": VS_TIMM_FILE,
                             **{k: len(v) for k, v in lists.items()},
                             **{f"{k}_examples": v[:EXAMPLES] for k, v in lists.items()}}
    return report, lists
