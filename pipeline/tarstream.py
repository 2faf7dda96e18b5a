"""Tar read front to back from a stream: members in order, and where the damage starts.

:class:`TarReader` walks a tar (the fall11 outer tar, a class tar inside it, a class tar file, or
the inflated winter21 stream) from a :class:`pipeline.streams.BlockStream` without seeking:
header, data, header, ... Headers are parsed by :mod:`tarfile` (checksums, base-256 sizes); GNU
long names and pax ``path`` / ``size`` records are applied. A member's data is read only when
the consumer asks for it (:meth:`TarReader.read_data`), otherwise skipped.

Damage ends the walk with :class:`TarDamage` naming the byte offset, after every member before
it was yielded, as ``tar -x`` extracts what precedes a bad spot: a header cut short or failing its
checksum, a member claiming more bytes than the tar holds, or no end-of-archive marker.
"""
from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import Iterator

BLOCK = tarfile.BLOCKSIZE
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_SKIPPED_META = (tarfile.GNUTYPE_LONGLINK, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


def padded(size: int) -> int:
    """``size`` rounded up to whole tar blocks."""
    return -(-size // BLOCK) * BLOCK


@dataclass(frozen=True)
class TarEntry:
    """One member: its name as stored, header offset, data offset and size in the source."""

    name: str
    offset: int
    data_offset: int
    size: int
    is_file: bool


class TarDamage(Exception):
    """The tar is damaged from byte ``offset`` of its source on; ``str()`` says how."""

    def __init__(self, offset: int, message: str, member: str | None = None):
        super().__init__(offset, message, member)
        self.offset, self.message, self.member = offset, message, member

    def __str__(self) -> str:
        return self.message


class TarReader:
    """Iterate the members of the tar that starts at ``stream.tell()`` and ends by ``end``.

    ``end`` is the source offset the tar must not run past (a class tar's end inside the outer
    tar); None means the end of the stream. Iteration stops at the end-of-archive marker; after
    it, or after damage, :meth:`finish` skips the stream to ``end``.
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

    def _read_meta(self, ti: tarfile.TarInfo, offset: int) -> bytes:
        """The data of a long-name / pax member (small), checked against ``end``."""
        room = self._room()
        if room is not None and padded(ti.size) > room:
            raise TarDamage(offset, f"{ti.size}-byte {ti.type!r} header at byte {offset} runs past the end")
        data = self.stream.read(padded(ti.size))
        if len(data) < padded(ti.size):
            raise TarDamage(offset, f"header data at byte {offset} is cut short")
        return data[: ti.size]

    def __iter__(self) -> Iterator[TarEntry]:
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
                raise TarDamage(offset, f"unreadable member header at byte {offset}: {exc}") from None
            if ti.type == tarfile.GNUTYPE_LONGNAME:
                long_name = self._read_meta(ti, offset).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                self._data_end = self.stream.tell()
                continue
            if ti.type == tarfile.XHDTYPE:
                pax.update(pax_records(self._read_meta(ti, offset)))
                self._data_end = self.stream.tell()
                continue
            if ti.type in _SKIPPED_META:
                self._read_meta(ti, offset)
                self._data_end = self.stream.tell()
                continue
            name = pax.get("path", long_name if long_name is not None else ti.name)
            size = int(pax["size"]) if "size" in pax else ti.size
            long_name, pax = None, {}
            is_file = ti.type in _FILE_TYPES  # anything else is listed, its data (if any) skipped
            if ti.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                size = 0  # links carry no data whatever the size field says
            data_offset = self.stream.tell()
            room = self._room()
            if room is not None and size > room:
                raise TarDamage(offset, f"member {name!r} at byte {offset} claims {size} bytes but only "
                                        f"{room} remain", member=name)
            self._data_end = data_offset + padded(size)
            self._current = (data_offset, size, name, offset)
            yield TarEntry(name, offset, data_offset, size, is_file)

    def read_data(self) -> bytes:
        """The data of the member just yielded (call before asking for the next one)."""
        data_offset, size, name, offset = self._current
        if self.stream.tell() != data_offset:
            raise RuntimeError("read_data() called twice or after the next member")
        data = self.stream.read(size)
        if len(data) < size:
            raise TarDamage(offset, f"member {name!r} at byte {offset} is cut short: {len(data)} of "
                                    f"{size} bytes", member=name)
        return data

    def _skip_to(self, target: int) -> None:
        gap = target - self.stream.tell()
        if gap > 0 and self.stream.skip(gap) < gap:
            raise TarDamage(self.stream.tell(), f"the tar ends inside member data at byte {self.stream.tell()}")

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

    Plain USTAR / GNU headers (octal fields, the common case) are parsed here in a few
    microseconds; anything else (base-256 sizes, old V7 headers) goes to ``tarfile``.
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
