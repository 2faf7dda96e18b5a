"""Stage 1 for the winter21 ``.tar.gz``: inflated once, front to back, converted on every core of the host.

gzip can only be read from its start, so one process reads the stream (inflated in a background
thread: ``isal``, or ``rapidgzip`` in parallel on hosts with many cores) and hands each class tar
to a pool of converter processes through a small spool in the work dir: a class tar is written there, and
read back into memory and deleted by the converter that takes it, so at most ``2 + processes / 8``
class tars are on disk at a time and no copy of the archive builds up (the ``.tar.gz`` is read
in place; the files mostly never leave the page cache). Each converter process converts class
tars with :func:`pipeline.convert.convert_tar_bytes` and writes its own parts. Classes the tree cannot
place, and entries that are not class tars, are settled by the reading process without spooling.

Parts are named by run, so the set of parts depends on timing but the dataset does not (the plan
orders samples by key hash and name, never by part). After a kill, the classes of the parts that
were completed are streamed past without converting.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import traceback
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq

from pipeline.archive import ArchiveError, Container, tar_member_container
from pipeline.convert import ClassJob, ConvertSettings, convert_tar_bytes, read_class_tar, reject_container
from hierarchy.atomic import remove_stale_temp_files_in
from pipeline.parts import SUFFIXES, PartBuilder, part_done
from pipeline.streams import BlockStream, StreamError, gzip_blocks
from pipeline.tarstream import TarDamage, TarReader

POLL_S = 0.2


def completed_classes(parts_dir: Path) -> tuple[list[str], set[str]]:
    """The parts a previous run completed (their bases) and the wnids they hold; removes the
    leftovers of parts it did not complete and its reading-process part (redone every run)."""
    found = {str(path)[:-len(suffix)] for path in parts_dir.glob("part-*")
             for suffix in SUFFIXES if str(path).endswith(suffix)}
    bases, wnids = [], set()
    for base in sorted(found):
        if part_done(base) and not base.endswith("-main"):
            bases.append(base)
            wnids |= set(pq.read_table(f"{base}.classes.parquet", columns=["wnid"]).column("wnid").to_pylist())
        else:
            for suffix in SUFFIXES:
                Path(base + suffix).unlink(missing_ok=True)
    return bases, wnids


def _converter_main(jobs, results, spool: str, base_prefix: str, settings: ConvertSettings,
                    known: Callable[[str], bool], part_bytes: int) -> None:
    """A converter process: class tars from the spool into parts of about ``part_bytes``."""
    parent = os.getppid()
    try:
        written, seq, part = [], 0, PartBuilder()
        while True:
            try:
                container = jobs.get(timeout=POLL_S)
            except queue.Empty:
                if os.getppid() != parent:  # the reading process died (kill -9): stop too
                    return
                continue
            if container is None:
                break
            spooled = Path(spool) / container.source
            data = spooled.read_bytes()
            spooled.unlink()  # off the disk at once: converted from memory
            convert_tar_bytes(container, data, settings, known, part)
            if part.bytes_read >= part_bytes:
                part.write(f"{base_prefix}-{seq:04d}")
                written.append(f"{base_prefix}-{seq:04d}")
                seq, part = seq + 1, PartBuilder()
        if part.classes or part.rejects:
            part.write(f"{base_prefix}-{seq:04d}")
            written.append(f"{base_prefix}-{seq:04d}")
        results.put(("done", written))
    except BaseException:  # the reading process raises it
        results.put(("error", traceback.format_exc()))


class _Pool:
    """Converter processes fed through a bounded queue; errors and deaths surface in the reader."""

    def __init__(self, processes: int, spool: Path, base_prefix: str, settings: ConvertSettings,
                 known: Callable[[str], bool], part_bytes: int):
        ctx = multiprocessing.get_context("fork")  # the children inherit the imports: instant start
        # a short queue: the reader inflates a class tar far faster than one is converted
        self.jobs, self.results = ctx.Queue(maxsize=1 + processes // 8), ctx.Queue()
        self.procs = [ctx.Process(target=_converter_main, daemon=True,
                                  args=(self.jobs, self.results, str(spool), f"{base_prefix}-{i:03d}",
                                        settings, known, part_bytes))
                      for i in range(processes)]
        for proc in self.procs:
            proc.start()
        self.parts: list[str] = []
        self.finished = 0

    def _check(self, wait: float = 0.0) -> None:
        """Collect finished converters (waiting up to ``wait`` s for one); raise their errors."""
        try:
            while True:
                status, value = self.results.get(timeout=wait) if wait else self.results.get_nowait()
                wait = 0.0
                if status == "error":
                    raise RuntimeError(f"a converter process failed:\n{value}")
                self.parts += value
                self.finished += 1
        except queue.Empty:
            pass
        dead = [p for p in self.procs if p.exitcode not in (None, 0)]
        if dead:
            raise RuntimeError(f"a converter process died (exit code {dead[0].exitcode})")

    def submit(self, container: Container | None) -> None:
        while True:
            self._check()
            try:
                self.jobs.put(container, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def close(self) -> list[str]:
        """Let the converters finish; return the parts they wrote."""
        for _ in self.procs:
            self.submit(None)
        while self.finished < len(self.procs):
            self._check(wait=POLL_S)
        for proc in self.procs:
            proc.join()
        return sorted(self.parts)

    def terminate(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
            proc.join()


def convert_gzip(archive: str | Path, parts_dir: Path, settings: ConvertSettings, known: Callable[[str], bool],
                 processes: int, inflate_threads: int = 1, part_bytes: int = 1 << 30,
                 progress: Callable[[int], None] | None = None) -> list[str]:
    """Convert the ``.tar.gz`` into parts under ``parts_dir``; return every part's base, sorted.

    A truncated or corrupt archive raises :class:`ArchiveError` naming the (inflated) byte offset.
    """
    parts_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files_in(parts_dir)
    previous, done = completed_classes(parts_dir)
    run = uuid.uuid4().hex[:8]
    spool = parts_dir / f"spool-{run}"
    for stale in parts_dir.glob("spool-*"):
        shutil.rmtree(stale, ignore_errors=True)
    spool.mkdir()
    main_part, seen = PartBuilder(), set()
    pool = _Pool(max(1, processes), spool, str(parts_dir / f"part-{run}"), settings, known, part_bytes)
    stream = BlockStream(gzip_blocks(archive, inflate_threads))  # started after the fork
    try:
        with stream:
            for member in TarReader(stream):
                c = tar_member_container(member, source=member.name)
                if c.wnid is not None and c.kind == "tar":
                    if c.wnid in seen:
                        c = replace(c, kind="duplicate")
                    seen.add(c.wnid)
                wnid, kind = c.wnid, c.kind
                if kind == "tar" and wnid in done:
                    pass  # converted by an earlier run: its data is skipped
                elif kind == "tar" and known(wnid):
                    _spool(stream, member.size, spool / c.name)
                    pool.submit(c)
                elif kind == "tar":  # not placeable: its members are counted here, never decoded
                    job = ClassJob(c, False, settings, main_part)
                    read_class_tar(job, stream, member.data_offset + member.size)
                    job.finish()
                else:
                    reject_container(c, main_part)
                if progress:
                    progress(stream.tell())
            parts = pool.close()
    except TarDamage as exc:
        pool.terminate()
        raise ArchiveError(f"truncated or corrupt archive {archive}: {exc} (offsets count inflated bytes)") from None
    except StreamError as exc:
        pool.terminate()
        raise ArchiveError(f"truncated or corrupt gzip archive {archive}: inflating failed after byte "
                           f"{stream.tell()} of the tar inside ({exc})") from None
    except BaseException:
        pool.terminate()
        raise
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    main_part.write(parts_dir / f"part-{run}-main")
    return sorted(previous + parts + [str(parts_dir / f"part-{run}-main")])


def _spool(stream: BlockStream, size: int, path: Path) -> None:
    """Copy the next ``size`` bytes of the stream (a class tar) into a spool file."""
    with open(path, "wb") as out:
        if stream.copy_to(out, size) < size:
            raise TarDamage(stream.tell(), f"the archive ends inside {path.name} at byte {stream.tell()}")
