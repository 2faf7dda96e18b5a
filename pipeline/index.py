"""Stage 1 — index: every image member of the archive → (key, wnid, location, size).

Pure functions over :mod:`pipeline.archive`. A member whose name is not ``wnid_N.ext`` inside
``wnid.tar`` (or ``wnid/``) is not an image of the dataset: it becomes a reject row with a reason,
never a path on disk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pyarrow as pa

from pipeline.archive import IMAGE_EXTENSIONS, MEMBER_RE, ArchiveError, Container, list_members

INDEX_SCHEMA = pa.schema([
    ("key", pa.string()),       # original file stem, e.g. n01440764_10026
    ("wnid", pa.string()),
    ("member", pa.string()),    # member file name as stored, e.g. n01440764_10026.JPEG
    ("source", pa.string()),    # file relative to the archive root ("" = the archive itself)
    ("offset", pa.int64()),
    ("size", pa.int64()),
])
REJECT_SCHEMA = pa.schema([
    ("key", pa.string()),       # image key when known, else null
    ("member", pa.string()),    # the offending member or container, as stored
    ("wnid", pa.string()),
    ("stage", pa.string()),     # index | decode
    ("reason", pa.string()),
    ("detail", pa.string()),
])


@dataclass
class IndexResult:
    """Rows for the images found and rejects for everything else."""

    rows: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)

    def reject(self, member: str, wnid: str | None, reason: str, detail: str = "", key: str | None = None):
        self.rejects.append(dict(key=key, member=member, wnid=wnid, stage="index", reason=reason, detail=detail))

    def extend(self, other: "IndexResult") -> None:
        self.rows.extend(other.rows)
        self.rejects.extend(other.rejects)

    def tables(self) -> tuple[pa.Table, pa.Table]:
        rows = sorted(self.rows, key=lambda r: (r["wnid"], r["member"]))
        rejects = sorted(self.rejects, key=lambda r: (r["wnid"] or "", r["member"], r["reason"]))
        return (pa.Table.from_pylist(rows, schema=INDEX_SCHEMA),
                pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA))


def member_name_problem(name: str, wnid: str) -> tuple[str, str] | None:
    """Why ``name`` is not an image member of class ``wnid`` (reason, detail), or None if it is."""
    if name.startswith("/") or "\\" in name or ".." in PurePosixPath(name).parts:
        return "unsafe_member_name", "absolute path or '..' in the member name"
    if "/" in name:
        return "unexpected_directory", "member inside a sub-directory of the class tar"
    m = MEMBER_RE.match(name)
    if not m:
        return "bad_member_name", f"expected {wnid}_<number>.JPEG"
    if m.group(1) != wnid:
        return "wnid_mismatch", f"member of class {m.group(1)} inside the container of {wnid}"
    if m.group(3).lower() not in IMAGE_EXTENSIONS:
        return "not_an_image_name", f"extension .{m.group(3)} is not an image extension"
    return None


def index_container(root, container: Container) -> IndexResult:
    """Index one class container: image rows plus reject rows (never raises for bad content)."""
    result = IndexResult()
    if container.wnid is None:
        reason = "not_a_class_container" if container.kind == "other" else "bad_class_name"
        result.reject(container.name, None, reason, "expected nXXXXXXXX.tar or an nXXXXXXXX/ folder")
        return result
    try:
        members = list_members(root, container)
    except (ArchiveError, OSError) as exc:
        result.reject(container.name, container.wnid, "unreadable_class_tar", str(exc))
        return result
    if not members:
        result.reject(container.name, container.wnid, "empty_class", "the class container holds no files")
        return result
    for m in members:
        if not m.is_file:
            result.reject(m.name, container.wnid, "not_a_file", "directory, link or device member")
            continue
        problem = member_name_problem(m.name, container.wnid)
        if problem:
            result.reject(m.name, container.wnid, *problem)
            continue
        key = m.name.rsplit(".", 1)[0]
        result.rows.append(dict(key=key, wnid=container.wnid, member=m.name, source=m.source,
                                offset=m.offset, size=m.size))
    return result


def index_containers(root, containers: list[Container], progress=None) -> IndexResult:
    """Index several containers; ``progress(done, total)`` is called after each."""
    result = IndexResult()
    for i, c in enumerate(containers):
        result.extend(index_container(root, c))
        if progress:
            progress(i + 1, len(containers))
    return result
