"""Near-duplicate fingerprints (``pipeline/near_duplicates.py``): recall, false matches, cost, lookup.

    .venv/bin/python benchmarks/near_duplicates.py [--max-iou 0.5] [--random-copies 16]
        [--lookup-sizes 5000,50000,500000] [--queries 100000] [--rounds 3] [--val-images 561050]
        [--skip-lookup] [--only recall|cost|lookup]

About 15 minutes on 2 cores, half of it the 500,000-image lookup and the validation/train check
(~2 GB of memory each; leave them out with ``--lookup-sizes 5000,50000 --val-images 0``). Prints,
in order:

1. **The fixture.** The 240 bench photos (``../shared/bench-photos``) are crops, some mirrored,
   with aspect changes, of six pictures (scikit-image's astronaut, chelsea, coffee, rocket,
   hubble_deep_field; matplotlib's grace_hopper). Each photo's place in its picture
   (:data:`LAYOUT`) was found by registering it against the picture (normalised cross-correlation
   over crop boxes with free aspect, then refined; correlation >= 0.97 for every photo). Two photos
   overlap by the IoU of their boxes in the same picture (mirroring ignored); the DISTINCT set is a
   greedy largest set with no pair at IoU >= ``--max-iou`` (0.5, against the >= 0.81 of two
   images one of which is a <= 5 %-per-side crop of the other: a wide margin). Every distinct
   photo gets 22 extreme copies (JPEG q50/q95, 0.5x/2x, aspect 0.5x/2x, squish to 224², 5 % crops
   of each side, corners and all sides, brightness/contrast ±10 %, grayscale, two everything-at-
   once) and ``--random-copies`` random combinations, each saved as a JPEG and put through the
   build's squish to 224².
2. **Recall and false matches** by threshold, both directions: (a) copy as the training image
   against the original as the evaluation image, (b) the original as the training image against
   the copy as the evaluation image. False matches: distinct photo pairs and copies against the
   other distinct originals. Then both distance distributions (percentiles and a histogram),
   recall per transform at the default threshold, and how the photos *outside* the distinct set
   match by overlap (IoU bins).
3. **Cost**: fingerprinting the squish the convert stage holds (``centre_cells`` per image plus one
   ``fingerprints_of_cells`` batch, and ``fingerprint`` per image) against
   ``squish_resize_with_size(data, 224, 95)`` per bench photo, in the same loop, taking turns,
   best of ``--rounds``; the ratios. Also ``eval_fingerprints`` per evaluation image. Then the
   whole convert stage (``convert_tar_range`` + part write of a tar of bench photos) as shipped
   against the same stage with the fingerprint work taken out, taking turns: CPU time per image
   of each, the difference, and the fingerprint work timed inside the stage (thread CPU time).
4. **Lookup**: :class:`EvalIndex` against :func:`brute_force_matches` for N evaluation images
   (x 49 variants each): random fingerprints and realistic ones (fingerprints of random crops of
   the bench photos), time per query on one thread and on the cores here, and the projection to
   14.2 M queries as a share of the build's CPU time (measured convert cost x 14.2 M). Then the
   validation/train check at ImageNet-21K-P's scale (561,050 validation images' variants indexed,
   the train images queried).
"""
from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "bench-photos"
sys.path.insert(0, str(ROOT))

from pipeline import near_duplicates as nd  # noqa: E402
from pipeline.images import MAX_PIXELS, _squish, squish_resize_with_size  # noqa: E402

IMAGENET21K_IMAGES = 14_200_000
SOURCES = {"A": "astronaut", "C": "chelsea", "F": "coffee", "G": "grace_hopper", "H": "hubble_deep_field",
           "R": "rocket"}
#: photo number, source picture (m: mirrored), box x0 y0 x1 y1 in the picture's pixels.
LAYOUT = """
000 H 144 116 936 641 | 001 Cm 66 109 406 251 | 002 Am 34 205 490 477 | 003 Gm 46 111 448 377
004 R 20 24 420 423 | 005 A 52 201 333 497 | 006 A 63 57 498 451 | 007 Cm 224 28 417 297
008 R 118 48 628 332 | 009 Gm 112 8 502 565 | 010 Hm 23 1 997 721 | 011 Fm 10 19 560 237
012 G 123 75 502 548 | 013 G 45 1 444 565 | 014 Cm 98 43 372 282 | 015 Fm 236 123 571 285
016 Am 69 151 295 427 | 017 C 96 5 436 204 | 018 R 54 38 447 304 | 019 Am 66 235 392 454
020 F 264 106 534 376 | 021 Fm 111 66 467 366 | 022 G 28 65 383 510 | 023 Rm 18 118 631 410
024 Fm 202 45 540 337 | 025 G 84 52 484 589 | 026 Cm 32 106 441 288 | 027 R 5 14 587 268
028 Gm 2 135 386 521 | 029 Rm 89 40 582 383 | 030 Hm 428 126 888 854 | 031 Fm 44 31 596 387
032 Cm 133 100 393 224 | 033 G 14 94 482 337 | 034 R 21 36 411 218 | 035 C 12 40 344 282
036 R 14 8 605 372 | 037 A 34 176 399 500 | 038 Fm 206 70 477 281 | 039 Cm 70 156 404 298
040 Hm 26 10 903 872 | 041 H 56 31 645 424 | 042 A 210 61 468 486 | 043 Rm 182 40 472 288
044 Rm 31 6 458 422 | 045 Gm 11 60 512 592 | 046 A 64 40 467 457 | 047 Cm 76 60 277 274
048 Fm 186 123 526 376 | 049 F 135 134 586 314 | 050 Fm 284 90 594 393 | 051 R 192 8 550 316
052 Fm 2 2 591 391 | 053 Rm 57 10 592 409 | 054 R 248 56 567 413 | 055 A 28 177 368 500
056 Hm 4 126 682 743 | 057 R 108 2 433 395 | 058 Fm 47 59 590 374 | 059 C 22 38 388 278
060 C 78 147 324 280 | 061 Fm 40 120 597 381 | 062 Hm 93 125 943 771 | 063 Cm 20 15 414 204
064 H 2 38 987 620 | 065 Hm 100 8 602 850 | 066 A 19 23 454 502 | 067 Rm 108 47 558 231
068 Cm 113 14 429 240 | 069 G 9 46 489 294 | 070 Hm 134 30 767 842 | 071 Gm 112 16 380 575
072 Fm 7 18 574 398 | 073 Fm 18 145 591 394 | 074 A 13 152 449 496 | 075 Gm 38 8 497 518
076 F 9 16 548 286 | 077 C 86 9 358 194 | 078 Rm 108 208 530 385 | 079 Rm 36 20 390 339
080 Fm 197 29 546 380 | 081 Am 104 128 479 460 | 082 H 92 141 888 641 | 083 R 124 197 482 385
084 Cm 105 51 331 269 | 085 G 142 207 434 518 | 086 H 185 34 854 801 | 087 Fm 68 89 330 382
088 Am 12 14 378 266 | 089 Hm 4 341 475 859 | 090 Fm 92 45 532 355 | 091 A 8 5 509 511
092 Cm 116 77 387 270 | 093 Cm 33 37 253 282 | 094 Gm 16 10 496 540 | 095 Gm 5 37 489 443
096 H 34 20 933 543 | 097 C 28 30 292 217 | 098 Rm 14 29 614 362 | 099 Fm 128 36 553 244
100 Am 8 53 510 453 | 101 Fm 51 25 571 235 | 102 A 2 41 511 491 | 103 R 51 146 619 349
104 A 199 226 430 496 | 105 Am 50 10 483 478 | 106 G 68 278 292 586 | 107 Gm 53 52 293 549
108 Rm 224 61 584 394 | 109 Rm 15 44 634 422 | 110 Cm 113 63 410 205 | 111 Cm 46 17 346 269
112 G 17 8 403 398 | 113 F 182 106 556 348 | 114 G 11 220 233 509 | 115 Fm 13 118 469 328
116 Hm 440 55 969 613 | 117 R 69 87 593 414 | 118 G 67 33 445 537 | 119 Hm 42 329 924 823
120 Rm 208 14 542 260 | 121 Hm 38 174 967 571 | 122 Fm 226 80 466 299 | 123 F 31 84 592 328
124 Hm 252 179 884 588 | 125 Hm 48 32 938 858 | 126 Gm 2 76 502 488 | 127 F 94 26 552 310
128 Rm 192 138 626 344 | 129 G 221 268 502 534 | 130 Hm 1 242 984 774 | 131 Cm 6 12 440 257
132 Am 140 114 470 492 | 133 Gm 22 54 438 303 | 134 C 4 56 410 188 | 135 G 72 72 417 591
136 Am 31 134 491 399 | 137 Cm 93 40 451 274 | 138 G 12 25 425 360 | 139 R 112 32 395 348
140 Fm 118 212 502 391 | 141 A 180 49 394 466 | 142 A 127 12 462 510 | 143 F 49 146 540 386
144 C 17 110 201 290 | 145 G 53 32 309 525 | 146 R 136 32 440 218 | 147 Gm 1 27 485 581
148 Rm 236 127 504 400 | 149 Cm 8 8 445 292 | 150 C 74 61 295 270 | 151 C 44 55 299 200
152 G 205 98 428 516 | 153 Cm 38 26 383 274 | 154 R 16 96 522 389 | 155 Am 2 7 477 442
156 Gm 0 27 508 426 | 157 C 80 30 410 294 | 158 A 37 102 472 451 | 159 R 184 72 444 256
160 R 57 119 549 410 | 161 G 7 158 486 596 | 162 A 67 63 338 296 | 163 H 116 265 953 676
164 Fm 136 20 526 400 | 165 Gm 231 69 461 533 | 166 R 180 56 520 232 | 167 Am 58 16 508 498
168 H 180 30 920 819 | 169 Am 11 160 511 510 | 170 Hm 3 224 970 798 | 171 Gm 132 222 362 543
172 R 336 10 594 410 | 173 Rm 100 227 623 403 | 174 C 8 111 447 246 | 175 Rm 34 46 602 369
176 Cm 84 38 324 298 | 177 R 87 184 568 419 | 178 Cm 64 24 450 189 | 179 Cm 120 4 439 292
180 Cm 38 1 441 131 | 181 Gm 106 143 512 414 | 182 R 165 3 504 412 | 183 Hm 162 10 880 810
184 C 101 47 428 281 | 185 Cm 150 25 366 275 | 186 Rm 338 32 628 268 | 187 A 23 4 499 490
188 G 283 66 502 344 | 189 Fm 153 19 586 388 | 190 Gm 2 176 410 475 | 191 A 85 7 373 458
192 G 20 56 495 488 | 193 R 170 26 454 387 | 194 Hm 68 235 716 739 | 195 A 1 205 460 478
196 Cm 22 0 396 291 | 197 C 173 16 410 259 | 198 G 165 80 494 566 | 199 Am 12 46 360 397
200 A 236 18 505 475 | 201 R 131 56 504 360 | 202 Cm 52 12 292 300 | 203 R 24 73 630 413
204 Gm 51 5 511 596 | 205 Hm 49 379 948 790 | 206 Rm 48 24 630 317 | 207 Cm 205 7 440 296
208 H 6 119 829 576 | 209 F 9 0 600 326 | 210 Cm 60 31 246 269 | 211 Rm 4 67 472 393
212 Gm 262 82 478 464 | 213 A 170 75 380 362 | 214 Rm 118 162 621 418 | 215 F 28 101 422 376
216 Gm 14 61 343 600 | 217 F 145 10 504 392 | 218 Am 14 2 509 330 | 219 G 167 0 477 512
220 Rm 80 28 526 278 | 221 Rm 4 203 624 380 | 222 Rm 116 159 628 350 | 223 Am 228 250 470 456
224 A 223 87 459 341 | 225 A 6 195 500 482 | 226 Rm 44 89 625 272 | 227 Cm 17 8 444 292
228 Am 48 74 500 400 | 229 Cm 68 113 408 239 | 230 H 311 160 933 637 | 231 H 309 62 876 509
232 R 5 49 378 420 | 233 A 10 72 501 450 | 234 R 8 76 630 357 | 235 C 0 148 437 269
236 Cm 124 10 403 297 | 237 A 40 59 485 462 | 238 C 3 116 363 273 | 239 Hm 3 35 978 730
"""

CROP = 0.05
EXTREMES = {
    "jpeg q50": dict(q=50), "jpeg q95": dict(q=95),
    "scale 0.5x": dict(scale=(0.5, 0.5)), "scale 2x": dict(scale=(2.0, 2.0)),
    "aspect w 0.5x": dict(scale=(0.5, 1.0)), "aspect h 0.5x": dict(scale=(1.0, 0.5)),
    "aspect w 2x": dict(scale=(2.0, 1.0)), "squish 224x224": dict(size=(224, 224), q=75),
    "crop 5% left": dict(crop=(CROP, 0, 0, 0)), "crop 5% right": dict(crop=(0, 0, CROP, 0)),
    "crop 5% top": dict(crop=(0, CROP, 0, 0)), "crop 5% bottom": dict(crop=(0, 0, 0, CROP)),
    "crop 5% all sides": dict(crop=(CROP,) * 4), "crop 5% left+top": dict(crop=(CROP, CROP, 0, 0)),
    "crop 5% right+bottom": dict(crop=(0, 0, CROP, CROP)),
    "brightness +10%": dict(bright=1.1), "brightness -10%": dict(bright=0.9),
    "contrast +10%": dict(contrast=1.1), "contrast -10%": dict(contrast=0.9), "grayscale": dict(gray=True),
    "all extremes": dict(crop=(CROP, CROP, 0, 0), scale=(0.5, 1.0), bright=0.9, contrast=0.9, gray=True, q=50),
    "all extremes 2": dict(crop=(0, 0, CROP, CROP), scale=(2.0, 1.5), bright=1.1, contrast=1.1, q=50),
}


def layout() -> dict[str, tuple[str, bool, tuple[float, ...]]]:
    out = {}
    for entry in LAYOUT.replace("|", "\n").split("\n"):
        if entry.strip():
            number, source, *box = entry.split()
            out[f"photo_{int(number):04d}.jpg"] = (SOURCES[source[0]], source.endswith("m"), tuple(map(float, box)))
    return out


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


def overlaps(lay) -> tuple[list[str], np.ndarray]:
    names = sorted(lay)
    m = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j and lay[a][0] == lay[b][0]:
                m[i, j] = iou(lay[a][2], lay[b][2])
    return names, m


def distinct_set(names, m, max_iou: float) -> list[int]:
    """Greedy: fewest conflicts first, keep a photo when it overlaps no kept one at >= max_iou."""
    conflict = m >= max_iou
    kept: list[int] = []
    for i in sorted(range(len(names)), key=lambda i: (conflict[i].sum(), names[i])):
        if not conflict[i, kept].any():
            kept.append(i)
    return sorted(kept)


def transformed(image: Image.Image, crop=(0, 0, 0, 0), scale=(1.0, 1.0), size=None, bright=1.0,
                contrast=1.0, gray=False, q=95) -> bytes:
    w, h = image.size
    if any(crop):
        image = image.crop((round(crop[0] * w), round(crop[1] * h), w - round(crop[2] * w), h - round(crop[3] * h)))
    if size is not None:
        image = image.resize(size, Image.Resampling.BICUBIC)
    elif scale != (1.0, 1.0):
        image = image.resize((max(8, round(image.size[0] * scale[0])), max(8, round(image.size[1] * scale[1]))),
                             Image.Resampling.BICUBIC)
    if bright != 1.0:
        image = ImageEnhance.Brightness(image).enhance(bright)
    if contrast != 1.0:
        image = ImageEnhance.Contrast(image).enhance(contrast)
    if gray:
        image = image.convert("L")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=int(q))
    return out.getvalue()


def random_params(rng: random.Random) -> dict:
    p: dict = {"q": rng.randint(50, 95)}
    if rng.random() < 0.7:
        p["crop"] = tuple(rng.uniform(0, CROP) for _ in range(4))
    if rng.random() < 0.7:
        p["scale"] = (2 ** rng.uniform(-1, 1), 2 ** rng.uniform(-1, 1))
    if rng.random() < 0.5:
        p["bright"] = rng.uniform(0.9, 1.1)
    if rng.random() < 0.5:
        p["contrast"] = rng.uniform(0.9, 1.1)
    if rng.random() < 0.25:
        p["gray"] = True
    return p


def squished(data: bytes) -> Image.Image:
    return _squish(data, nd.SIZE, MAX_PIXELS)[0]


def percentiles(values, ps=(0, 0.1, 1, 5, 50, 95, 99, 99.5, 100)) -> str:
    return "  ".join(f"p{p:g}={np.percentile(values, p):.0f}" for p in ps)


def fixture(args):
    lay = layout()
    names, m = overlaps(lay)
    kept = distinct_set(names, m, args.max_iou)
    print(f"fixture: {len(names)} photos of {len(set(v[0] for v in lay.values()))} pictures; distinct set "
          f"{len(kept)} (no pair at IoU >= {args.max_iou}); same-picture pairs {int((m > 0).sum() // 2)}, "
          f"of which IoU >= 0.81: {int((m >= 0.81).sum() // 2)}")
    t = time.perf_counter()
    originals, copies = [], []  # originals[k] = (query fp, eval fps); copies: (k, kind, query fp, eval fps)
    for k, i in enumerate(kept):
        data = (PHOTOS / names[i]).read_bytes()
        image = squished(data)
        originals.append((nd.fingerprint(image), nd.eval_fingerprints(image)))
        picture = Image.open(io.BytesIO(data)).convert("RGB")
        rng = random.Random(i)
        params = list(EXTREMES.items()) + [("random", random_params(rng)) for _ in range(args.random_copies)]
        for kind, p in params:
            copy = squished(transformed(picture, **p))
            copies.append((k, kind, nd.fingerprint(copy), nd.eval_fingerprints(copy)))
    print(f"  {len(copies)} copies ({len(copies) // len(kept)} per photo) made and fingerprinted in "
          f"{time.perf_counter() - t:.0f} s")
    return names, m, kept, originals, copies


def min_distance(query: np.ndarray, evals: np.ndarray) -> np.ndarray:
    """(nq,) against (ne, V) -> (nq, ne) smallest distance over the variants."""
    return nd.hamming(query[:, None, None], evals[None]).min(axis=2)


def recall_report(names, m, kept, originals, copies, threshold: int) -> None:
    oq = np.array([o[0] for o in originals], dtype=np.uint64)
    oe = np.array([o[1] for o in originals], dtype=np.uint64)
    own = np.array([c[0] for c in copies])
    kinds = [c[1] for c in copies]
    cq = np.array([c[2] for c in copies], dtype=np.uint64)
    ce = np.array([c[3] for c in copies], dtype=np.uint64)
    a = min_distance(cq, oe)  # (copies, originals): copy as training image
    b = min_distance(oq, ce).T  # (copies, originals): original as training image, copy as eval image
    oo = min_distance(oq, oe)
    rows = np.arange(len(copies))
    pos_a, pos_b = a[rows, own], b[rows, own]
    other = np.ones_like(a, dtype=bool)
    other[rows, own] = False
    off = ~np.eye(len(kept), dtype=bool)
    neg = np.concatenate([a[other], b[other], oo[off]])
    pos = np.concatenate([pos_a, pos_b])
    print(f"\nrecall and false matches (positives: {len(pos)} = {len(copies)} copies x 2 directions; negatives: "
          f"{len(neg)} pairs of different distinct photos, copies included; {nd.VARIANT_COUNT} variants per eval image)")
    print(f"  {'T':>3} {'recall':>8} {'(a) copy->orig':>15} {'(b) orig->copy':>15} {'extremes':>9} {'random':>8} {'false':>6}")
    extreme = np.array([k != "random" for k in kinds] * 2)
    for t in range(0, 17, 2):
        mark = "  <- default" if t == threshold else ""
        print(f"  {t:>3} {np.mean(pos <= t):8.4f} {np.mean(pos_a <= t):15.4f} {np.mean(pos_b <= t):15.4f} "
              f"{np.mean(pos[extreme] <= t):9.4f} {np.mean(pos[~extreme] <= t):8.4f} {int(np.sum(neg <= t)):6d}{mark}")
    print("\ndistance distributions (bits of 64; even, as every fingerprint has 32 bits set)")
    print(f"  near-duplicates  {percentiles(pos)}")
    print(f"  distinct         {percentiles(neg)}")
    edges = list(range(0, 34, 2)) + [65]
    hp, _ = np.histogram(pos, bins=edges)
    hn, _ = np.histogram(neg, bins=edges)
    print(f"  {'distance':>10} {'near-dup':>9} {'distinct':>9}")
    for lo, hi, x, y in zip(edges, edges[1:], hp, hn):
        label = f"{lo}" if hi - lo == 2 else f"{lo}-{hi - 1}"
        print(f"  {label:>10} {x:9d} {y:9d}")
    print(f"  threshold {threshold}: largest near-duplicate distance {pos.max()}, smallest distinct {neg.min()}")
    print(f"\nmisses at T={threshold} by transform (of {2 * sum(1 for k in kinds if k == kinds[0])} per kind):")
    worst = {}
    for kind, d1, d2 in zip(kinds, pos_a, pos_b):
        worst.setdefault(kind, []).extend([d1, d2])
    print("  " + ", ".join(f"{kind} {int(np.sum(np.array(v) > threshold))}"
                           for kind, v in worst.items() if np.any(np.array(v) > threshold)) or "  none")
    centre = nd.hamming(cq, oq[own])  # what the validation/train check compares: centre with centre
    print(f"\nwithin a build, validation images are matched as evaluation images are (their {nd.VARIANT_COUNT} variants, "
          f"from the pixels the convert decoded), so the recall above is theirs. Without variants (centre against "
          f"centre) it would be, at T={threshold}: {np.mean(centre <= threshold):.4f}; by transform:")
    by_kind = {}
    for kind, d in zip(kinds, centre):
        by_kind.setdefault(kind, []).append(d <= threshold)
    print("  " + ", ".join(f"{kind} {np.mean(v):.2f}" for kind, v in by_kind.items()))
    return None


def grey_zone(names, m, threshold: int) -> None:
    """All 240 photos: how same-picture pairs match by overlap, against different-picture pairs."""
    images = [squished((PHOTOS / n).read_bytes()) for n in names]
    q = np.array([nd.fingerprint(im) for im in images], dtype=np.uint64)
    e = np.array([nd.eval_fingerprints(im) for im in images], dtype=np.uint64)
    d = min_distance(q, e)
    d = np.minimum(d, d.T)
    iu = np.triu_indices(len(names), 1)
    dd, mm = d[iu], m[iu]
    same = np.array([[names[i] != names[j] for j in range(len(names))] for i in range(len(names))])[iu]
    print(f"\nall {len(names)} bench photos, pairs by overlap in their picture (match: distance <= {threshold} "
          "either way; mirrored crops count by their boxes)")
    print(f"  {'IoU':>9} {'pairs':>6} {'match':>6} {'median d':>9}")
    diff = mm == 0
    rows = [("other pic", diff & same)] + [(f"{lo:.1f}-{hi:.2f}" if hi < 1 else f">={lo:.2f}", (mm > max(lo, 1e-9)) & (mm < hi))
                                            for lo, hi in ((0, .3), (.3, .5), (.5, .7), (.7, .81), (.81, 1.01))]
    for label, sel in rows:
        if sel.any():
            print(f"  {label:>9} {int(sel.sum()):6d} {int(np.sum(dd[sel] <= threshold)):6d} {np.median(dd[sel]):9.0f}")


def cost(rounds: int) -> float:
    """Convert per photo against fingerprinting its squish in the same loop, as the convert stage would.

    Per photo, taking turns: ``squish_resize_with_size`` (the convert), then ``_squish`` + JPEG
    encode with the fingerprint work timed apart, after the encode as in the convert stage: (1)
    ``centre_cells`` of each squish, then one ``fingerprints_of_cells`` batch (what the convert
    stage does per class); (2) ``fingerprint`` called per image. Best of ``rounds`` for each.
    """
    from pipeline.images import _encode_jpeg

    datas = [p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))]
    best = {k: 1e9 for k in ("convert", "cells+batch", "fingerprint", "eval_fingerprints")}
    clock = time.perf_counter
    for _ in range(rounds):
        t = clock()
        for data in datas:
            squish_resize_with_size(data, 224, 95)
        best["convert"] = min(best["convert"], (clock() - t) / len(datas))
        spent, cells = 0.0, []
        for data in datas:
            image, _ = _squish(data, nd.SIZE, MAX_PIXELS)
            _encode_jpeg(image, 95)
            t = clock()
            cells.append(nd.centre_cells(image))
            spent += clock() - t
        t = clock()
        nd.fingerprints_of_cells(cells)
        spent += clock() - t
        best["cells+batch"] = min(best["cells+batch"], spent / len(datas))
        spent = 0.0
        for data in datas:
            image, _ = _squish(data, nd.SIZE, MAX_PIXELS)
            _encode_jpeg(image, 95)
            t = clock()
            nd.fingerprint(image)
            spent += clock() - t
        best["fingerprint"] = min(best["fingerprint"], spent / len(datas))
        images = [squished(d) for d in datas[:60]]
        t = clock()
        for image in images:
            nd.eval_fingerprints(image)
        best["eval_fingerprints"] = min(best["eval_fingerprints"], (clock() - t) / len(images))
    convert = best["convert"]
    print(f"\ncost per bench photo (best of {rounds} rounds, taking turns, {len(datas)} photos):")
    print(f"  convert (squish_resize_with_size, q95)                  {convert * 1e6:8.0f} us")
    print(f"  centre_cells per image + one fingerprints_of_cells batch {best['cells+batch'] * 1e6:8.1f} us   "
          f"ratio {best['cells+batch'] / convert:.2%} of convert (target <= 3 %)")
    print(f"  fingerprint(image) per image                            {best['fingerprint'] * 1e6:8.1f} us   "
          f"ratio {best['fingerprint'] / convert:.2%}")
    print(f"  eval_fingerprints ({nd.VARIANT_COUNT} variants; evaluation images only) {best['eval_fingerprints'] * 1e6:6.0f} us")
    return convert


def stage_cost(rounds: int, classes: int = 2, per_class: int = 440) -> None:
    """The whole convert stage with fingerprints (as shipped) against the same stage without them.

    ``convert_tar_range`` over a fall11-style tar of bench photos plus the part write (what one
    convert task does: read, parse, decode, squish, encode, split, write), taking turns, best of
    ``rounds`` in wall time (one process; process CPU time is no better here: it also counts a
    read-ahead thread still finishing the previous run, +/- 8 % by position in the turn): once as
    shipped, once with the fingerprint work replaced by nothing (``centre_cells`` returning None,
    ``fingerprints_of`` zeros, no validation variants: the convert stage before issue 22). 20 of
    each class's 440 images are validation images (ImageNet-21K-P: 50 of ~1,100 a class), whose
    variants are taken from the pixels kept for them (val rule ``first``). The shipped runs also time the fingerprint work inside
    the stage (CPU time of the converting thread): the figure free of the two runs' noise.
    """
    import tempfile

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from photo_archive import write_archive
    from pipeline import convert
    from pipeline.archive import list_containers

    shipped = (convert.centre_cells, convert.fingerprints_of, convert.eval_fingerprints, convert.jpeg_eval_fingerprints)
    inside = [0.0, 0.0]  # centre fingerprints, validation variants

    def timed_inside(fn, k):
        def call(arg):
            t = time.thread_time()
            try:
                return fn(arg)
            finally:
                inside[k] += time.thread_time() - t
        return call

    nothing = np.empty(0, np.uint64)
    variants = {"with": tuple(timed_inside(f, k) for f, k in zip(shipped, (0, 0, 1, 1))),
                "without": (lambda image: None, lambda cells: [0] * len(cells), lambda image: nothing, lambda jpg: None)}
    settings = convert.ConvertSettings(min_images=per_class // 2, val_per_class=per_class * 50 // 1100)
    best = {"with": 1e9, "without": 1e9, "centre": 1e9, "variants": 1e9}
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "photos.tar"
        n = write_archive(archive, "tar", classes, per_class)
        containers = list_containers(archive, "tar")
        try:
            for round_ in range(rounds + 1):  # the first round warms up
                for name, fns in variants.items():
                    (convert.centre_cells, convert.fingerprints_of, convert.eval_fingerprints,
                     convert.jpeg_eval_fingerprints) = fns
                    inside[:] = [0.0, 0.0]
                    t = time.perf_counter()
                    part = convert.convert_tar_range(archive, containers, settings, lambda wnid: True)
                    part.write(Path(tmp) / name)
                    spent = time.perf_counter() - t
                    if len(part.samples) != n:
                        raise SystemExit(f"{name}: {n - len(part.samples)} photos rejected: {part.rejects[:1]}")
                    if round_:
                        best[name] = min(best[name], spent / n)
                        if name == "with":
                            best["centre"] = min(best["centre"], inside[0] / n)
                            best["variants"] = min(best["variants"], inside[1] / n)
        finally:
            (convert.centre_cells, convert.fingerprints_of, convert.eval_fingerprints,
             convert.jpeg_eval_fingerprints) = shipped
    print(f"\nconvert stage (convert_tar_range + part write, {n} photos in {classes} class tars, one process, "
          f"wall time, best of {rounds}, taking turns):")
    print(f"  without fingerprints {best['without'] * 1e6:8.0f} us/image")
    print(f"  with fingerprints    {best['with'] * 1e6:8.0f} us/image   difference {best['with'] / best['without'] - 1:+.2%}")
    base = best["without"]
    print(f"  inside the stage, per image: centre fingerprint {best['centre'] * 1e6:5.1f} us = "
          f"{best['centre'] / base:.2%} of the stage without it (target <= 3 %); validation variants "
          f"{best['variants'] * 1e6:5.1f} us = {best['variants'] / base:.2%} "
          f"({settings.val_per_class} of {per_class} images); together {(best['centre'] + best['variants']) / base:.2%}")


def realistic_fingerprints(n: int, seed: int, variants: bool) -> np.ndarray:
    """Fingerprints of ``n`` random crops (10-100 % per side, random aspect) of the bench photos."""
    rng = np.random.default_rng(seed)
    pictures = []
    for p in sorted(PHOTOS.glob("*.jpg")):
        im = Image.open(p)
        im.draft("RGB", (448, 448))
        pictures.append(im.convert("RGB"))
    out = []
    for _ in range(n):
        im = pictures[rng.integers(len(pictures))]
        w, h = im.size
        fw, fh = rng.uniform(0.1, 1.0, 2)
        x0, y0 = rng.uniform(0, 1 - fw) * w, rng.uniform(0, 1 - fh) * h
        crop = im.resize((224, 224), Image.Resampling.BILINEAR, box=(x0, y0, x0 + fw * w, y0 + fh * h))
        out.append(nd.eval_fingerprints(crop) if variants else nd.fingerprint(crop))
    return np.array(out, dtype=np.uint64)


def random_eval(n: int, rng) -> np.ndarray:
    """Random balanced fingerprints (32 bits set), ``VARIANT_COUNT`` per image, the variants near each other."""
    base = np.argsort(rng.random((n, 64)), axis=1)[:, :32]
    bits = np.zeros((n, 64), dtype=bool)
    np.put_along_axis(bits, base, True, axis=1)
    out = np.empty((n, nd.VARIANT_COUNT), dtype=np.uint64)
    weights = (np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64))
    for v in range(nd.VARIANT_COUNT):
        b = bits.copy()
        if v:  # swap one set and one clear bit per variant: variants 2 bits apart from the centre
            on = np.argmax(b * rng.random((n, 64)), axis=1)
            off = np.argmax(~b * rng.random((n, 64)), axis=1)
            b[np.arange(n), on] = False
            b[np.arange(n), off] = True
        out[:, v] = (b * weights).sum(axis=1, dtype=np.uint64)
    return out


def random_queries(n: int, rng) -> np.ndarray:
    return random_eval(n, rng)[:, 0]


def timed(fn, rounds: int) -> tuple[float, object]:
    best, result = 1e9, None
    for _ in range(rounds):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def lookup(sizes, n_queries: int, convert_s: float, threshold: int, rounds: int) -> None:
    rng = np.random.default_rng(1)
    build_cpu = convert_s * IMAGENET21K_IMAGES
    cores = len(os.sched_getaffinity(0))
    print(f"\nlookup at T={threshold}; build CPU time assumed = convert {convert_s * 1e3:.2f} ms x 14.2 M = "
          f"{build_cpu / 3600:.1f} CPU-hours; 1 % = {build_cpu / 100:.0f} s. us/query: 1 thread (CPU), and on "
          f"the {cores} cores here (wall; EvalIndex.query's default)")
    t = time.perf_counter()
    real_eval = realistic_fingerprints(max(s for s in sizes if s <= 50_000), 7, True)
    real_queries = realistic_fingerprints(n_queries, 8, False)
    print(f"  (realistic fingerprints: {len(real_eval)} eval images and {len(real_queries)} queries made in "
          f"{time.perf_counter() - t:.0f} s)")
    print(f"  {'N eval':>8} {'data':>9} {'rows':>9} {'chunks':>14} {'radii':>10} {'build s':>8} {'us/q 1 thr':>10} "
          f"{'us/q all':>9} {'matches':>8} {'brute us/q':>10} {'speed-up':>8} {'14.2M: s':>9} {'% build':>8}")
    for n in sizes:
        for kind in ("random", "realistic"):
            if kind == "realistic" and n > len(real_eval):
                continue
            evals = random_eval(n, rng) if kind == "random" else real_eval[:n]
            queries = random_queries(n_queries, rng) if kind == "random" else real_queries
            if kind == "random":  # plant 1 % near pairs
                planted = rng.integers(0, n, n_queries // 100)
                queries[: len(planted)] = evals[planted, rng.integers(0, nd.VARIANT_COUNT, len(planted))]
            build_s, index = timed(lambda: nd.EvalIndex(evals, threshold=threshold), 1)
            one_s, found = timed(lambda: index.query(queries, workers=1), rounds)
            all_s, _ = timed(lambda: index.query(queries, batch=1024), rounds)
            sample = queries[: max(10, min(500, 2_000_000_000 // (n * nd.VARIANT_COUNT * 200)))]
            brute_s, brute = timed(lambda: nd.brute_force_matches(sample, evals, threshold), 2)
            exact = index.query(sample)
            assert all(np.array_equal(x, y) for x, y in zip(exact, brute)), "EvalIndex differs from brute force"
            per_q, per_brute = one_s / len(queries), brute_s / len(sample)
            projected = per_q * IMAGENET21K_IMAGES
            print(f"  {n:>8} {kind:>9} {n * nd.VARIANT_COUNT:>9} {str(index.plan.widths):>14} {str(index.plan.radii):>10} "
                  f"{build_s:8.1f} {per_q * 1e6:10.1f} {all_s / len(queries) * 1e6:9.1f} {len(found.query):8d} "
                  f"{per_brute * 1e6:10.0f} {per_brute / per_q:8.0f} {projected:9.0f} {projected / build_cpu:8.2%}")
            index = None  # free before the next size


def val_train_lookup(n_val: int, n_queries: int, convert_s: float, threshold: int, rounds: int) -> None:
    """The validation/train check at ImageNet-21K-P scale: ``n_val`` validation images' variants
    indexed, train centre fingerprints queried (random balanced fingerprints: realistic ones at
    this size would take an hour to make)."""
    rng = np.random.default_rng(2)
    build_cpu = convert_s * IMAGENET21K_IMAGES
    evals = random_eval(n_val, rng)
    queries = random_queries(n_queries, rng)
    build_s, index = timed(lambda: nd.EvalIndex(evals, threshold=threshold), 1)
    one_s, found = timed(lambda: index.query(queries, workers=1), rounds)
    all_s, _ = timed(lambda: index.query(queries, batch=1024), rounds)
    sample = queries[:20]
    assert all(np.array_equal(x, y) for x, y in zip(index.query(sample), nd.brute_force_matches(sample, evals, threshold)))
    per_q = one_s / len(queries)
    projected = per_q * (IMAGENET21K_IMAGES - n_val)
    print(f"\nvalidation/train check at ImageNet-21K-P scale: {n_val:,} validation images x {nd.VARIANT_COUNT} variants "
          f"= {evals.size:,} rows, chunks {index.plan.widths} radii {index.plan.radii}, built in {build_s:.0f} s")
    print(f"  {per_q * 1e6:.1f} us/train query on 1 thread, {all_s / len(queries) * 1e6:.1f} on the cores here; "
          f"{IMAGENET21K_IMAGES - n_val:,} train images: {projected:.0f} CPU-s = {projected / build_cpu:.2%} of the build's CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-iou", type=float, default=0.5)
    parser.add_argument("--random-copies", type=int, default=16)
    parser.add_argument("--threshold", type=int, default=nd.DEFAULT_THRESHOLD)
    parser.add_argument("--lookup-sizes", default="5000,50000,500000")
    parser.add_argument("--queries", type=int, default=100_000,
                        help="queries per lookup (a build has 14 M: the more, the closer their keys in the index)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-lookup", action="store_true")
    parser.add_argument("--val-images", type=int, default=561_050,
                        help="validation images for the validation/train check's lookup (0: skip it)")
    parser.add_argument("--only", choices=("recall", "cost", "lookup"),
                        help="run one part (cost: per image and the whole convert stage; lookup: with the "
                             "convert time it needs for its projection)")
    args = parser.parse_args()
    print(f"{nd.ALGORITHM} v{nd.ALGORITHM_VERSION}: {nd.HASH_BITS} bits, {nd.VARIANT_COUNT} variants per eval image, "
          f"default threshold {nd.DEFAULT_THRESHOLD}")
    if args.only in (None, "recall"):
        names, m, kept, originals, copies = fixture(args)
        recall_report(names, m, kept, originals, copies, args.threshold)
        grey_zone(names, m, args.threshold)
    if args.only == "recall":
        return
    convert_s = cost(args.rounds)
    if args.only in (None, "cost"):
        stage_cost(args.rounds)
    if args.only in (None, "lookup") and not args.skip_lookup:
        lookup([int(s) for s in args.lookup_sizes.split(",")], args.queries, convert_s, args.threshold, args.rounds)
        if args.val_images:
            val_train_lookup(args.val_images, args.queries, convert_s, args.threshold, args.rounds)


if __name__ == "__main__":
    main()
