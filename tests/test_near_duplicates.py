"""pipeline.near_duplicates: fingerprints of real photos, exact lookup, hash files, evaluation sets."""
from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from pipeline import near_duplicates as nd
from pipeline.images import MAX_PIXELS, _squish, squish_resized_array

# Bench photos of different pictures or far-apart parts of one (boxes in benchmarks/near_duplicates.py):
# astronaut, chelsea, coffee, grace_hopper, hubble_deep_field, rocket.
PHOTOS = ["photo_0005.jpg", "photo_0001.jpg", "photo_0011.jpg", "photo_0003.jpg", "photo_0000.jpg", "photo_0004.jpg"]


@pytest.fixture(scope="module")
def photos(shared_dir) -> dict[str, bytes]:
    return {name: (shared_dir / "bench-photos" / name).read_bytes() for name in PHOTOS}


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def squished(data: bytes) -> Image.Image:
    return _squish(data, nd.SIZE, MAX_PIXELS)[0]


def cut(image: Image.Image, left=0.0, top=0.0, right=0.0, bottom=0.0) -> Image.Image:
    w, h = image.size
    return image.crop((round(left * w), round(top * h), w - round(right * w), h - round(bottom * h)))


TRANSFORMS = {
    "jpeg q50": lambda im: jpeg(im, 50),
    "half size": lambda im: jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.BICUBIC)),
    "aspect 2x wide": lambda im: jpeg(im.resize((im.width * 2, im.height), Image.Resampling.BICUBIC)),
    "crop 5% left+top": lambda im: jpeg(cut(im, 0.05, 0.05)),
    "crop 5% all sides": lambda im: jpeg(cut(im, 0.05, 0.05, 0.05, 0.05)),
    "brightness -10%": lambda im: jpeg(ImageEnhance.Brightness(im).enhance(0.9)),
    "contrast +10%": lambda im: jpeg(ImageEnhance.Contrast(im).enhance(1.1)),
    "grayscale": lambda im: jpeg(im.convert("L")),
}
COMBINED = lambda im: jpeg(ImageEnhance.Brightness(cut(im, 0, 0.03, 0.04, 0).resize(  # noqa: E731
    (im.width * 3 // 4, im.height), Image.Resampling.BICUBIC)).enhance(1.08), 60)


def test_fingerprint_is_the_same_for_the_pil_image_its_array_and_a_batch(photos):
    data = photos["photo_0005.jpg"]
    image = squished(data)
    assert image.mode == "RGBX"
    value = nd.fingerprint(image)
    assert 0 <= value < 2 ** 64 and bin(value).count("1") == 32
    assert nd.fingerprint(squish_resized_array(data)) == value
    assert int(nd.eval_fingerprints(image)[0]) == value
    batch = nd.fingerprint_array([squished(d) for d in photos.values()])
    assert batch.dtype == np.uint64 and int(batch[0]) == value
    assert list(batch) == [nd.fingerprint(squished(d)) for d in photos.values()]


@pytest.mark.parametrize("kind", sorted(TRANSFORMS))
def test_transformed_copies_match_their_original_both_ways(photos, kind):
    for data in photos.values():
        original = squished(data)
        copy = squished(TRANSFORMS[kind](Image.open(io.BytesIO(data)).convert("RGB")))
        as_query = nd.hamming(nd.fingerprint(copy), nd.eval_fingerprints(original)).min()
        as_eval = nd.hamming(nd.fingerprint(original), nd.eval_fingerprints(copy)).min()
        assert max(as_query, as_eval) <= nd.DEFAULT_THRESHOLD, (kind, as_query, as_eval)


def test_combined_transforms_match_as_measured(photos):
    """Crop, aspect, brightness and JPEG at once: the benchmark's random combinations (99.3 % within
    the default threshold, all within 10 bits); here at most one photo of six beyond it, none beyond 10."""
    worst = []
    for data in photos.values():
        original = squished(data)
        copy = squished(COMBINED(Image.open(io.BytesIO(data)).convert("RGB")))
        worst.append(max(nd.hamming(nd.fingerprint(copy), nd.eval_fingerprints(original)).min(),
                         nd.hamming(nd.fingerprint(original), nd.eval_fingerprints(copy)).min()))
    assert sum(d > nd.DEFAULT_THRESHOLD for d in worst) <= 1 and max(worst) <= 10, worst


def test_distinct_photos_do_not_match(photos):
    images = [squished(d) for d in photos.values()]
    queries = np.array([nd.fingerprint(im) for im in images], dtype=np.uint64)
    evals = np.array([nd.eval_fingerprints(im) for im in images])
    d = nd.hamming(queries[:, None, None], evals[None]).min(axis=2)
    off_diagonal = d[~np.eye(len(images), dtype=bool)]
    assert off_diagonal.min() > nd.DEFAULT_THRESHOLD + 4
    assert np.all(np.diag(d) == 0)
    matches = nd.EvalIndex(evals, names=list(photos)).query(queries)
    assert list(zip(matches.query, matches.eval)) == [(i, i) for i in range(len(images))]


def planted(rng, n_eval: int, n_query: int, variants: int, threshold: int):
    evals = rng.integers(0, 2 ** 63, (n_eval, variants), dtype=np.uint64) * np.uint64(2) + \
        rng.integers(0, 2, (n_eval, variants), dtype=np.uint64)
    queries = rng.integers(0, 2 ** 63, n_query, dtype=np.uint64) * np.uint64(2)
    for k in range(n_query // 2):  # half the queries within 0..threshold+2 bits of a random eval variant
        flips = rng.choice(64, k % (threshold + 3), replace=False)
        mask = np.uint64(sum(1 << int(b) for b in flips))
        queries[k] = evals[rng.integers(n_eval), rng.integers(variants)] ^ mask
    return evals, queries


@pytest.mark.parametrize("n_eval,variants,threshold,chunks", [
    (3000, 1, 6, None), (2000, 5, 6, None), (500, 49, 6, None), (3000, 1, 10, None),
    (3000, 3, 8, 3), (3000, 1, 0, None), (50, 2, 12, 5),
])
def test_eval_index_equals_brute_force(n_eval, variants, threshold, chunks):
    rng = np.random.default_rng(n_eval + variants + threshold)
    evals, queries = planted(rng, n_eval, 1200, variants, threshold)
    index = nd.EvalIndex(evals, threshold=threshold, chunks=chunks)
    found = index.query(queries, batch=500, workers=1)
    expected = nd.brute_force_matches(queries, evals, threshold)
    assert len(expected.query) >= 600 * (threshold + 1) // (threshold + 3) - 20  # the planted pairs are there
    for got, want, threaded in zip(found, expected, index.query(queries, batch=97, workers=3)):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(threaded, want)
    smaller = index.query(queries, threshold=max(0, threshold - 2))
    np.testing.assert_array_equal(smaller.distance, expected.distance[expected.distance <= max(0, threshold - 2)])


@pytest.mark.parametrize("threshold", [0, 2, 6, 10])
@pytest.mark.parametrize("n", [1, 50_000, 2_450_000, 27_500_000])
def test_chunk_plans_are_exact_and_no_dearer_than_equal_chunks(threshold, n):
    plan = nd.chunk_plan(threshold, n)
    assert sum(r + 1 for r in plan.radii) > threshold  # pigeonhole: exact
    assert sum(plan.widths) <= 64 and max(plan.widths) <= 24 and min(plan.shifts) >= 0
    spans = sorted((s, s + w) for s, w in zip(plan.shifts, plan.widths))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # disjoint chunks
    for k in range(3, min(threshold + 1, 6) + 1):  # k equal chunks, the radii spread evenly
        spare = max(0, threshold + 1 - k)
        equal = nd.ChunkPlan((0,) * k, tuple(64 // k for _ in range(k)),
                             tuple(spare // k + (i < spare % k) for i in range(k)))
        assert plan.cost(n) <= equal.cost(n)


def test_eval_index_edge_cases():
    index = nd.EvalIndex(np.array([1, 2, 3], dtype=np.uint64), names=["a", "b", "c"], threshold=2)
    assert len(index.query(np.empty(0, dtype=np.uint64)).query) == 0
    matches = index.query(np.array([0], dtype=np.uint64))
    assert list(matches.eval) == [0, 1, 2] and list(matches.distance) == [1, 1, 2]
    assert len(nd.EvalIndex(np.empty(0, dtype=np.uint64)).query(np.array([5], dtype=np.uint64)).query) == 0
    with pytest.raises(ValueError):
        index.query(np.array([0], dtype=np.uint64), threshold=3)
    with pytest.raises(ValueError):
        nd.EvalIndex(np.array([1], dtype=np.uint64), names=["a", "b"])
    with pytest.raises(ValueError):
        nd.EvalIndex(np.array([1], dtype=np.uint64), threshold=64)


def test_hash_file_round_trip_and_refusal(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    fps = rng.integers(0, 2 ** 64 - 1, (4, nd.VARIANT_COUNT), dtype=np.uint64, endpoint=True)
    fps[0, 0] = np.uint64(2 ** 64 - 1)
    path = tmp_path / "eval.parquet"
    nd.write_hash_file(path, ["b.jpg", "a.jpg", "c/d.png", "e.JPEG"], fps)
    names, read = nd.read_hash_file(path)
    assert names == ["b.jpg", "a.jpg", "c/d.png", "e.JPEG"]
    assert read.dtype == np.uint64 and np.array_equal(read, fps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.parquet"]

    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[b"near_duplicates.version"] = str(nd.ALGORITHM_VERSION + 1).encode()
    other = tmp_path / "other.parquet"
    pq.write_table(table.replace_schema_metadata(meta), other)
    with pytest.raises(nd.HashFileError) as err:
        nd.read_hash_file(other)
    message = str(err.value)
    assert "\n" not in message and f"version {nd.ALGORITHM_VERSION + 1}" in message and "recompute" in message
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"name": ["x"], "fingerprint": pa.array([1], pa.uint64())}), plain)
    with pytest.raises(nd.HashFileError, match="no algorithm"):
        nd.read_hash_file(plain)


def test_folder_tar_and_hash_file_eval_sets_agree_and_report_a_corrupt_file(photos, tmp_path):
    folder = tmp_path / "val"
    (folder / "sub").mkdir(parents=True)
    names = list(photos)
    (folder / names[0]).write_bytes(photos[names[0]])
    (folder / "sub" / names[1].replace(".jpg", ".JPEG")).write_bytes(photos[names[1]])
    png = io.BytesIO()
    squished(photos[names[2]]).convert("RGB").save(png, "PNG")
    (folder / "sub" / "c.png").write_bytes(png.getvalue())
    (folder / "broken.jpg").write_bytes(photos[names[3]][:300])
    (folder / "notes.txt").write_text("not an image")

    from_folder = nd.fingerprints_of_eval_set(folder, variants=True)
    assert from_folder.names == sorted([names[0], f"sub/{names[1].replace('.jpg', '.JPEG')}", "sub/c.png"])
    assert from_folder.fingerprints.shape == (3, nd.VARIANT_COUNT)
    assert [n for n, _ in from_folder.failures] == ["broken.jpg"]
    assert from_folder.failures[0][1].split(":")[0] in ("truncated", "corrupt")
    by_name = dict(zip(from_folder.names, from_folder.fingerprints[:, 0]))
    assert int(by_name[names[0]]) == nd.fingerprint(squished(photos[names[0]]))

    archive = tmp_path / "val.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(folder.rglob("*"), reverse=True):  # any member order
            if path.is_file():
                tar.add(path, arcname=path.relative_to(folder).as_posix())
    from_tar = nd.fingerprints_of_eval_set(archive, variants=True)
    assert from_tar.names == from_folder.names and from_tar.failures == from_folder.failures
    assert np.array_equal(from_tar.fingerprints, from_folder.fingerprints)

    hashes = tmp_path / "val.parquet"
    nd.write_hash_file(hashes, from_folder.names[::-1], from_folder.fingerprints[::-1])
    from_file = nd.fingerprints_of_eval_set(hashes, variants=True)
    assert from_file.names == from_folder.names and np.array_equal(from_file.fingerprints, from_folder.fingerprints)
    centres = nd.fingerprints_of_eval_set(folder)  # without variants: the (N,) centre fingerprints
    assert np.array_equal(centres.fingerprints, from_folder.fingerprints[:, 0])
    assert np.array_equal(nd.fingerprints_of_eval_set(archive).fingerprints, centres.fingerprints)
    assert np.array_equal(nd.fingerprints_of_eval_set(hashes).fingerprints, centres.fingerprints)
    single = tmp_path / "single.parquet"
    nd.write_hash_file(single, centres.names, centres.fingerprints)
    assert np.array_equal(nd.fingerprints_of_eval_set(single).fingerprints, centres.fingerprints)
    with pytest.raises(nd.HashFileError, match="variants"):
        nd.fingerprints_of_eval_set(single, variants=True)

    with pytest.raises(ValueError, match="neither"):
        nd.fingerprints_of_eval_set(folder / "notes.txt")


def test_eval_set_matches_a_training_copy_end_to_end(photos, tmp_path):
    """A build's view: eval images from a folder, training images squished by the build, one index."""
    folder = tmp_path / "val"
    folder.mkdir()
    for name in PHOTOS[:4]:
        (folder / name).write_bytes(photos[name])
    evals = nd.fingerprints_of_eval_set(folder, variants=True)
    index = nd.EvalIndex(evals.fingerprints, evals.names)
    original = Image.open(io.BytesIO(photos[PHOTOS[2]])).convert("RGB")
    training = [TRANSFORMS["crop 5% left+top"](original), photos[PHOTOS[5]], TRANSFORMS["grayscale"](original)]
    queries = nd.fingerprint_array(squished(d) for d in training)
    matches = index.query(queries)
    assert [(int(q), index.names[e]) for q, e in zip(matches.query, matches.eval)] == \
        [(0, PHOTOS[2]), (2, PHOTOS[2])]
