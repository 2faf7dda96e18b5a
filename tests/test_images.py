"""pipeline.images: squish-resize real image bytes (JPEG, PNG, GIF, TIFF made here with PIL)."""
from __future__ import annotations

import io
import math
import pickle
import random
import resource
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipeline.images import (
    BadImage,
    dct_scale_eighths,
    decode_jpeg_scaled,
    squish_resize,
    squish_resize_with_size,
    squish_resized_array,
)

RED, BLUE, GREEN = (220, 30, 40), (30, 60, 210), (40, 200, 70)


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def decode(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    image.load()
    return image


def halves(size: tuple[int, int], left=RED, right=BLUE, mode: str = "RGB") -> Image.Image:
    """Left half ``left``, right half ``right``."""
    image = Image.new(mode, size, right)
    image.paste(left, (0, 0, size[0] // 2, size[1]))
    return image


def scene(size: tuple[int, int]) -> Image.Image:
    """A picture with edges, gradients and detail at every scale (what resizing can get wrong)."""
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    base = np.stack([255 * x, 255 * y, 128 + 100 * np.sin(12 * x + 7 * y)], axis=2).astype(np.uint8)
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    for i in range(12):
        left, top = w * i / 13, h * (i % 4) / 5
        draw.ellipse((left, top, left + w / 9, top + h / 4), fill=(255 - 20 * i, 20 * i, 90))
        draw.line((0, h * i / 12, w, h - h * i / 12), fill=(0, 0, 0), width=max(1, w // 300))
    return image


def mean_colour(jpeg: bytes, box: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(decode(jpeg).crop(box)).reshape(-1, 3).mean(axis=0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def assert_rgb_square(jpeg: bytes, size: int = 224) -> Image.Image:
    image = decode(jpeg)
    assert image.format == "JPEG" and image.mode == "RGB" and image.size == (size, size)
    return image


def jpeg_markers(jpeg: bytes) -> list[int]:
    """The marker codes of ``jpeg``'s header segments, up to the start of scan."""
    markers, pos = [], 2
    while jpeg[pos] == 0xFF:
        marker = jpeg[pos + 1]
        markers.append(marker)
        if marker == 0xDA:
            break
        pos += 2 + int.from_bytes(jpeg[pos + 2:pos + 4], "big")
    return markers


# ---- images that convert ---------------------------------------------------------------------

@pytest.mark.parametrize("size", [(100, 80), (1600, 1200), (1800, 300), (240, 1000), (224, 224)])
def test_rgb_jpegs_of_any_shape_become_square_with_colours_in_place(size):
    jpeg, original = squish_resize_with_size(encode(halves(size), quality=95))
    assert original == size
    assert_rgb_square(jpeg)
    assert np.allclose(mean_colour(jpeg, (10, 10, 100, 214)), RED, atol=8)  # squish: halves stay halves
    assert np.allclose(mean_colour(jpeg, (124, 10, 214, 214)), BLUE, atol=8)


def test_grayscale_jpeg_becomes_rgb():
    jpeg, original = squish_resize_with_size(encode(Image.new("L", (320, 240), 77)))
    assert original == (320, 240)
    assert_rgb_square(jpeg)
    assert np.allclose(mean_colour(jpeg, (0, 0, 224, 224)), 77, atol=2)


@pytest.mark.parametrize("size", [(300, 200), (1200, 900)])  # full decode and PIL's DCT scaling
def test_cmyk_jpeg_keeps_its_colours(size):
    cmyk = halves(size, RED, GREEN).convert("CMYK")
    data = encode(cmyk, quality=95)
    assert decode(data).mode == "CMYK"  # PIL writes Adobe (inverted) CMYK
    jpeg, original = squish_resize_with_size(data)
    assert original == size
    assert_rgb_square(jpeg)
    assert np.allclose(mean_colour(jpeg, (10, 10, 100, 214)), RED, atol=8)
    assert np.allclose(mean_colour(jpeg, (124, 10, 214, 214)), GREEN, atol=8)


def test_palette_png_with_transparency_is_composited_onto_white():
    palette = Image.new("P", (64, 48), 0)
    palette.putpalette([0, 0, 0, *RED] + [0] * 762)  # index 0 (black) is the transparent one
    palette.paste(1, (0, 0, 32, 48))
    jpeg, original = squish_resize_with_size(encode(palette, "PNG", transparency=0))
    assert original == (64, 48)
    assert_rgb_square(jpeg)
    assert np.allclose(mean_colour(jpeg, (10, 10, 100, 214)), RED, atol=8)
    assert np.allclose(mean_colour(jpeg, (124, 10, 214, 214)), 255, atol=3)


def test_rgba_png_alpha_is_composited_onto_white():
    rgba = halves((50, 50), (*BLUE, 255), (*BLUE, 0), mode="RGBA")
    jpeg = squish_resize(encode(rgba, "PNG"))
    assert np.allclose(mean_colour(jpeg, (10, 10, 100, 214)), BLUE, atol=8)
    assert np.allclose(mean_colour(jpeg, (124, 10, 214, 214)), 255, atol=3)


def test_gif_with_transparency_converts():
    gif = halves((80, 60), RED, GREEN).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    jpeg, original = squish_resize_with_size(encode(gif, "GIF"))
    assert original == (80, 60)
    assert_rgb_square(jpeg)
    assert np.allclose(mean_colour(jpeg, (10, 10, 100, 214)), RED, atol=8)
    transparent = encode(gif, "GIF", transparency=gif.getpixel((70, 30)))
    assert np.allclose(mean_colour(squish_resize(transparent), (124, 10, 214, 214)), 255, atol=3)


def test_exif_orientation_is_not_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(halves((300, 200)), exif=exif)
    jpeg, original = squish_resize_with_size(data)
    assert original == (300, 200)  # stored size, not the displayed 200x300
    assert np.allclose(mean_colour(jpeg, (10, 10, 100, 214)), RED, atol=8)  # not rotated: red stays left
    assert 0x0112 not in decode(jpeg).getexif()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_one_pixel_image_is_upscaled(fmt):
    jpeg, original = squish_resize_with_size(encode(Image.new("RGB", (1, 1), GREEN), fmt))
    assert original == (1, 1)
    assert_rgb_square(jpeg)
    assert np.allclose(mean_colour(jpeg, (0, 0, 224, 224)), GREEN, atol=6)


def test_sixteen_bit_grayscale_png_keeps_its_top_eight_bits():
    data = encode(Image.fromarray(np.full((40, 30), 40000, np.uint16)), "PNG")
    assert decode(data).mode == "I;16"
    assert np.allclose(mean_colour(squish_resize(data), (0, 0, 224, 224)), 40000 >> 8, atol=2)


def test_jpeg_with_minor_damage_decodes_as_pil_does():
    """libjpeg-turbo warns about bytes before EOI, so PIL decides, and PIL decodes it."""
    data = encode(halves((400, 300)))
    damaged = data[:-2] + b"\x00\x17\x2a" + data[-2:]
    assert decode(damaged).size == (400, 300)
    assert np.allclose(mean_colour(squish_resize(damaged), (10, 10, 100, 214)), RED, atol=8)


@pytest.mark.parametrize("size", [32, 64, 300])
def test_size_is_honoured(size):
    data = encode(scene((900, 700)))
    jpeg, original = squish_resize_with_size(data, size=size)
    assert original == (900, 700)
    assert_rgb_square(jpeg, size)
    assert squish_resized_array(data, size=size).shape == (size, size, 3)
    assert assert_rgb_square(squish_resize(encode(scene((60, 60)), "PNG"), size=size), size)


def test_quality_is_honoured():
    data = encode(scene((800, 600)))
    assert len(squish_resize(data, quality=50)) < len(squish_resize(data, quality=95))


def test_output_is_baseline_420_jfif_without_metadata():
    exif = Image.Exif()
    exif[0x010F] = "camera maker"
    metadata = {"exif": exif, "icc_profile": b"\0" * 200, "comment": b"source comment"}
    for data in (encode(scene((640, 480)), progressive=True, **metadata),  # fast path
                 encode(scene((640, 480)).convert("CMYK"), **metadata),  # PIL path
                 encode(scene((64, 48)), "PNG")):
        jpeg = squish_resize(data)
        markers = jpeg_markers(jpeg)
        assert markers[0] == 0xE0  # JFIF APP0
        assert 0xC0 in markers and 0xC2 not in markers  # baseline, not progressive
        assert not {0xE1, 0xE2, 0xFE} & set(markers)  # no EXIF, ICC profile or comment
        assert [s[1:3] for s in decode(jpeg).layer] == [(2, 2), (1, 1), (1, 1)]  # 4:2:0


def test_output_is_what_pil_writes_by_default_for_the_same_pixels():
    """Same encoder settings as ``Image.save(quality=q)``: accurate DCT, standard Huffman tables."""
    data = encode(scene((900, 600)))
    pixels = Image.fromarray(np.ascontiguousarray(squish_resized_array(data)))
    for quality in (75, 95):
        assert squish_resize(data, quality=quality) == encode(pixels, quality=quality)


@pytest.mark.parametrize("make", [lambda: encode(scene((1000, 750))), lambda: encode(scene((300, 200)), "PNG"),
                                  lambda: encode(scene((700, 500)).convert("CMYK"))])
def test_output_is_deterministic(make):
    data = make()
    assert squish_resize(data) == squish_resize(bytes(data))


def test_fast_path_matches_a_full_decode_lanczos_reference():
    """DCT scaling + resize over the exact covered box keeps the picture where it was.

    1001x751 decodes at 4/8 to 501x376 pixels covering 500.5x375.5: resizing all 376 rows instead
    of the covered 375.5 would shift the bottom by half a pixel.
    (Before JPEG encoding: 4:2:0 chroma on this saturated synthetic scene caps PSNR near 29 dB.)
    """
    data = encode(scene((1001, 751)), quality=95)
    assert dct_scale_eighths(1001, 751, 224) == 4  # the fast path really scales
    reference = np.asarray(decode(data).convert("RGB").resize((224, 224), Image.Resampling.LANCZOS))
    assert psnr(squish_resized_array(data), reference) >= 33


def test_psnr_on_bench_photos(shared_dir):
    photos = sorted((shared_dir / "bench-photos").glob("*.jpg"))[:6]
    if not photos:
        pytest.skip("no ../shared/bench-photos")
    for path in photos:
        data = path.read_bytes()
        reference = np.asarray(decode(data).convert("RGB").resize((224, 224), Image.Resampling.LANCZOS))
        assert psnr(squish_resized_array(data), reference) >= 30, path.name
        assert psnr(np.asarray(decode(squish_resize(data))), reference) >= 30, path.name


# ---- bytes that do not ------------------------------------------------------------------------

def reason_for(data: bytes, **options) -> str:
    with pytest.raises(BadImage) as caught:
        squish_resize(data, **options)
    assert str(caught.value)  # a human message
    return caught.value.reason


def test_empty_bytes():
    assert reason_for(b"") == "empty"


def test_random_bytes_and_text_are_not_images():
    assert reason_for(random.Random(0).randbytes(5000)) == "not_an_image"
    assert reason_for(b"<html><body>404 Not Found</body></html>\n" * 20) == "not_an_image"
    assert reason_for(b"RIFF\x24\x00\x00\x00WEBPVP8 ") == "not_an_image"  # WebP is not taken


def test_jpeg_magic_followed_by_junk():
    assert reason_for(b"\xff\xd8\xff" + random.Random(1).randbytes(3000)) in {"not_an_image", "corrupt"}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_truncated_files(fmt):
    data = encode(scene((400, 300)).convert("P") if fmt == "GIF" else scene((400, 300)), fmt)
    assert reason_for(data[: len(data) // 2]) == "truncated"


@pytest.mark.parametrize("seed", [0, 4, 11])  # 4: "premature end of data segment", which PIL decodes
def test_random_scan_data_is_corrupt(seed):
    """Headers intact, entropy-coded data replaced by noise."""
    data = encode(scene((320, 240)))
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    noise = random.Random(seed).randbytes(len(data) - start - 2)
    assert reason_for(data[:start] + noise + b"\xff\xd9") == "corrupt"


def test_flipped_scan_bytes_give_a_square_jpeg_or_bad_image():
    data = encode(scene((500, 400)))
    rng = random.Random(2)
    outcomes = set()
    for _ in range(6):
        damaged = bytearray(data)
        for pos in rng.sample(range(len(data) // 3, len(data) - 2), 8):
            damaged[pos] ^= 0xFF
        try:
            assert_rgb_square(squish_resize(bytes(damaged)))
            outcomes.add("converted")
        except BadImage as err:
            assert err.reason in {"corrupt", "truncated"}
            outcomes.add(err.reason)
    assert outcomes


@pytest.mark.filterwarnings("ignore")  # PIL warns about the odd headers this makes; exceptions are the point
def test_mutated_files_give_a_square_jpeg_or_bad_image_and_nothing_else():
    """Random byte edits, cuts and insertions in headers and data of every format taken."""
    small = scene((96, 72))
    originals = [encode(small), encode(small, progressive=True), encode(small.convert("CMYK")),
                 encode(small.convert("L")), encode(small, "PNG"), encode(small.convert("P"), "GIF"),
                 encode(small, "BMP"), encode(small, "TIFF")]
    rng = random.Random(3)
    for _ in range(400):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.choice((1, 3, 8))):
            edit = rng.random()
            if edit < 0.6:  # mostly in the headers
                data[rng.randrange(min(len(data), 300) if rng.random() < 0.7 else len(data))] = rng.randrange(256)
            elif edit < 0.8:
                del data[rng.randrange(len(data) + 1):]
            else:
                at = rng.randrange(len(data) + 1)
                data[at:at] = rng.randbytes(rng.randrange(1, 8))
            if not data:
                break
        try:
            assert_rgb_square(squish_resize(bytes(data)))
        except BadImage:
            pass


def test_unsupported_modes():
    assert reason_for(encode(Image.fromarray(np.ones((10, 10), np.float32)), "TIFF")) == "unsupported_mode"
    assert reason_for(encode(Image.fromarray(np.ones((10, 10), np.int32)), "TIFF")) == "unsupported_mode"


def jpeg_declaring(width: int, height: int) -> bytes:
    data = encode(Image.new("RGB", (16, 16), RED))
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9:]


def png_declaring(width: int, height: int) -> bytes:
    data = encode(Image.new("RGB", (16, 16), RED), "PNG")
    ihdr = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def test_decompression_bombs_are_refused_from_the_header():
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert reason_for(jpeg_declaring(65000, 65000)) == "decompression_bomb"  # 4.2 G pixels
    assert reason_for(png_declaring(100_000, 100_000)) == "decompression_bomb"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_kib < 64 << 10  # nothing decoded
    assert Image.open(io.BytesIO(png_declaring(100, 100))).size == (100, 100)  # a well-formed header


def test_max_pixels_is_a_per_call_limit():
    for data in (encode(scene((400, 300))), encode(scene((400, 300)), "PNG")):
        assert reason_for(data, max_pixels=400 * 300 - 1) == "decompression_bomb"
        assert_rgb_square(squish_resize(data, max_pixels=400 * 300))


# ---- the pieces ------------------------------------------------------------------------------

def test_dct_scale_keeps_both_sides_at_least_size_and_reduces_most():
    for width in range(1, 2200, 37):
        for height in (1, 100, 223, 224, 225, 447, 448, 1791, 1792, 4000):
            m = dct_scale_eighths(width, height, 224)
            assert m in (1, 2, 4, 8)  # the scales with SIMD inverse DCTs
            if m < 8:
                assert width * m >= 8 * 224 and height * m >= 8 * 224
            if m > 1:
                assert width * (m // 2) < 8 * 224 or height * (m // 2) < 8 * 224


def test_decode_jpeg_scaled_covers_the_picture():
    pixels, original, box = decode_jpeg_scaled(encode(scene((1000, 450))), 224)
    assert original == (1000, 450)
    assert pixels.shape == (-(-450 * 4 // 8), 1000 * 4 // 8, 4)  # M = 4: 450 * 3/8 < 224
    assert box == (0, 0, 500.0, 225.0)
    assert decode_jpeg_scaled(encode(scene((300, 200)).convert("CMYK")), 224) is None  # PIL's job


def test_bad_image_pickles_and_rejects_unknown_reasons():
    err = pickle.loads(pickle.dumps(BadImage("truncated", "ends early")))
    assert (err.reason, str(err)) == ("truncated", "ends early")
    with pytest.raises(ValueError):
        BadImage("typo", "x")


@pytest.mark.parametrize("options", [{"size": 0}, {"size": 22.4}, {"quality": 0}, {"quality": 101}])
def test_bad_arguments_are_value_errors(options):
    with pytest.raises(ValueError):
        squish_resize(encode(Image.new("RGB", (8, 8))), **options)
