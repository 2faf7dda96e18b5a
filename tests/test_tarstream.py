"""pipeline.tarstream: tars read front to back from a stream, and where the damage starts."""
from __future__ import annotations

import io
import tarfile

import pytest

from archive_fixtures import WNID, class_members, lying_class_tar, tar_bytes
from pipeline.streams import BlockStream
from pipeline.tarstream import TarDamage, TarReader, parse_header


def stream_of(data: bytes, block: int = 1000) -> BlockStream:
    return BlockStream(iter([data[i:i + block] for i in range(0, len(data), block)]))


def read_all(data: bytes, end=None, read=lambda name: True) -> list[tuple[str, bytes | None, bool]]:
    out = []
    with stream_of(data) as stream:
        reader = TarReader(stream, end)
        for entry in reader:
            out.append((entry.name, reader.read_data() if read(entry.name) else None, entry.is_file))
        reader.finish()
    return out


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT])
def test_members_in_order_with_long_names_dirs_and_links(fmt):
    long_name = "d" * 120 + "/" + f"{WNID}_1.JPEG"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in [("a.JPEG", b"x" * 700), (long_name, b"yy"), ("empty.JPEG", b"")]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        tf.addfile(_dir("folder"))
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "a.JPEG"
        tf.addfile(link)
    got = read_all(buf.getvalue())
    assert got[:3] == [("a.JPEG", b"x" * 700, True), (long_name, b"yy", True), ("empty.JPEG", b"", True)]
    assert [(n, f) for n, _, f in got[3:]] == [("folder", False), ("link", False)]


def _dir(name):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    return ti


def test_unread_data_is_skipped():
    members = class_members(WNID, 5)
    got = read_all(tar_bytes(members), read=lambda name: name.endswith("_3.JPEG"))
    assert [n for n, _, _ in got] == [n for n, _ in members]
    assert [d for _, d, _ in got if d is not None] == [members[2][1]]


def test_a_lying_header_keeps_every_member_before_it():
    good = class_members(WNID, 40)
    data, offset = lying_class_tar(good)
    seen = []
    with stream_of(data) as stream:
        with pytest.raises(TarDamage) as caught:
            reader = TarReader(stream, end=len(data))
            for entry in reader:
                seen.append((entry.name, reader.read_data()))
    assert seen == good
    assert caught.value.offset == offset and str(offset) in str(caught.value)
    assert caught.value.member == f"{WNID}_999999.JPEG"


def test_damage_kinds_name_the_offset():
    data = tar_bytes(class_members(WNID, 3))
    body = data.rstrip(b"\0")
    marker = -(-len(body) // 512) * 512
    cases = {
        "no end-of-archive marker": data[:marker],                       # cut at a member boundary
        "cut short": data[:marker - 100],                                  # cut inside the last member
        "unreadable member header": b"m" + data[1:],                      # checksum fails
    }
    for damaged in cases.values():
        with pytest.raises(TarDamage, match=r"byte \d+"):
            read_all(damaged, end=len(damaged))
    with pytest.raises(TarDamage, match="unreadable member header at byte 0"):
        read_all(cases["unreadable member header"], end=len(data))


def test_a_class_tar_inside_a_longer_stream_stops_at_its_end():
    inner = tar_bytes(class_members(WNID, 2))
    trailer = b"NEXT" * 256
    with stream_of(inner + trailer) as stream:
        reader = TarReader(stream, end=len(inner))
        names = [e.name for e in reader]
        reader.finish()
        assert stream.tell() == len(inner) and stream.read(4) == b"NEXT"
    assert names == [f"{WNID}_1.JPEG", f"{WNID}_2.JPEG"]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT])
def test_fast_header_parse_agrees_with_tarfile(fmt):
    cases = [("a/b.JPEG", 123456, tarfile.REGTYPE), ("p" * 120 + "/x.JPEG", 5, tarfile.REGTYPE),
             ("dir/", 0, tarfile.DIRTYPE), ("n.JPEG", 8 ** 11 - 1, tarfile.REGTYPE), ("l", 0, tarfile.SYMTYPE)]
    for name, size, type_ in cases:
        ti = tarfile.TarInfo(name)
        ti.size, ti.type = size, type_
        header = ti.tobuf(fmt)[-512:]
        ref, got = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape"), parse_header(header)
        assert (got.name, got.size, got.type) == (ref.name, ref.size, ref.type)
    broken = bytearray(header)
    broken[0] ^= 1
    with pytest.raises(tarfile.HeaderError):
        parse_header(bytes(broken))
