"""Sequential byte streams for the tar walker: file ranges and gzip in place, read ahead in a thread.

The build reads the raw archive front to back, once. Every stream here offers ``read(n)`` /
``skip(n)`` / ``tell()`` (source offsets), what :class:`pipeline.tarstream.TarReader` walks:

* :class:`BlockStream` turns an iterator of blocks (``FILE_BLOCK`` bytes from ``os.pread``, or
  inflated gzip output) into that, while a thread fetches the next blocks: file reads and gzip
  inflation (both release the GIL) overlap the image work of the consuming thread;
* :class:`PreadStream` reads a file with one ``os.pread`` per ``read`` and nothing ahead; its
  ``skip`` only moves the position, so walking a tar whose data is not wanted (the listing of the
  fall11 outer tar) reads its headers alone;
* :class:`MemoryStream` is bytes already in memory (a class tar handed over whole).

* :func:`file_blocks` — ``[start, end)`` of a file with unbuffered ``pread`` calls in increasing
  offset order (no read-ahead of a Python buffer beyond ``end``, no seeks back).
* :func:`gzip_blocks` — a whole ``.gz`` file inflated by ``isal`` (one thread, read front to
  back) or ``rapidgzip`` (in parallel on ``threads`` threads). Corrupt data raises
  :class:`StreamError`.
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Callable, Iterator

FILE_BLOCK = 1 << 20  # larger blocks cost page faults (a fresh mmap each); 1 MiB ones are reused
PREFETCH_BLOCKS = 8
_DONE = object()


class StreamError(RuntimeError):
    """The source failed while being read (I/O error, corrupt gzip data)."""


def file_blocks(path: str | os.PathLike, start: int = 0, end: int | None = None,
                block: int = FILE_BLOCK) -> Iterator[bytes]:
    """``[start, end)`` of ``path`` (``end=None``: to the end of the file) in blocks, front to back."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if end is None:
            end = os.fstat(fd).st_size
        pos = start
        while pos < end:
            data = os.pread(fd, min(block, end - pos), pos)
            if not data:
                return  # the file is shorter than ``end``: the reader sees a short stream
            pos += len(data)
            yield data
    finally:
        os.close(fd)


def gzip_blocks(path: str | os.PathLike, threads: int = 1, block: int = FILE_BLOCK) -> Iterator[bytes]:
    """The inflated content of the gzip file ``path`` (all its members), in blocks.

    One thread: ``isal``, reading the file once front to back; corrupt or cut-short data raises
    :class:`StreamError`. More threads: ``rapidgzip``'s parallel inflate for hosts with many cores
    (it reads ahead in chunks, so some of the file is read twice, and returns what it could inflate
    of a cut-short file: the tar layer above reports that cut). ``isal`` is the fastest
    single-thread inflater here; for a file ``GZ``, compare::

        .venv/bin/python -m timeit -s "import isal.isal_zlib as z; d = open('GZ', 'rb').read()" "z.decompressobj(31).decompress(d)"
        .venv/bin/python -m timeit -s "import zlib as z; d = open('GZ', 'rb').read()" "z.decompressobj(31).decompress(d)"
    """
    if threads > 1:
        yield from _rapidgzip_blocks(path, threads, block)
        return
    from isal import isal_zlib

    inflater, started = isal_zlib.decompressobj(wbits=31), False
    with open(path, "rb", buffering=0) as f:
        while raw := f.read(block):
            while raw:
                try:
                    out = inflater.decompress(raw)
                except isal_zlib.error as exc:
                    raise StreamError(f"corrupt gzip data: {exc}") from None
                started = True
                if out:
                    yield out
                raw = b""
                if inflater.eof:  # a gzip member ends; another may follow
                    raw, inflater, started = inflater.unused_data, isal_zlib.decompressobj(wbits=31), False
    if started and not inflater.eof:
        raise StreamError("the gzip data ends before its end-of-stream marker (a truncated download?)")


def _rapidgzip_blocks(path, threads: int, block: int) -> Iterator[bytes]:
    import rapidgzip

    try:
        with rapidgzip.open(os.fspath(path), parallelization=threads) as f:  # closed always
            while data := f.read(block):
                yield data
    except ValueError as exc:  # rapidgzip reports corrupt deflate data as ValueError
        detail = str(exc).split("] ", 1)[-1].split("!", 1)[0]  # its first sentence, without thread ids
        raise StreamError(f"corrupt gzip data: {detail}") from None


class BlockStream:
    """``read`` / ``skip`` / ``tell`` over blocks that a background thread fetches ahead.

    ``offset`` is the position of the first block in its source, so :meth:`tell` gives source
    offsets. Errors of the block iterator are raised by the read that reaches them. Use as a
    context manager (or call :meth:`close`) so the thread stops when the reader stops early.
    """

    def __init__(self, blocks: Iterator[bytes], offset: int = 0, prefetch: int = PREFETCH_BLOCKS):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._buf = memoryview(b"")
        self._pos = offset
        self._eof = False
        self._thread = threading.Thread(target=self._produce, args=(blocks,), daemon=True)
        self._thread.start()

    def _produce(self, blocks: Iterator[bytes]) -> None:
        try:
            for data in blocks:
                if self._stop.is_set():
                    break
                self._put(data)
        except BaseException as exc:  # handed to the reader, raised there
            self._put(exc)
        finally:
            close = getattr(blocks, "close", None)
            if close:
                close()
            self._put(_DONE)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _fill(self) -> bool:
        """Make the buffer non-empty; False at the end of the stream."""
        while not self._buf:
            if self._eof:
                return False
            item = self._queue.get()
            if item is _DONE:
                self._eof = True
                return False
            if isinstance(item, BaseException):
                self._eof = True
                if isinstance(item, OSError):
                    raise StreamError(f"read failed: {item}") from item
                raise item
            self._buf = memoryview(item)
        return True

    def tell(self) -> int:
        return self._pos

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the stream)."""
        if self._buf and len(self._buf) >= n:  # the common case: one slice of the current block
            out = bytes(self._buf[:n])
            self._buf = self._buf[n:]
            self._pos += n
            return out
        parts, need = [], n
        while need and self._fill():
            take = self._buf[:need]
            parts.append(bytes(take))
            self._buf = self._buf[len(take):]
            need -= len(take)
        out = b"".join(parts)
        self._pos += len(out)
        return out

    def copy_to(self, out, n: int) -> int:
        """Write up to ``n`` bytes to the file ``out`` straight from the blocks; return how many."""
        need = n
        while need and self._fill():
            take = self._buf[:need]
            out.write(take)
            self._buf = self._buf[len(take):]
            need -= len(take)
        self._pos += n - need
        return n - need

    def skip(self, n: int) -> int:
        """Drop up to ``n`` bytes; return how many were dropped."""
        need = n
        while need and self._fill():
            take = min(need, len(self._buf))
            self._buf = self._buf[take:]
            need -= take
        self._pos += n - need
        return n - need

    def close(self) -> None:
        self._stop.set()
        self._buf = memoryview(b"")
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()

    def __enter__(self) -> "BlockStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PreadStream:
    """``read`` / ``skip`` / ``tell`` over the file ``path``: one ``os.pread`` per ``read``, nothing
    read ahead, and ``skip`` a seek (no system call). Use as a context manager (or :meth:`close`)."""

    def __init__(self, path: str | os.PathLike, offset: int = 0):
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        self._pos = offset

    def tell(self) -> int:
        return self._pos

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the file)."""
        n = min(n, self.size - self._pos)
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._pos)
        self._pos += len(data)
        return data

    def skip(self, n: int) -> int:
        """Move on up to ``n`` bytes (not past the end of the file); return how many."""
        n = max(0, min(n, self.size - self._pos))
        self._pos += n
        return n

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "PreadStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MemoryStream:
    """``read`` / ``skip`` / ``tell`` over bytes in memory (``offset``: the position of their first byte)."""

    def __init__(self, data: bytes, offset: int = 0):
        self._view, self._start, self._pos = memoryview(data), offset, 0

    def tell(self) -> int:
        return self._start + self._pos

    def read(self, n: int) -> bytes:
        out = bytes(self._view[self._pos:self._pos + n])
        self._pos += len(out)
        return out

    def skip(self, n: int) -> int:
        n = max(0, min(n, len(self._view) - self._pos))
        self._pos += n
        return n


def read_files_ahead(paths: list, read: Callable[[str], bytes], prefetch: int = 8,
                     batch_bytes: int = 1 << 20) -> Iterator[tuple[object, bytes | OSError]]:
    """``(path, bytes or the OSError)`` for each path in order, read ahead in a thread: up to
    ``prefetch`` batches of files, a batch closing at ``batch_bytes`` (one queue hand-over per
    batch, not per file: small files cost a thread switch each otherwise)."""
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        items, size = [], 0
        for p in paths:
            if stop.is_set():
                return
            try:
                data = read(p)
                size += len(data)
                items.append((p, data))
            except OSError as exc:
                items.append((p, exc))
            if size >= batch_bytes:
                if not hand_over(items):
                    return
                items, size = [], 0
        if items and not hand_over(items):
            return
        q.put(_DONE)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            items = q.get()
            if items is _DONE:
                return
            yield from items
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
