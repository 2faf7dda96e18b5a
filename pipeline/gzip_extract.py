"""winter21 ``.tar.gz``: one sequential pass writing the per-class tars into the work dir.

Gzip cannot be read at random, so the class tars are copied out once (resumable per class: a
class tar already present with the right size is skipped) and then read in place like a
``tars-dir``. Only members named ``nXXXXXXXX.tar`` become files; everything else is listed in the
manifest so the index stage can reject it with a reason.
"""
from __future__ import annotations

import json
import os
import tarfile
import zlib
from pathlib import Path

from hierarchy.atomic import atomic_write_bytes
from pipeline.archive import CLASS_TAR_RE, ArchiveError, Container

MANIFEST = "_outer_members.json"
COPY_CHUNK = 8 << 20


def extract_class_tars(archive: str | os.PathLike, dest: str | os.PathLike, progress=None) -> dict:
    """Copy every class tar of ``archive`` into ``dest``; write and return the manifest.

    ``progress(compressed_bytes_read, compressed_total)`` is called now and then.
    Raises :class:`ArchiveError` naming the compressed byte offset when the archive is truncated
    or corrupt.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    total = archive.stat().st_size
    members = []
    with open(archive, "rb") as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r|gz") as tf:
                for ti in tf:
                    is_class = ti.isfile() and CLASS_TAR_RE.match(ti.name) is not None
                    members.append(dict(name=ti.name, size=ti.size, kind="tar" if is_class else "other"))
                    if is_class:
                        _copy_member(tf, ti, dest / ti.name)
                    if progress:
                        progress(raw.tell(), total)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise ArchiveError(
                f"truncated or corrupt gzip archive {archive} near compressed byte {raw.tell()} "
                f"of {total}: {exc}"
            ) from exc
    manifest = dict(archive=str(archive), members=members)
    atomic_write_bytes(dest / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest


def _copy_member(tf: tarfile.TarFile, ti: tarfile.TarInfo, target: Path) -> None:
    if target.is_file() and target.stat().st_size == ti.size:
        return  # written by an earlier, interrupted pass
    src = tf.extractfile(ti)
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    with open(tmp, "wb") as out:
        remaining = ti.size
        while remaining:
            buf = src.read(min(COPY_CHUNK, remaining))
            if not buf:
                tmp.unlink(missing_ok=True)
                raise EOFError(f"archive ends inside class tar {ti.name}")
            out.write(buf)
            remaining -= len(buf)
    os.replace(tmp, target)


def is_extracted(dest: str | os.PathLike) -> bool:
    return (Path(dest) / MANIFEST).is_file()


def extracted_containers(dest: str | os.PathLike) -> list[Container]:
    """Containers of an extracted archive (class tars in ``dest`` plus the outer non-class members)."""
    dest = Path(dest)
    manifest = json.loads((dest / MANIFEST).read_text())
    out = []
    for m in manifest["members"]:
        if m["kind"] == "tar":
            wnid = CLASS_TAR_RE.match(m["name"]).group(1)
            out.append(Container(m["name"], wnid, m["name"], 0, m["size"], "tar"))
        else:
            out.append(Container(m["name"], None, "", 0, m["size"], "other"))
    return sorted(out, key=lambda c: c.name)
