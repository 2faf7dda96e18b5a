"""The archive layouts as a type: each answers how the build reads it.

:func:`pipeline.archive.detect_layout` names an archive's layout and
:func:`pipeline.archive.layout_of` gives its :class:`ArchiveLayout`, which says whether it is
one stream (read by one task), whether its work is weighed in files or in bytes, which function
lists its class containers and which converts them, and whether it is the released (already
processed) download. Nothing else in the package compares layout names.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Callable

#: Raw bytes per image of ImageNet-21K (fall11: 1.2 TB / 14.2 M images); the processed download's
#: 224² JPEGs are far smaller.
RAW_BYTES_PER_IMAGE = 85_000
RELEASED_BYTES_PER_IMAGE = 25_000
RELEASE_IGNORES = ("min_images", "val_per_class", "val_rule")


def _function(path: str) -> Callable:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ArchiveLayout:
    """One of the layouts :func:`pipeline.archive.detect_layout` recognises."""

    name: str
    converter_path: str  # "module:function" that reads it (see :meth:`converter`)
    lister_path: str = ""  # "module:function" listing its class containers ("": one stream, listed as read)
    one_stream: bool = False  # a .tar.gz: inflated front to back by one convert task
    in_one_file: bool = False  # the whole archive is one file (its size is the work)
    weighed_in_files: bool = False  # class folders: work counted in files, not bytes
    released: bool = False  # the processed ImageNet-21K-P download, not the raw release
    parallel_convert: bool = False  # one stream whose images are converted by many processes
    bytes_per_image: int = RAW_BYTES_PER_IMAGE
    ignored_parameters: tuple = ()  # build parameters it does not use (the download keeps its own split)

    def converter(self) -> Callable:
        """The function that reads this layout: for container layouts
        ``f(archive, containers, settings, known, progress)`` → a part; for one stream
        ``f(archive, parts_dir, settings, known, part_bytes=, progress=, ...)`` → part bases."""
        return _function(self.converter_path)

    def lister(self) -> Callable:
        """``f(root)`` → the class containers in read order (raises ValueError for one stream)."""
        if not self.lister_path:
            raise ValueError(f"a {self.name} archive is one stream: its containers are listed as it is read")
        return _function(self.lister_path)

    def raw_bytes(self, archive: str | os.PathLike, containers) -> int:
        """The size of the raw archive (estimated from file counts for class folders)."""
        if self.in_one_file:
            return os.path.getsize(archive)
        if self.weighed_in_files:
            return sum(c.weight for c in containers) * self.bytes_per_image
        return sum(c.size for c in containers)

    def __str__(self) -> str:
        return self.name


LAYOUTS = {layout.name: layout for layout in (
    ArchiveLayout("tar", "pipeline.convert:convert_tar_range", "pipeline.archive:list_outer_tar", in_one_file=True),
    ArchiveLayout("tar.gz", "pipeline.gzip_convert:convert_gzip", one_stream=True, in_one_file=True,
                  parallel_convert=True),
    ArchiveLayout("tars-dir", "pipeline.convert:convert_tar_files", "pipeline.archive:list_tar_files"),
    ArchiveLayout("folders-dir", "pipeline.convert:convert_folders", "pipeline.archive:list_folders",
                  weighed_in_files=True),
    ArchiveLayout("released", "pipeline.release:convert_release_folders", "pipeline.archive:list_release_containers",
                  weighed_in_files=True, released=True, bytes_per_image=RELEASED_BYTES_PER_IMAGE,
                  ignored_parameters=RELEASE_IGNORES),
    ArchiveLayout("released.tar.gz", "pipeline.release:convert_release_gzip", one_stream=True, in_one_file=True,
                  released=True, bytes_per_image=RELEASED_BYTES_PER_IMAGE, ignored_parameters=RELEASE_IGNORES),
)}
RAW_LAYOUTS = tuple(name for name, layout in LAYOUTS.items() if not layout.released)
