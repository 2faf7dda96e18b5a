"""What a JPEG's markers say, read without decoding: is it already a ``size``² baseline colour JPEG
that a build can copy byte for byte (the official ImageNet-21K-P download is made of them)?"""
from __future__ import annotations

import struct

SOI, EOI = b"\xff\xd8", b"\xff\xd9"
BASELINE_SOF = 0xC0
#: Frame markers (SOF0..SOF15 but DHT C4, JPG C8, DAC CC): the first one describes the picture.
FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM: no length field


def frame_info(data: bytes) -> tuple[int, int, int, int] | None:
    """``(frame marker, width, height, components)`` from the first frame header, or None when the
    bytes do not start like a JPEG or end before one."""
    if not data.startswith(SOI):
        return None
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in FRAME_MARKERS:
            if length < 8 or pos + 10 > end:
                return None
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return marker, width, height, data[pos + 9]
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def is_ready_jpeg(data: bytes, size: int) -> bool:
    """True for a complete ``size`` x ``size`` baseline JPEG of 3 components (colour; 8-bit by
    definition of baseline) that ends with its EOI marker: a build may copy it as it is."""
    info = frame_info(data)
    return (info is not None and info[0] == BASELINE_SOF and info[1] == info[2] == size and info[3] == 3
            and data.endswith(EOI))
