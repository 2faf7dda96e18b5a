"""pipeline.jpeg_header: a JPEG's frame read from its markers, and which JPEGs may be copied."""
from __future__ import annotations

import io

from PIL import Image

from pipeline.images import squish_resize
from pipeline.jpeg_header import frame_info, is_ready_jpeg


def jpeg(size=(224, 224), mode="RGB", **options) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, "JPEG", **options)
    return out.getvalue()


def test_frame_info_reads_the_first_frame_header():
    assert frame_info(jpeg((300, 200))) == (0xC0, 300, 200, 3)
    assert frame_info(jpeg(progressive=True))[0] == 0xC2
    assert frame_info(jpeg(mode="L"))[3] == 1
    assert frame_info(jpeg(mode="CMYK"))[3] == 4
    for junk in (b"", b"not a jpeg", b"\xff\xd8", b"\xff\xd8\xff\xe0\x00\x10JFIF", b"\xff\xd8\x00\x00"):
        assert frame_info(junk) is None


def test_only_complete_square_baseline_colour_jpegs_are_ready():
    ready = squish_resize(jpeg((640, 480)), 224, 95)
    assert is_ready_jpeg(ready, 224)
    assert not is_ready_jpeg(ready, 256)
    assert not is_ready_jpeg(ready[:-100], 224)  # cut short: no EOI marker at the end
    assert not is_ready_jpeg(jpeg(progressive=True), 224)
    assert not is_ready_jpeg(jpeg(mode="L"), 224)
    assert not is_ready_jpeg(jpeg(mode="CMYK"), 224)
    assert not is_ready_jpeg(jpeg((224, 223)), 224)
