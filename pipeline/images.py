"""Squish-resize one image file to a ``size`` x ``size`` RGB JPEG: the dataset build's hot path.

Paper section 2.1: the whole picture is resized to 224x224, its aspect ratio is not kept.
:func:`squish_resize_with_size` returns the JPEG bytes and the original (width, height);
:func:`squish_resize` the bytes only. The same input gives the same bytes, always; input that
cannot be converted raises :class:`BadImage`, never anything else. How it is made fast (DCT-scaled
decode, pillow-simd resize) and what it decides about EXIF, transparency, CMYK, 16-bit, truncated
and damaged files, against the released OpenCV script: ``pipeline/README.md``.
"""
from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

#: Default pixel limit: PIL's DecompressionBombError threshold (2 x Image.MAX_IMAGE_PIXELS).
MAX_PIXELS = 178_956_970
#: Formats the PIL path opens; others are ``not_an_image`` (no weak-magic guessing on junk).
PIL_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF")
#: Filter of the final resize (antialiased). After DCT scaling little reduction is left: on the
#: bench photos BICUBIC lands within 0.7 dB (PSNR, after JPEG q95) of LANCZOS against a
#: full-decode LANCZOS reference, at about 2/3 of its resize cost (benchmarks/image_path.py).
RESAMPLE = Image.Resampling.BICUBIC
#: JPEG colour spaces libjpeg-turbo turns into RGB here; CMYK and YCCK go through PIL.
FAST_JPEG_COLORSPACES = frozenset({"YCbCr", "Gray", "RGB"})
JPEG_MAGIC = b"\xff\xd8\xff"
#: libjpeg-turbo messages (their start) that settle a JPEG's fate on the fast path, with the reason.
JPEG_DAMAGE = (
    ("Premature end of JPEG file", "truncated"),
    ("Corrupt JPEG data: premature end of data segment", "corrupt"),
    ("Corrupt JPEG data: bad Huffman code", "corrupt"),
    ("Corrupt JPEG data: bad arithmetic code", "corrupt"),
    ("Corrupt JPEG data: found marker", "corrupt"),
)
#: PIL's JPEG defaults, explicit; ``comment`` stops PIL copying a source image's comment.
JPEG_OPTIONS = {"subsampling": "4:2:0", "progressive": False, "optimize": False, "comment": b""}
WHITE = (255, 255, 255, 255)

_EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
_SIXTEEN_BIT_GRAY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


class BadImage(Exception):
    """Bytes that cannot be converted; ``reason`` is one of :attr:`REASONS`, ``str()`` says why."""

    REASONS = ("empty", "not_an_image", "truncated", "corrupt", "decompression_bomb", "unsupported_mode")

    def __init__(self, reason: str, message: str):
        if reason not in self.REASONS:
            raise ValueError(f"unknown BadImage reason {reason!r}")
        super().__init__(reason, message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return self.message


def squish_resize(data: bytes, size: int = 224, quality: int = 95, max_pixels: int = MAX_PIXELS) -> bytes:
    """``data`` (an image file's bytes) as a ``size`` x ``size`` RGB JPEG of ``quality``."""
    return squish_resize_with_size(data, size, quality, max_pixels)[0]


def squish_resize_with_size(data: bytes, size: int = 224, quality: int = 95,
                            max_pixels: int = MAX_PIXELS) -> tuple[bytes, tuple[int, int]]:
    """``(jpeg_bytes, (original_width, original_height))``; see pipeline/README.md.

    Raises :class:`BadImage` for input it cannot convert and ``ValueError`` for a ``size`` or
    ``quality`` out of range.
    """
    if not (isinstance(quality, int) and 1 <= quality <= 100):
        raise ValueError(f"quality must be an int in 1..100, got {quality!r}")
    image, original_size = _squish(data, size, max_pixels)
    return _encode_jpeg(image, quality), original_size


def squish_resize_keeping_pixels(data: bytes, size: int = 224, quality: int = 95,
                                 max_pixels: int = MAX_PIXELS) -> tuple[bytes, tuple[int, int], Image.Image]:
    """:func:`squish_resize_with_size` plus the squish-resized image it encoded (for a fingerprint
    of the pixels without a second decode)."""
    if not (isinstance(quality, int) and 1 <= quality <= 100):
        raise ValueError(f"quality must be an int in 1..100, got {quality!r}")
    image, original_size = _squish(data, size, max_pixels)
    return _encode_jpeg(image, quality), original_size, image


def squish_resized_image(data: bytes, size: int = 224, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The squish-resized image before JPEG encoding (mode RGB or RGBX); raises :class:`BadImage`."""
    return _squish(data, size, max_pixels)[0]


def squish_resized_array(data: bytes, size: int = 224, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The squish-resized pixels before JPEG encoding: ``(size, size, 3)`` uint8 RGB (quality checks)."""
    image, _ = _squish(data, size, max_pixels)
    return np.asarray(image)[:, :, :3]


def decode_jpeg_scaled(data: bytes, size: int, max_pixels: int = MAX_PIXELS):
    """The fast path's decode: ``(rgbx_pixels, (width, height), covered_box)``, or None.

    ``rgbx_pixels`` is the JPEG decoded by libjpeg-turbo with DCT scaling by
    :func:`dct_scale_eighths` (an ``(h, w, 4)`` uint8 array), ``covered_box`` the area of it that
    the original picture covers. None when the JPEG is for the PIL path: CMYK/YCCK, or anything
    libjpeg-turbo reports, even a warning, that :data:`JPEG_DAMAGE` does not settle. Raises
    :class:`BadImage` for a decompression bomb and for the damage in :data:`JPEG_DAMAGE`.
    """
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    _check_pixels(width, height, max_pixels)
    if colorspace not in FAST_JPEG_COLORSPACES:
        return None
    eighths = dct_scale_eighths(width, height, size)
    try:
        pixels = simplejpeg.decode_jpeg(data, "RGBX", min_height=-(-height * eighths // 8),
                                        min_width=-(-width * eighths // 8))
    except ValueError as err:
        for message, reason in JPEG_DAMAGE:
            if str(err).startswith(message):
                raise BadImage(reason, f"libjpeg-turbo: {err}") from err
        return None
    return pixels, (width, height), (0, 0, width * eighths / 8, height * eighths / 8)


def dct_scale_eighths(width: int, height: int, size: int) -> int:
    """The smallest M in 1, 2, 4, 8 with both ``width * M / 8`` and ``height * M / 8`` >= ``size``.

    8 (no reduction) when even that is too small, i.e. the image gets upscaled.
    """
    needed = -(-8 * size // min(width, height))
    return next((m for m in (1, 2, 4) if m >= needed), 8)


def _squish(data: bytes, size: int, max_pixels: int) -> tuple[Image.Image, tuple[int, int]]:
    """``(resized image in mode RGB or RGBX, original size)``; raises :class:`BadImage`."""
    if not (isinstance(size, int) and size >= 1):
        raise ValueError(f"size must be a positive int, got {size!r}")
    if not data:
        raise BadImage("empty", "the file is empty (0 bytes)")
    decoded = decode_jpeg_scaled(data, size, max_pixels) if data.startswith(JPEG_MAGIC) else None
    if decoded is None:
        return _resize_with_pil(data, size, max_pixels)
    pixels, original_size, covered = decoded
    scaled = Image.frombuffer("RGBX", (pixels.shape[1], pixels.shape[0]), pixels, "raw", "RGBX", 0, 1)
    return scaled.resize((size, size), RESAMPLE, box=covered), original_size


def _resize_with_pil(data: bytes, size: int, max_pixels: int):
    """``(resized RGB image, original size)`` through PIL; raises :class:`BadImage`."""
    try:
        image = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
    except Image.DecompressionBombError as err:
        raise BadImage("decompression_bomb", str(err)) from err
    except UnidentifiedImageError as err:
        raise BadImage("not_an_image", f"not a {'/'.join(PIL_FORMATS)} image") from err
    except Exception as err:  # a plugin failing on a damaged header
        raise BadImage("corrupt", f"unreadable header: {type(err).__name__}: {err}") from err
    original_size = image.size
    _check_pixels(*original_size, max_pixels)
    scaled = image.draft(None, (size, size))  # JPEG only: DCT scaling keeping both sides >= size
    try:
        image.load()
    except Exception as err:
        if isinstance(err, OSError) and "truncated" in str(err):
            raise BadImage("truncated", f"{image.format} data ends early: {err}") from err
        raise BadImage("corrupt", f"cannot decode {image.format} data: {type(err).__name__}: {err}") from err
    covered = scaled[1] if scaled else None
    return _to_rgb(image).resize((size, size), RESAMPLE, box=covered), original_size


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise BadImage("decompression_bomb",
                       f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}")


def _to_rgb(image: Image.Image) -> Image.Image:
    """``image`` in mode RGB, transparency composited onto white (see pipeline/README.md, "Decisions")."""
    if image.mode in _SIXTEEN_BIT_GRAY_MODES:
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    elif image.mode not in _EIGHT_BIT_MODES:
        raise BadImage("unsupported_mode", f"pixel mode {image.mode} has no 8-bit RGB rendering here")
    if image.has_transparency_data:
        background = Image.new("RGBA", image.size, WHITE)
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """``image`` (mode RGB or RGBX) as a JPEG of ``quality`` with :data:`JPEG_OPTIONS`."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, **JPEG_OPTIONS)
    return out.getvalue()
