"""Drawing and encoding the demo archive's images, good and deliberately broken.

Every class gets a *look* (:class:`ClassLook`) built from its place in the semantic tree, one
visual cue per hierarchy level, so that a small CNN can learn every level from pixels alone:

====== ============================================================================
level  cue (shown by the class at that level and by all its descendants)
====== ============================================================================
0      background colour family (hue) of the root ancestor; a root class's own images
       show the root's silhouette
1      the silhouette of the level-1 ancestor (circle, square, star, ...), dark filled
2      light stripes inside the silhouette, one orientation per level-2 class
3      a coloured cross-hatch over the stripes, colour and angle per level-3 class
4+     a bright dot with a dark rim at the silhouette's centre, colour per class
====== ============================================================================

A class shows the cues of its ancestors and its own, none of the deeper ones, so a parent and
its child always differ (the child adds a cue) and siblings differ in their own level's cue.
Silhouettes and stripes survive grayscale; all cues are sized relative to the image so they
survive a squish-resize to 224x224 and a downscale to 64x64. Position, scale, rotation, colours,
clutter and noise are jittered per image from a per-image seed, so output is deterministic.
"""
from __future__ import annotations

import colorsys
import io
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

Rgb = tuple[int, int, int]

#: Background hue (0..1) of each root, by the root's position among the roots.
ROOT_HUES = (0.03, 0.33, 0.60, 0.80)  # red-orange, green, blue, purple
#: Stripe orientations (degrees) of level-2 classes, by index among their siblings.
STRIPE_ANGLES = (0.0, 90.0, 45.0, 135.0)
#: Cross-hatch angle offsets (degrees from the stripes) of level-3 classes, by sibling index.
HATCH_OFFSETS = (90.0, 60.0, 120.0)
#: Bright colours for cross-hatches (level 3) and dots (level 4+), by index within the level.
ACCENT_COLOURS: tuple[Rgb, ...] = (
    (255, 220, 0), (0, 220, 255), (255, 40, 200), (255, 130, 0), (140, 255, 40), (255, 0, 60),
)
NOISE_TILE_SIZE = 1024
NOISE_OPACITY = (15, 36)  # alpha (of 255) of the noise tile, left edge to right edge


def _regular(radii: tuple[float, ...], count: int, start: float = -90.0) -> list[tuple[float, float]]:
    """``count`` points around the centre, cycling through ``radii``, from ``start`` degrees."""
    return [
        (radii[k % len(radii)] * math.cos(math.radians(start + 360.0 * k / count)),
         radii[k % len(radii)] * math.sin(math.radians(start + 360.0 * k / count)))
        for k in range(count)
    ]


_ARM, _REACH = 0.34, 0.92
#: Each silhouette as drawing steps in box units (centre 0, box edge +-1, y down):
#: ("polygon", points, value) or ("disc", (x, y, radius), value); value 0 cuts a hole.
_SHAPE_PARTS: dict[str, list[tuple[str, object, int]]] = {
    "circle": [("disc", (0.0, 0.0, 0.92), 255)],
    "square": [("polygon", [(-0.7, -0.7), (0.7, -0.7), (0.7, 0.7), (-0.7, 0.7)], 255)],
    "triangle": [("polygon", _regular((0.95,), 3), 255)],
    "star": [("polygon", _regular((0.95, 0.43), 10), 255)],
    "cross": [("polygon", [
        (-_ARM, -_REACH), (_ARM, -_REACH), (_ARM, -_ARM), (_REACH, -_ARM), (_REACH, _ARM),
        (_ARM, _ARM), (_ARM, _REACH), (-_ARM, _REACH), (-_ARM, _ARM), (-_REACH, _ARM),
        (-_REACH, -_ARM), (-_ARM, -_ARM),
    ], 255)],
    "ring": [("disc", (0.0, 0.0, 0.92), 255), ("disc", (0.0, 0.0, 0.46), 0)],
    "crescent": [("disc", (0.0, 0.0, 0.92), 255), ("disc", (0.55, -0.15, 0.8), 0)],
    "half_disc": [("polygon", [
        (0.95 * math.cos(math.pi * (1 + k / 24)), 0.3 + 0.95 * math.sin(math.pi * (1 + k / 24)))
        for k in range(25)
    ], 255)],
}
#: Silhouettes, handed out to roots and level-1 classes in table order.
SHAPES = tuple(_SHAPE_PARTS)


@dataclass(frozen=True)
class ClassLook:
    """The visual signature of one class (see the module docstring for the levels)."""

    hue: float
    shape: str
    stripe_angle: float | None = None
    hatch: tuple[Rgb, float] | None = None
    dot: Rgb | None = None


def assign_looks(parents: dict[str, str | None]) -> dict[str, ClassLook]:
    """Give every class of a tree its look.

    ``parents`` maps each class to its nearest ancestor among the classes (None for a root) and
    lists parents before children; cues are handed out in that order, so the same table always
    gives the same looks. Raises ``ValueError`` when the tree needs more roots or silhouettes
    than there are cues.
    """
    looks: dict[str, ClassLook] = {}
    children: dict[str | None, list[str]] = {}
    accents_used: dict[int, int] = {}
    shapes_used = 0
    for wnid, parent in parents.items():
        siblings = children.setdefault(parent, [])
        sibling_index = len(siblings)
        siblings.append(wnid)
        if parent is None:
            if sibling_index >= len(ROOT_HUES):
                raise ValueError(f"at most {len(ROOT_HUES)} roots have a background colour")
            looks[wnid] = ClassLook(hue=ROOT_HUES[sibling_index], shape=_nth_shape(shapes_used))
            shapes_used += 1
            continue
        base = looks[parent]
        level = _level(wnid, parents)
        if level == 1:
            looks[wnid] = ClassLook(hue=base.hue, shape=_nth_shape(shapes_used))
            shapes_used += 1
        elif level == 2:
            angle = STRIPE_ANGLES[sibling_index % len(STRIPE_ANGLES)]
            looks[wnid] = ClassLook(hue=base.hue, shape=base.shape, stripe_angle=angle)
        else:
            accent = ACCENT_COLOURS[accents_used.get(level, 0) % len(ACCENT_COLOURS)]
            accents_used[level] = accents_used.get(level, 0) + 1
            if level == 3:
                offset = HATCH_OFFSETS[sibling_index % len(HATCH_OFFSETS)]
                looks[wnid] = ClassLook(base.hue, base.shape, base.stripe_angle, (accent, offset))
            else:
                looks[wnid] = ClassLook(base.hue, base.shape, base.stripe_angle, base.hatch, accent)
    return looks


def make_noise_tile(seed: int) -> Image.Image:
    """A square RGBA tile of uniform colour noise, cropped and pasted over each image.

    Its alpha rises from left to right through NOISE_OPACITY, so the noise strength of an image
    (about 4-10 grey levels of standard deviation) depends on where its crop falls.
    """
    rng = np.random.default_rng(seed)
    tile = rng.integers(0, 256, (NOISE_TILE_SIZE, NOISE_TILE_SIZE, 4), np.uint8)
    tile[..., 3] = np.linspace(*NOISE_OPACITY, NOISE_TILE_SIZE).round().astype(np.uint8)
    return Image.fromarray(tile, "RGBA")


def draw_image(look: ClassLook, size: tuple[int, int], rng: random.Random,
               noise_tile: Image.Image) -> Image.Image:
    """Draw one RGB image of a class: background, clutter, the class's cues, noise."""
    width, height = size
    image = _background(look.hue, size, rng)
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    for _ in range(rng.randint(0, 3)):  # distractors, behind the subject
        r = short * rng.uniform(0.04, 0.10)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        box = (x - r, y - r, x + r, y + r * rng.uniform(0.5, 1.5))
        colour = _hsv(rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    side = max(8, int(short * rng.uniform(0.45, 0.75)))
    left = rng.randint(0, width - side)
    top = rng.randint(0, height - side)
    mask = _silhouette(look.shape, side, rng.uniform(-12, 12))
    image.paste(_fill(look, side, rng), (left, top), mask)
    _add_noise(image, noise_tile, rng)
    return image


def encode_jpeg(image: Image.Image, mode: str, quality: int) -> bytes:
    """JPEG bytes of ``image`` converted to ``mode`` ('RGB', 'L' or 'CMYK')."""
    out = io.BytesIO()
    (image if image.mode == mode else image.convert(mode)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def encode_png_with_alpha(image: Image.Image) -> bytes:
    """PNG bytes of ``image`` with an alpha channel fading from half to fully opaque."""
    alpha = Image.linear_gradient("L").resize(image.size).point(lambda v: 128 + v // 2)
    rgba = image.convert("RGBA")
    rgba.putalpha(alpha)
    out = io.BytesIO()
    rgba.save(out, "PNG")
    return out.getvalue()


def encode_gif(image: Image.Image) -> bytes:
    """GIF bytes of ``image`` (palette mode)."""
    out = io.BytesIO()
    image.quantize(64, method=Image.Quantize.FASTOCTREE).save(out, "GIF")
    return out.getvalue()


def corrupt_scan_data(jpeg: bytes, rng: random.Random) -> bytes:
    """``jpeg`` with its headers intact and its entropy-coded scan replaced by random bytes."""
    start = _scan_data_start(jpeg)
    garbage = bytes(rng.getrandbits(8) for _ in range(len(jpeg) - start - 2))
    return jpeg[:start] + garbage + b"\xff\xd9"


def declare_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header (SOF0) claiming ``width`` x ``height`` pixels."""
    sof = jpeg.find(b"\xff\xc0")
    if sof < 0:
        raise ValueError("not a baseline JPEG (no SOF0 marker)")
    dims = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return jpeg[: sof + 5] + dims + jpeg[sof + 9:]


def _scan_data_start(jpeg: bytes) -> int:
    sos = jpeg.find(b"\xff\xda")
    if sos < 0:
        raise ValueError("not a JPEG (no start-of-scan marker)")
    return sos + 2 + int.from_bytes(jpeg[sos + 2: sos + 4], "big")


def _level(wnid: str, parents: dict[str, str | None]) -> int:
    level = 0
    while parents[wnid] is not None:
        wnid = parents[wnid]
        level += 1
    return level


def _nth_shape(index: int) -> str:
    if index >= len(SHAPES):
        raise ValueError(f"at most {len(SHAPES)} roots and level-1 classes have a silhouette")
    return SHAPES[index]


def _hsv(h: float, s: float, v: float) -> Rgb:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def _background(hue: float, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A smooth light gradient in the hue family: a random 3x3 colour grid, upsampled."""
    cells = Image.new("RGB", (3, 3))
    cells.putdata([
        _hsv(hue + rng.uniform(-0.05, 0.05), rng.uniform(0.35, 0.8), rng.uniform(0.6, 0.95))
        for _ in range(9)
    ])
    return cells.resize(size, Image.BILINEAR)


def _silhouette(shape: str, side: int, angle: float) -> Image.Image:
    """An L mask (255 inside) of ``shape`` rotated by ``angle`` degrees in a ``side``-px box."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    half = side / 2
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))

    def place(x: float, y: float) -> tuple[float, float]:
        return half + (x * cos - y * sin) * half, half + (x * sin + y * cos) * half

    for kind, geometry, value in _SHAPE_PARTS[shape]:
        if kind == "polygon":
            draw.polygon([place(x, y) for x, y in geometry], fill=value)
        else:
            x, y, r = geometry
            cx, cy = place(x, y)
            draw.ellipse((cx - r * half, cy - r * half, cx + r * half, cy + r * half), fill=value)
    return mask


def _fill(look: ClassLook, side: int, rng: random.Random) -> Image.Image:
    """The silhouette's content: dark base, then stripes, hatch and dot as the look asks."""
    fill = Image.new("RGB", (side, side), _hsv(rng.random(), rng.uniform(0.2, 0.7), rng.uniform(0.08, 0.3)))
    draw = ImageDraw.Draw(fill)
    period = side * rng.uniform(0.17, 0.23)
    if look.stripe_angle is not None:
        angle = look.stripe_angle + rng.uniform(-8, 8)
        light = _hsv(rng.random(), rng.uniform(0.0, 0.15), rng.uniform(0.85, 1.0))
        _stripes(draw, side, angle, period, period * 0.5, light, rng.uniform(0, period))
        if look.hatch is not None:
            colour, offset = look.hatch
            _stripes(draw, side, angle + offset, period, period * 0.4, colour, rng.uniform(0, period))
    if look.dot is not None:
        c, r = side / 2, side * 0.16
        draw.ellipse((c - r, c - r, c + r, c + r), fill=look.dot, outline=(0, 0, 0), width=max(1, round(r / 3)))
    return fill


def _stripes(draw: ImageDraw.ImageDraw, side: int, angle: float, period: float, width: float,
             colour: Rgb, phase: float) -> None:
    """Parallel bands ``width`` wide every ``period`` pixels, running at ``angle`` degrees."""
    theta = math.radians(angle)
    ux, uy = math.cos(theta), math.sin(theta)  # along the bands
    nx, ny = -uy, ux  # across the bands
    c, reach = side / 2, side * 0.75
    offset = -reach + phase
    while offset < reach:
        a, b = offset, offset + width
        draw.polygon([
            (c + nx * a - ux * reach, c + ny * a - uy * reach),
            (c + nx * a + ux * reach, c + ny * a + uy * reach),
            (c + nx * b + ux * reach, c + ny * b + uy * reach),
            (c + nx * b - ux * reach, c + ny * b - uy * reach),
        ], fill=colour)
        offset += period


def _add_noise(image: Image.Image, tile: Image.Image, rng: random.Random) -> None:
    """Paste a random crop of the noise tile over ``image`` through the tile's own alpha."""
    width, height = image.size
    w, h = min(width, tile.width), min(height, tile.height)
    x, y = rng.randint(0, tile.width - w), rng.randint(0, tile.height - h)
    noise = tile.crop((x, y, x + w, y + h))
    if (w, h) != (width, height):
        noise = noise.resize((width, height), Image.NEAREST)
    image.paste(noise, (0, 0), noise)
