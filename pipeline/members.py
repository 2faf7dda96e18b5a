"""What a container's members may be: image names, and reject rows for everything else.

A member whose name is not ``wnid_N.ext`` inside ``wnid.tar`` (or ``wnid/``) is not an image of
the dataset: it becomes a reject row with a reason, never a path on disk.
"""
from __future__ import annotations

import pyarrow as pa

from pipeline.archive import IMAGE_EXTENSIONS, MEMBER_RE

REJECT_SCHEMA = pa.schema([
    ("key", pa.string()),       # image key when known, else null
    ("member", pa.string()),    # the offending member or container, as stored
    ("wnid", pa.string()),
    ("stage", pa.string()),     # read (names, containers, damage) | decode
    ("reason", pa.string()),
    ("detail", pa.string()),
])


def reject_row(member: str, wnid: str | None, reason: str, detail: str = "", key: str | None = None,
               stage: str = "read") -> dict:
    """One row of :data:`REJECT_SCHEMA`."""
    return dict(key=key, member=member, wnid=wnid, stage=stage, reason=reason, detail=detail[:500])


def member_name_problem(name: str, wnid: str) -> tuple[str, str] | None:
    """Why ``name`` is not an image member of class ``wnid`` (reason, detail), or None if it is."""
    if name.startswith("/") or "\\" in name or ".." in name.split("/"):
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
