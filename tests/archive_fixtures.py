"""Small real tars and JPEGs for the unit tests of the read and convert stages."""
from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from PIL import Image

WNID = "n01440764"
OTHER_WNID = "n02084071"


def jpeg(i: int, size: tuple[int, int] = (320, 240)) -> bytes:
    """A small real JPEG, different for each ``i``."""
    image = Image.new("RGB", size, ((37 * i) % 256, (91 * i) % 256, (13 * i) % 256))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def tar_bytes(members: list[tuple[str, bytes]], fmt=tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def class_members(wnid: str, n: int, start: int = 1) -> list[tuple[str, bytes]]:
    return [(f"{wnid}_{i}.JPEG", jpeg(i)) for i in range(start, start + n)]


def lying_class_tar(good: list[tuple[str, bytes]], claimed: int = 10 << 20) -> tuple[bytes, int]:
    """A class tar of ``good`` members, then a member header claiming ``claimed`` bytes the tar
    does not hold (a truncated download); returns the bytes and the lying header's offset."""
    data = tar_bytes(good)
    cut = data.rstrip(b"\0")
    offset = -(-len(cut) // 512) * 512  # where the end-of-archive marker was
    ti = tarfile.TarInfo(f"{WNID}_999999.JPEG")
    ti.size = claimed
    return data[:offset] + ti.tobuf(tarfile.GNU_FORMAT) + jpeg(999)[:3000], offset


def outer_tar(path: Path, class_tars: list[tuple[str, bytes]], gz: bool = False) -> Path:
    """A fall11-style outer tar (or .tar.gz) of ``(name, class tar bytes)``."""
    data = tar_bytes(class_tars)
    path.write_bytes(gzip.compress(data, compresslevel=1, mtime=0) if gz else data)
    return path
