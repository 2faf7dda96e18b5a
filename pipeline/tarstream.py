"""The one tar walker: members in order, front to back, and where the damage starts.

:class:`TarReader` walks every tar the build reads — the fall11 outer tar (its listing), a class
tar inside it, a class tar file, a class tar held in memory, the inflated winter21 stream, the
processed download's ``.tar.gz`` — from a stream with ``read(n)`` / ``skip(n)`` / ``tell()``
(:mod:`pipeline.streams`) without going back: header, data, header, ... Headers are parsed by
:func:`parse_header`; GNU long names and pax ``path`` / ``size`` records are applied. A member's
data is read only when the consumer asks for it (:meth:`TarReader.read_data`), otherwise skipped:
on a :class:`pipeline.streams.PreadStream` a skip is a seek, so a listing reads the headers alone.

Each member comes out as an :class:`Entry`, the one entry type of the build (a class folder's
files are entries too). Damage ends the walk with :class:`TarDamage` naming the byte offset, after
every member before it was yielded, as ``tar -x`` extracts what precedes a bad spot: a header cut
short or failing its checksum, a member claiming more bytes than the tar holds, or no
end-of-archive marker.
"""
from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import Iterator

BLOCK = tarfile.BLOCKSIZE
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_LINK_TYPES = (tarfile.SYMTYPE, tarfile.LNKTYPE)
#: Headers of the next member: long names and pax records are applied, the others read and dropped.
_META_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, tarfile.GNUTYPE_LONGLINK, tarfile.XGLTYPE,
               tarfile.SOLARIS_XHDTYPE)


def padded(size: int) -> int:
    """``size`` rounded up to whole tar blocks."""
    return -(-size // BLOCK) * BLOCK


@dataclass(frozen=True, slots=True)
class Entry:
    """One member of a container as it is read: its name as stored (data, not a path), its size,
    whether it is a regular file, and for a tar member the source offsets of its header and its
    data (a class folder's file: size and offsets 0)."""

    name: str
    size: int
    is_file: bool
    offset: int = 0
    data_offset: int = 0


class TarDamage(Exception):
    """The tar is damaged from byte ``offset`` of its source on; ``str()`` says how.

    ``kind``: ``"end"`` (the tar ends where a header, or a long name / pax record, should be),
    ``"header"`` (a header fails its checksum or format; ``detail`` is tarfile's reason),
    ``"overrun"`` (the member ``member`` claims ``size`` bytes the tar does not hold) or
    ``"data"`` (the tar ends inside member data).
    """

    def __init__(self, offset: int, message: str, member: str | None = None, kind: str = "end",
                 detail: str = "", size: int = 0):
        super().__init__(offset, message, member)
        self.offset, self.message, self.member = offset, message, member
        self.kind, self.detail, self.size = kind, detail, size

    def __str__(self) -> str:
        return self.message


class TarReader:
    """Iterate the members (:class:`Entry`) of the tar that starts at ``stream.tell()`` and ends by ``end``.

    ``stream``: anything with ``read(n)``, ``skip(n)`` and ``tell()`` (:mod:`pipeline.streams`).
    ``end`` is the source offset the tar must not run past (a class tar's end inside the outer
    tar, a file's size); None means the end of the stream. Iteration stops at the end-of-archive
    marker; after it, or after damage, :meth:`finish` skips the stream to ``end``.
    """

    def __init__(self, stream, end: int | None = None):
        self.stream, self.end = stream, end
        self._data_end = stream.tell()  # where the current member's (padded) data ends

    def _room(self) -> int | None:
        return None if self.end is None else self.end - self.stream.tell()

    def _read_block(self, what: str) -> bytes:
        offset = self.stream.tell()
        room = self._room()
        buf = self.stream.read(BLOCK if room is None else min(BLOCK, max(room, 0)))
        if len(buf) < BLOCK:
            if not buf:
                raise TarDamage(offset, f"no end-of-archive marker: the tar ends after byte {offset} "
                                        f"where {what} should be")
            raise TarDamage(offset, f"{what} at byte {offset} is cut short ({len(buf)} of {BLOCK} bytes)")
        return buf

    def _read_meta(self, ti, offset: int) -> bytes:
        """The data of a long-name / pax member (small), checked against ``end``."""
        room = self._room()
        if room is not None and padded(ti.size) > room:
            raise TarDamage(offset, f"{ti.size}-byte {ti.type!r} header at byte {offset} runs past the end")
        data = self.stream.read(padded(ti.size))
        if len(data) < padded(ti.size):
            raise TarDamage(offset, f"header data at byte {offset} is cut short")
        return data[: ti.size]

    def __iter__(self) -> Iterator[Entry]:
        long_name = None
        pax: dict[str, str] = {}
        while True:
            self._skip_to(self._data_end)
            offset = self.stream.tell()
            buf = self._read_block("a member header")
            if buf == bytes(BLOCK):
                return  # end-of-archive marker (the second zero block and padding need no reading)
            try:
                ti = parse_header(buf)
            except tarfile.HeaderError as exc:
                raise TarDamage(offset, f"unreadable member header at byte {offset}: {exc}", kind="header",
                                detail=str(exc)) from None
            if ti.type in _META_TYPES:  # applies to the next member
                data = self._read_meta(ti, offset)
                self._data_end = self.stream.tell()
                if ti.type == tarfile.GNUTYPE_LONGNAME:
                    long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                elif ti.type == tarfile.XHDTYPE:
                    pax.update(pax_records(data))
                continue
            name = pax.get("path", long_name if long_name is not None else ti.name)
            size = int(pax["size"]) if "size" in pax else ti.size
            long_name, pax = None, {}
            is_file = ti.type in _FILE_TYPES  # anything else is listed, its data (if any) skipped
            if ti.type in _LINK_TYPES:
                size = 0  # links carry no data whatever the size field says
            data_offset = self.stream.tell()
            room = self._room()
            if room is not None and size > room:
                raise TarDamage(offset, f"member {name!r} at byte {offset} claims {size} bytes but only "
                                        f"{room} remain", member=name, kind="overrun", size=size)
            self._data_end = data_offset + padded(size)
            self._current = (data_offset, size, name, offset)
            yield Entry(name, size, is_file, offset, data_offset)

    def read_data(self) -> bytes:
        """The data of the member just yielded (call before asking for the next one)."""
        data_offset, size, name, offset = self._current
        if self.stream.tell() != data_offset:
            raise RuntimeError("read_data() called twice or after the next member")
        data = self.stream.read(size)
        if len(data) < size:
            raise TarDamage(offset, f"member {name!r} at byte {offset} is cut short: {len(data)} of "
                                    f"{size} bytes", member=name, kind="data")
        return data

    def _skip_to(self, target: int) -> None:
        gap = target - self.stream.tell()
        if gap > 0 and self.stream.skip(gap) < gap:
            raise TarDamage(self.stream.tell(), f"the tar ends inside member data at byte {self.stream.tell()}",
                            kind="data")

    def finish(self) -> None:
        """Skip the stream to ``end`` (the rest of the tar: end marker, padding, damage)."""
        if self.end is not None and self.stream.tell() < self.end:
            self.stream.skip(self.end - self.stream.tell())


class _Header:
    """The fields of a member header the reader uses (what ``tarfile.TarInfo`` would give)."""

    __slots__ = ("name", "size", "type")

    def __init__(self, name: str, size: int, type_: bytes):
        self.name, self.size, self.type = name, size, type_


def parse_header(buf: bytes):
    """Name, size and type of a 512-byte header; raises ``tarfile.HeaderError`` like tarfile.

    Plain USTAR / GNU headers (octal fields, the common case) are parsed here, several times
    faster than ``tarfile.TarInfo.frombuf``; anything else (base-256 sizes, old V7 headers) goes
    to ``tarfile``. The difference is immaterial next to resizing images, but not on the
    processed download's ``.tar.gz``, whose images are copied by the one thread that walks the
    stream: ``.venv/bin/python benchmarks/tar_headers.py`` prints both shares at full scale.
    """
    magic = buf[257:263]
    size_field = buf[124:136]
    if magic in (b"ustar\x00", b"ustar ") and (0x30 <= size_field[0] <= 0x37 or size_field[0] in (0x20, 0)):
        try:
            stored = int(buf[148:156].strip(b" \0") or b"-1", 8)
            size = int(size_field.strip(b" \0") or b"0", 8)
        except ValueError:
            stored, size = -1, 0
        unsigned = sum(buf) - sum(buf[148:156]) + 256
        if stored == unsigned:
            name = buf[:100].split(b"\0", 1)[0]
            if magic == b"ustar\x00" and buf[345] != 0:
                name = buf[345:500].split(b"\0", 1)[0] + b"/" + name
            type_ = buf[156:157]
            if type_ == tarfile.AREGTYPE and name.endswith(b"/"):
                type_ = tarfile.DIRTYPE
            if type_ == tarfile.DIRTYPE:
                name = name.rstrip(b"/")
            return _Header(name.decode("utf-8", "surrogateescape"), size, type_)
    return tarfile.TarInfo.frombuf(buf, "utf-8", "surrogateescape")  # the general case, and its errors


def pax_records(data: bytes) -> dict[str, str]:
    """``{keyword: value}`` of a pax extended header (``"%d %s=%s\\n"`` records)."""
    out, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            break
        record = data[space + 1: pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out
