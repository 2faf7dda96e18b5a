"""Stage 1 — convert: class containers read front to back, each class kept or dropped, its images squish-resized.

Everything a class needs is decided inside the one task that reads it, so the raw archive is
read once, in order, and never again:

* its members are checked by name (:func:`pipeline.members.member_name_problem`) and a key
  stored twice is a ``duplicate_key`` reject;
* it is kept when the tree source can place its wnid and it has at least ``min_images`` image
  members (the released rule: more than 500). Raw bytes are held back only until that count is
  reached (at most ``min_images`` images); a class that ends short is dropped undecoded;
* its images are squish-resized (:mod:`pipeline.images`); what fails to decode is a reject row;
* the validation images are the first ``val_per_class`` of those that decoded, in bytewise
  member name order (``val_rule=first``), in the order ``ls`` lists them under en_US.UTF-8
  (``first_en_us``, :func:`ls_order_key`) or a seeded draw (``random``); the others are train
  samples, ordered by :func:`pipeline.parts.train_order`.

Damage in a class tar (a cut-short or lying header, a read error) keeps every member read before
it and adds one reject row naming the byte offset. The drivers read three layouts:
:func:`convert_tar_range` (a run of class tars inside the fall11 tar, one sequential read),
:func:`convert_tar_files` (class tar files) and :func:`convert_folders` (class folders); the
winter21 ``.tar.gz`` is :mod:`pipeline.gzip_convert`'s.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from pipeline.archive import ArchiveError, Container, folder_files
from pipeline.images import BadImage, squish_resize_keeping_pixels
from pipeline.near_duplicates import centre_cells, eval_fingerprints, fingerprints_of_cells, jpeg_eval_fingerprints
from pipeline.members import member_name_problem, reject_row
from pipeline.parts import PartBuilder, train_order
from pipeline.streams import BlockStream, MemoryStream, StreamError, file_blocks, read_files_ahead
from pipeline.tarstream import Entry, TarDamage, TarReader

MAX_MEMBER_BYTES = 512 << 20  # larger members are rejected unread
VAL_RULES = ("first", "first_en_us", "random")
Progress = Callable[[int], None] | None  # called with the bytes (or folders) done so far


@dataclass(frozen=True)
class ConvertSettings:
    """What a convert task's output depends on (besides the archive)."""

    image_size: int = 224
    jpeg_quality: int = 95
    min_images: int = 501
    val_per_class: int = 50
    val_rule: str = "first"
    seed: int = 0
    fingerprint_copies: bool = False  # released layout: decode ready JPEGs for their fingerprint too

    def __post_init__(self):
        if self.val_rule not in VAL_RULES:
            raise ValueError(f"val_rule must be one of {VAL_RULES}, not {self.val_rule!r}")


def convert_image(data: bytes, size: int, quality: int) -> tuple:
    """``("ok", jpeg, width, height, cells, image)`` or ``("reject", reason, detail)``; never raises
    for bad bytes. The cells (:func:`pipeline.near_duplicates.centre_cells` of the resized pixels)
    are made a fingerprint with the class's others, in one batch (:func:`fingerprints_of`); the
    resized image itself is for a validation image's variants (callers keep only those)."""
    try:
        jpg, (w, h), image = squish_resize_keeping_pixels(data, size=size, quality=quality)
        cells = centre_cells(image)
    except BadImage as exc:
        return "reject", exc.reason, str(exc)
    except Exception as exc:  # never stop a long build for one image; record it
        return "reject", "decode_error", f"{type(exc).__name__}: {exc}"
    return "ok", jpg, w, h, cells, image


def fingerprints_of(cells: list) -> list[int]:
    """The fingerprints of :func:`convert_image`'s cells, computed as one batch."""
    return fingerprints_of_cells(cells).tolist()


class ContainerJob:
    """One class container's members, in the order they are read: each goes in with :meth:`add`,
    is admitted as an image of the class by :meth:`admit` (or rejected with a reason) and, if
    admitted, handed to :meth:`take`; :meth:`finish` adds the class's rows to the part.

    The drivers (:func:`convert_tar_range`, :func:`convert_tar_files`, :func:`convert_folders`,
    the ``.tar.gz`` readers) know only this protocol: :class:`ClassJob` for the raw layouts,
    :class:`pipeline.release.ReleaseFolderJob` for the processed download.
    """

    #: Class folders' files are read ahead in a thread while the previous ones are decoded.
    read_ahead = True

    def __init__(self, container: Container, known: bool, settings: ConvertSettings, part: PartBuilder):
        self.container, self.wnid, self.known = container, container.wnid, known
        self.settings, self.part = settings, part
        self.n_entries = 0
        self.n_images = 0  # members admitted
        self.keys: set[str] = set()

    @staticmethod
    def wants(container: Container, known: Callable[[str], bool]) -> bool:
        """Whether a folder's files are read ahead (a class the tree cannot place is never read)."""
        return known(container.wnid)

    def member_label(self, member: str) -> str:
        """How a reject row names a member of this container."""
        return member

    def reject(self, member: str, reason: str, detail: str = "", key: str | None = None, stage: str = "read"):
        self.part.rejects.append(reject_row(self.member_label(member), self.wnid, reason, detail, key, stage))

    def admit(self, entry: Entry) -> str | None:
        """The key of ``entry`` when it is an image member new to this class (counted in
        :attr:`n_images`, its key remembered); otherwise it is rejected and None returned."""
        if not entry.is_file:
            self.reject(entry.name, "not_a_file", "directory, link or device member")
            return None
        problem = member_name_problem(entry.name, self.wnid)
        if problem:
            self.reject(entry.name, *problem)
            return None
        key = entry.name.rsplit(".", 1)[0]
        if key in self.keys:
            self.reject(entry.name, "duplicate_key", f"another member of {self.wnid} has the same key", key)
            return None
        self.keys.add(key)
        self.n_images += 1
        return key

    def add(self, entry: Entry, read: Callable[[], bytes] | None) -> None:
        """One member; ``read()`` returns its data (called only when the data is needed)."""
        self.n_entries += 1
        key = self.admit(entry)
        if key is not None:
            self.take(entry, key, read)

    def take(self, entry: Entry, key: str, read: Callable[[], bytes] | None) -> None:
        """An admitted image member (``key``): read, convert or copy it, or count it only."""
        raise NotImplementedError

    def read_member(self, entry: Entry, key: str, read: Callable[[], bytes]) -> bytes | None:
        """``read()``, or None after rejecting the member when the read fails."""
        try:
            return read()
        except OSError as exc:
            self.reject(entry.name, "unreadable_file", str(exc), key)
            return None

    def damaged(self, offset: int, message: str, reason: str) -> None:
        """The container is unreadable from ``offset`` on: one reject row for the rest."""
        raise NotImplementedError

    def finish(self) -> None:
        """Add the class row (and what else the container gave) to the part."""
        raise NotImplementedError

    def _count_entries(self, what: str) -> None:
        """Add the entries seen to the part's count; an empty container is one (rejected) entry."""
        if self.n_entries == 0:
            self.n_entries = 1
            self.part.rejects.append(reject_row(self.container.name, self.wnid, "empty_class",
                                                f"the class {what} holds no files"))
        self.part.entries += self.n_entries


class ClassJob(ContainerJob):
    """One class container of a raw layout: kept or dropped, its images squish-resized."""

    def __init__(self, container: Container, known: bool, settings: ConvertSettings, part: PartBuilder):
        super().__init__(container, known, settings, part)
        self.held: list[tuple[str, str, bytes]] = []  # read, not yet decided kept
        self.converted: list[tuple[str, str, tuple]] = []  # (member, key, convert_image result less its image)
        self.kept = False
        self.val_pixels = ValidationPixels(settings)

    def _convert(self, member: str, key: str, data: bytes) -> None:
        result = convert_image(data, self.settings.image_size, self.settings.jpeg_quality)
        if result[0] == "ok":
            self.val_pixels.offer(member, result[5])
            result = result[:5]
        self.converted.append((member, key, result))

    def take(self, entry: Entry, key: str, read: Callable[[], bytes] | None) -> None:
        if not self.known:
            return  # counted for the accounting; a class the tree cannot place is never decoded
        if entry.size > MAX_MEMBER_BYTES:
            return self.reject(entry.name, "too_large", f"{entry.size} bytes", key, stage="decode")
        data = self.read_member(entry, key, read)
        if data is None:
            return
        if self.kept:
            return self._convert(entry.name, key, data)
        self.held.append((entry.name, key, data))
        if self.n_images >= self.settings.min_images:
            self.kept = True
            for held in self.held:
                self._convert(*held)
            self.held = []

    def damaged(self, offset: int, message: str, reason: str = "damaged_class_tar") -> None:
        """The container is unreadable from ``offset`` on: one reject row for the rest."""
        self.n_entries += 1
        self.reject(self.container.name, reason,
                    f"{message}; {self.n_entries - 1} member(s) before byte {offset} were read")

    def finish(self) -> None:
        """Add the class row, its samples and decode rejects to the part."""
        self._count_entries("container")
        drop = None if self.known else "not_in_wordnet"
        if drop is None and self.n_images < self.settings.min_images:
            drop = "too_few_images"
        self.part.add_class(self.wnid, self.container.name, self.n_images, drop)
        if drop is not None:
            self.held = []
            return
        ok = []
        for member, key, result in self.converted:
            if result[0] == "ok":
                ok.append((member, key, *result[1:]))
            else:
                self.reject(member, result[1], result[2], key, stage="decode")
        self.converted = []
        ok.sort(key=lambda row: row[0])  # by member name (unique in a class)
        val = validation_positions(len(ok), self.settings, self.wnid, [member for member, *_ in ok])
        fingerprints = fingerprints_of([cells for *_, cells in ok])
        for i, ((member, key, jpg, w, h, _), pixels_fingerprint) in enumerate(zip(ok, fingerprints)):
            if i in val:
                image = self.val_pixels.image(member)
                variants = eval_fingerprints(image).tolist() if image is not None else jpeg_eval_fingerprints(jpg)
                split, order = "validation", val[i]
            else:
                split, order, variants = "train", train_order(self.settings.seed, key), None
            self.part.add_sample(key, self.wnid, member, split, order, jpg, w, h, pixels_fingerprint, variants)


class ValidationPixels:
    """The squish-resized images of the members first under a name-based val rule so far (at most
    ``val_per_class``): when the class ends they are its validation images, whose variants
    (:func:`pipeline.near_duplicates.eval_fingerprints`) are then taken from these pixels, not
    from a decode of their JPEG. Under the ``random`` rule, which picks positions only once the
    class's size is known, it keeps nothing."""

    def __init__(self, settings: ConvertSettings):
        self.rule_key = NAME_ORDERS.get(settings.val_rule)
        self.limit = settings.val_per_class if self.rule_key else 0
        self.first: list[tuple] = []  # (rule key, member), sorted
        self.images: dict[str, object] = {}

    def offer(self, member: str, image) -> None:
        if not self.limit:
            return
        entry = (self.rule_key(member), member)
        if len(self.first) == self.limit:
            if entry >= self.first[-1]:
                return
            del self.images[self.first.pop()[1]]
        bisect.insort(self.first, entry)
        self.images[member] = image

    def image(self, member: str):
        """The member's pixels, or None where they were not kept."""
        return self.images.get(member)


def ls_order_key(name: str) -> tuple:
    """Where ``ls`` (and a shell glob) lists ``name`` under the en_US.UTF-8 locale, without
    needing that locale: glibc's ISO 14651 collation compares letters and digits first, case-
    insensitively, ignoring punctuation (``_`` and ``.``), then lowercase before uppercase, then
    the rest. So ``n01440764_10000.JPEG`` ("n0144076410000jpeg") lists before
    ``n01440764_1000.JPEG`` ("n014407641000jpeg"), where a bytewise sort puts it after."""
    alnum = [c for c in name if c.isalnum()]
    return "".join(alnum).lower(), tuple(c.isupper() for c in alnum), name


#: The val rules that take a class's first names, and the order of names each takes them in.
NAME_ORDERS: dict[str, Callable[[str], object]] = {"first": str, "first_en_us": ls_order_key}


def validation_positions(n: int, settings: ConvertSettings, wnid: str, names: list[str] | None = None) -> dict[int, int]:
    """``{position in sorted member order: rank}`` of the validation images of a class of ``n``
    (``names``: the members in sorted order, which ``first_en_us`` re-sorts like ``ls``)."""
    k = min(settings.val_per_class, n)
    if settings.val_rule == "first":
        return {i: i for i in range(k)}
    if settings.val_rule == "first_en_us":
        listed = sorted(range(n), key=lambda i: ls_order_key(names[i]))
        return {i: r for r, i in enumerate(sorted(listed[:k]))}
    rng = np.random.default_rng([settings.seed, 1, int(wnid[1:])])
    return {int(i): r for r, i in enumerate(sorted(rng.choice(n, size=k, replace=False)))}


def reject_container(container: Container, part: PartBuilder) -> None:
    """A container that is not read: not a class container, or a second one of its wnid."""
    part.entries += 1
    if container.kind == "duplicate":
        part.rejects.append(reject_row(container.name, container.wnid, "duplicate_class_container",
                                       f"{container.wnid} appears earlier in the archive"))
    else:
        reason = "not_a_class_container" if container.kind == "other" else "bad_class_name"
        part.rejects.append(reject_row(container.name, None, reason, "expected nXXXXXXXX.tar or an nXXXXXXXX/ folder"))


def _is_class(container: Container) -> bool:
    return container.wnid is not None and container.kind in ("tar", "folder", "val_only")


def read_class_tar(job: ClassJob, stream, end: int) -> None:
    """Feed the class tar at ``stream.tell()`` (ending by ``end``) to ``job``; damage ends it with
    a reject. The stream is left at ``end``."""
    reader = TarReader(stream, end)
    try:
        for entry in reader:
            job.add(entry, reader.read_data)
    except TarDamage as exc:
        job.damaged(exc.offset, str(exc))
    finally:
        reader.finish()


def convert_tar_range(archive: str | Path, containers: list[Container], settings: ConvertSettings,
                      known: Callable[[str], bool], progress: Progress = None) -> PartBuilder:
    """Consecutive containers of a fall11 outer tar, read as one byte range front to back."""
    part = PartBuilder()
    start = containers[0].offset
    end = max(c.offset + c.size for c in containers)
    try:
        with BlockStream(file_blocks(archive, start, end), offset=start) as stream:
            for c in containers:
                stream.skip(c.offset - stream.tell())  # the outer header(s) before it
                if _is_class(c):
                    job = ClassJob(c, known(c.wnid), settings, part)
                    read_class_tar(job, stream, c.offset + c.size)
                    job.finish()
                else:
                    reject_container(c, part)
                part.bytes_read += c.size
                if progress:
                    progress(part.bytes_read)
    except StreamError as exc:
        raise ArchiveError(f"reading {archive}: {exc}") from None
    return part


def convert_tar_files(root: str | Path, containers: list[Container], settings: ConvertSettings,
                      known: Callable[[str], bool], progress: Progress = None,
                      part: PartBuilder | None = None) -> PartBuilder:
    """Class tar files of a tars-dir, each read front to back (added to ``part`` if given)."""
    part = PartBuilder() if part is None else part
    for c in containers:
        if not _is_class(c):
            reject_container(c, part)
            continue
        job = ClassJob(c, known(c.wnid), settings, part)
        path = Path(root) / c.source
        try:
            size = path.stat().st_size
            with BlockStream(file_blocks(path, 0, size)) as stream:
                read_class_tar(job, stream, size)
        except (OSError, StreamError) as exc:
            job.damaged(0, f"cannot read {c.name}: {exc}", reason="unreadable_class_tar")
        job.finish()
        part.bytes_read += c.size
        if progress:
            progress(part.bytes_read)
    return part


def convert_tar_bytes(container: Container, data: bytes, settings: ConvertSettings, known: Callable[[str], bool],
                      part: PartBuilder) -> None:
    """One class tar held in memory (a winter21 class tar handed over by the reading process)."""
    job = ClassJob(container, known(container.wnid), settings, part)
    read_class_tar(job, MemoryStream(data), len(data))
    job.finish()
    part.bytes_read += len(data)


def convert_folders(root: str | Path, containers: list[Container], settings: ConvertSettings,
                    known: Callable[[str], bool], progress: Progress = None,
                    job_class: type[ContainerJob] | None = None) -> PartBuilder:
    """Class folders of a folders-dir (or, with ``job_class`` :class:`pipeline.release.ReleaseFolderJob`,
    of the released layout: :func:`pipeline.release.convert_release_folders`); image files are
    read a few ahead of the conversion when ``job_class.read_ahead``."""
    job_class = job_class or ClassJob
    part = PartBuilder()
    listed: list[tuple[Container, list | OSError]] = []
    wanted = []
    for c in containers:
        if not _is_class(c):
            listed.append((c, []))
            continue
        try:
            files = folder_files(root, c)
        except OSError as exc:
            listed.append((c, exc))
            continue
        listed.append((c, files))
        if job_class.wants(c, known):
            wanted += [path for name, path, is_file in files
                       if is_file and member_name_problem(name, c.wnid) is None]
    ahead = read_files_ahead(wanted, _read_file) if job_class.read_ahead else _read_files(wanted)
    done = 0
    try:
        for c, files in listed:
            if not _is_class(c):
                reject_container(c, part)
                continue
            job = job_class(c, known(c.wnid), settings, part)
            if isinstance(files, OSError):
                job.damaged(0, f"cannot list {c.name}: {files}", reason="unreadable_class_folder")
            else:
                for name, path, is_file in files:
                    job.add(Entry(name, 0, is_file), _next_read(ahead, path))
            job.finish()
            done += 1
            if progress:
                progress(done)
    finally:
        ahead.close()
    return part


def _read_files(paths: list[str]):
    """``(path, bytes or the OSError)`` in order, read by the caller's thread (see ``read_ahead``)."""
    for path in paths:
        try:
            yield path, _read_file(path)
        except OSError as exc:
            yield path, exc


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _next_read(ahead: Iterator, path: str) -> Callable[[], bytes]:
    """A reader of ``path`` from the read-ahead (which follows the order the class jobs ask in)."""
    def read() -> bytes:
        for got_path, data in ahead:  # files read ahead but not asked for (a duplicate key) are dropped
            if got_path == path:
                if isinstance(data, OSError):
                    raise data
                return data
        raise RuntimeError(f"read-ahead ended before {path}")
    return read
