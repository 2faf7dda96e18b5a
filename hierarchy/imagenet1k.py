"""ImageNet-1K's 1,000 classes in their standard order (ILSVRC2012: index 0 ``n01440764`` tench,
..., 999 ``n15075141`` toilet tissue), and each ImageNet-21K-P class's index among them.

The list is timm's ``timm/data/_info/imagenet_synsets.txt`` (the order every ImageNet-1K head,
timm's and torchvision's, uses), read from the installed timm package as a plain file: timm is
not imported (no torch here). timm is one of the project's requirements (``setup.cfg``); where it
is missing, :func:`imagenet1k_wnids` raises :class:`ImageNet1kListMissing` saying so.
"""
from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Iterable
from pathlib import Path

NUM_CLASSES = 1000
SYNSETS_FILE = "imagenet_synsets.txt"
WNID = re.compile(r"n\d{8}")


class ImageNet1kListMissing(FileNotFoundError):
    """timm's ``imagenet_synsets.txt`` is not where the installed timm keeps it (or timm is not
    installed); the message names the fix."""


def synsets_path() -> Path:
    """``timm/data/_info/imagenet_synsets.txt`` of the installed timm (found without importing it)."""
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        raise ImageNet1kListMissing(
            f"ImageNet-1K's class list ({SYNSETS_FILE}) comes from the timm package, which is not installed "
            "in this Python; install the project's requirements (make env, or pip install 'timm>=1.0,<2')")
    path = Path(spec.origin).parent / "data" / "_info" / SYNSETS_FILE
    if not path.is_file():
        raise ImageNet1kListMissing(f"{path} not found: the installed timm lacks ImageNet-1K's class list; "
                                    "reinstall timm (pip install --force-reinstall 'timm>=1.0,<2')")
    return path


def read_wnid_list(path: str | Path) -> list[str]:
    """The wnids of a class-list file, one per line (first field; blank and ``#`` lines skipped), in
    file order; ``ValueError`` naming the file for a line that is no wnid or a wnid listed twice."""
    wnids, seen = [], set()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if not WNID.fullmatch(fields[0]):
            raise ValueError(f"{path}:{number}: {fields[0]!r} is not a wnid (nXXXXXXXX)")
        if fields[0] in seen:
            raise ValueError(f"{path}:{number}: {fields[0]} is listed twice")
        seen.add(fields[0])
        wnids.append(fields[0])
    if not wnids:
        raise ValueError(f"{path} lists no wnid")
    return wnids


@functools.lru_cache(maxsize=1)
def imagenet1k_wnids() -> tuple[str, ...]:
    """ImageNet-1K's 1,000 wnids; position = the class's ImageNet-1K index."""
    path = synsets_path()
    wnids = read_wnid_list(path)
    if len(wnids) != NUM_CLASSES:
        raise ValueError(f"{path} lists {len(wnids)} classes, not ImageNet-1K's {NUM_CLASSES}")
    return tuple(wnids)


def imagenet1k_index(wnids: Iterable[str]) -> dict[str, int]:
    """``{wnid: ImageNet-1K index}`` for those of ``wnids`` that are ImageNet-1K classes, sorted by wnid."""
    index = {wnid: i for i, wnid in enumerate(imagenet1k_wnids())}
    return {wnid: index[wnid] for wnid in sorted(set(wnids)) if wnid in index}
