"""Per-sample image path of the trainer: JPEG bytes -> ``H x W x 3`` uint8 array.

Paper B.1: squish-resized 224x224 inputs (already done by the pipeline), RandAugment + Cutout
on train, nothing on validation, and no mean/std normalization - the trainer only divides by
255 on the device, so the loader ships uint8 (4x less inter-process traffic than float).

Decoding uses libjpeg-turbo through ``simplejpeg`` (faster than PIL on the stored 224x224
JPEGs: ``benchmarks/loader.py`` compares the decoders) with DCT-domain downscaling when
``--input-size`` is smaller than the stored images, then an antialiased PIL resize to the exact
size.
Augmentations are deterministic per sample: each call receives a 64-bit seed that the data
stream derives from (seed, epoch, lane, position), so a resumed run replays them exactly.
"""
from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import simplejpeg
from PIL import Image


class ImageDecodeError(ValueError):
    """The bytes of a sample are not a decodable JPEG."""


def decode_rgb(jpeg: bytes, size: int) -> np.ndarray:
    """Decode ``jpeg`` to a ``size x size x 3`` uint8 RGB array (squish-resize if needed)."""
    try:
        array = simplejpeg.decode_jpeg(jpeg, colorspace="RGB", min_height=size, min_width=size)
    except ValueError as exc:
        raise ImageDecodeError(f"cannot decode JPEG ({exc})") from None
    if array.shape[0] != size or array.shape[1] != size:
        image = Image.fromarray(array).resize((size, size), Image.Resampling.BILINEAR)
        array = np.asarray(image)
    return array


def cutout(array: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Paint one random-colour rectangle of ``fraction`` x the image sides (released CutoutPIL).

    The rectangle is centred at a uniform random pixel and clipped at the borders.
    """
    height, width = array.shape[:2]
    half_h, half_w = int(fraction * height + 0.5) // 2, int(fraction * width + 0.5) // 2
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    out = array.copy() if not array.flags.writeable else array
    out[max(cy - half_h, 0): cy + half_h + 1, max(cx - half_w, 0): cx + half_w + 1] = \
        rng.integers(0, 256, size=3, dtype=np.uint8)
    return out


@contextmanager
def _seeded_global_rngs(seed: int):
    """Seed Python's and NumPy's global RNGs (timm's RandAugment draws from them), then restore."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class SampleTransform:
    """Decode (+ augment) one sample: ``transform(jpeg_bytes, seed) -> H x W x 3 uint8``.

    Args:
        input_size: output side in pixels (the stored images are 224x224).
        randaugment: a timm RandAugment config string such as ``"rand-m9-mstd101"``, or None.
        cutout_fraction: side of the Cutout square relative to the image (paper: 0.5), 0 = off.
    """

    def __init__(self, input_size: int, randaugment: str | None = None,
                 cutout_fraction: float = 0.0):
        self.input_size = int(input_size)
        self.randaugment_config = randaugment
        self.cutout_fraction = float(cutout_fraction)
        self._randaugment = None
        if randaugment:
            from timm.data.auto_augment import rand_augment_transform

            hparams = {"translate_const": int(self.input_size * 0.45),
                       "img_mean": (124, 116, 104)}
            self._randaugment = rand_augment_transform(randaugment, hparams)

    @property
    def augments(self) -> bool:
        return self._randaugment is not None or self.cutout_fraction > 0

    def __call__(self, jpeg: bytes, seed: int) -> np.ndarray:
        array = decode_rgb(jpeg, self.input_size)
        if not self.augments:
            return array
        rng = np.random.default_rng(seed)
        if self.cutout_fraction > 0:  # released order: Cutout, then RandAugment
            array = cutout(array, self.cutout_fraction, rng)
        if self._randaugment is not None:
            with _seeded_global_rngs(int(rng.integers(2**63))):
                array = np.asarray(self._randaugment(Image.fromarray(array)))
        return array
