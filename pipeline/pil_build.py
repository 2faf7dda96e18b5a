"""Which PIL build is active: distribution (pillow-simd or pillow), version, JPEG library, SIMD level.

``python -m pipeline --version`` and the build's log line print :func:`describe_pil_build`, e.g.
``PIL: pillow-simd 12.1.1.post0 (libjpeg-turbo 2.1.5, AVX2)``. The image hot path resizes with
PIL, and pillow-simd resizes about 4x faster than stock Pillow (benchmarks/image_path.py).

The SIMD level is what the compiler was told when ``PIL._imaging`` was built, read from the
compiler command lines GCC records in the binary (``-mavx2``, ``-march=x86-64-v3``, ...); None when
the binary does not say (stripped, or another compiler). PIL itself does not report it.
"""
from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

#: SIMD levels, best first, with the compiler flags that enable each.
SIMD_FLAGS = (
    ("AVX-512", ("-mavx512f", "-march=x86-64-v4")),
    ("AVX2", ("-mavx2", "-march=x86-64-v3")),
    ("SSE4", ("-msse4", "-msse4.1", "-msse4.2", "-march=x86-64-v2")),
)
_GCC_PRODUCER = re.compile(rb"GNU C[\w+]* \d[^\x00]*")


def pil_build() -> dict:
    """The active PIL build: ``distribution``, ``version``, ``jpeg`` (library and version),
    ``libjpeg_turbo`` (bool), ``simd`` (level or None) and ``path`` (the PIL package folder)."""
    import PIL
    from PIL import _imaging, features

    package_dir = Path(PIL.__file__).resolve().parent
    turbo = features.version_feature("libjpeg_turbo")
    return {
        "distribution": providing_distribution(package_dir, _distributions_listing("PIL")),
        "version": PIL.__version__,
        "jpeg": f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version_codec('jpg')}",
        "libjpeg_turbo": turbo is not None,
        "simd": simd_level(Path(_imaging.__file__).read_bytes()),
        "path": str(package_dir),
    }


def describe_pil_build(build: dict | None = None) -> str:
    """One line such as ``PIL: pillow-simd 12.1.1.post0 (libjpeg-turbo 2.1.5, AVX2)``."""
    build = pil_build() if build is None else build
    details = ", ".join(part for part in (build["jpeg"], build["simd"]) if part)
    return f"PIL: {build['distribution'] or 'unknown distribution'} {build['version']} ({details})"


def providing_distribution(package_dir: Path, candidates: list[tuple[str, Path]]) -> str | None:
    """The name of the candidate ``(distribution, its copy of the package)`` at ``package_dir``.

    Several distributions may install the same top-level package (pillow and pillow-simd both
    install ``PIL``) in different folders; the one imported is the one whose folder it is.
    """
    for name, located in candidates:
        if located.resolve() == package_dir:
            return name
    return None


def simd_level(binary: bytes) -> str | None:
    """The best SIMD level the GCC command lines recorded in ``binary`` enable, or None."""
    flags = {flag.decode() for producer in _GCC_PRODUCER.findall(binary) for flag in producer.split()}
    for level, enabling in SIMD_FLAGS:
        if flags.intersection(enabling):
            return level
    return None


def _distributions_listing(package: str) -> list[tuple[str, Path]]:
    """Installed distributions whose top_level.txt lists ``package``, with where it would be."""
    found = []
    for dist in importlib.metadata.distributions():
        if package in (dist.read_text("top_level.txt") or "").split():
            found.append((dist.metadata["Name"], Path(dist.locate_file(package))))
    return found
