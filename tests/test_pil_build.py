"""pipeline.pil_build: which PIL build is active, and the pure pieces that work it out."""
from __future__ import annotations

from pathlib import Path

import PIL

from pipeline.pil_build import describe_pil_build, pil_build, providing_distribution, simd_level


def test_this_venv_runs_pillow_simd_with_libjpeg_turbo():
    build = pil_build()
    assert build["distribution"] == "pillow-simd"
    assert build["version"] == PIL.__version__
    assert build["libjpeg_turbo"] and build["jpeg"].startswith("libjpeg-turbo ")
    assert Path(build["path"]) == Path(PIL.__file__).resolve().parent
    line = describe_pil_build(build)
    assert line.startswith(f"PIL: pillow-simd {PIL.__version__} (libjpeg-turbo ")


def test_describe_formats_one_line():
    build = {"distribution": "pillow-simd", "version": "12.1.1.post0", "jpeg": "libjpeg-turbo 2.1.5",
             "simd": "AVX2"}
    assert describe_pil_build(build) == "PIL: pillow-simd 12.1.1.post0 (libjpeg-turbo 2.1.5, AVX2)"
    build.update(distribution=None, jpeg="libjpeg 9.0", simd=None)
    assert describe_pil_build(build) == "PIL: unknown distribution 12.1.1.post0 (libjpeg 9.0)"


def test_providing_distribution_is_the_one_whose_copy_is_imported(tmp_path):
    stock, simd = tmp_path / "side" / "PIL", tmp_path / "venv" / "PIL"
    for folder in (stock, simd):
        folder.mkdir(parents=True)
    candidates = [("pillow", stock), ("pillow-simd", simd)]
    assert providing_distribution(simd.resolve(), candidates) == "pillow-simd"
    assert providing_distribution(stock.resolve(), candidates) == "pillow"
    assert providing_distribution((tmp_path / "elsewhere").resolve(), candidates) is None


def test_simd_level_reads_gcc_command_lines():
    def binary(*producers: bytes) -> bytes:
        return b"\x7fELF\x00junk\x00" + b"".join(p + b"\x00" for p in producers) + b"more\x00"

    avx2 = b"GNU C17 12.2.0 -mavx2 -msse4 -mtune=generic -march=x86-64 -g -O3 -fwrapv -fPIC"
    sse4 = b"GNU C17 12.2.0 -msse4 -mtune=generic -march=x86-64 -O3"
    plain = b"GNU C17 14.2.1 20250110 (Red Hat 14.2.1-11) -mtune=generic -march=x86-64 -g -O3"
    assert simd_level(binary(sse4, avx2)) == "AVX2"
    assert simd_level(binary(sse4)) == "SSE4"
    assert simd_level(binary(b"GNU C11 13.1.0 -march=x86-64-v3 -O2")) == "AVX2"
    assert simd_level(binary(b"GNU C17 13.1.0 -mavx512f -O2", avx2)) == "AVX-512"
    assert simd_level(binary(plain)) is None
    assert simd_level(b"stripped binary without producer strings") is None
