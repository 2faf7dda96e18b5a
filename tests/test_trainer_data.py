"""The train/validation streams: deterministic order, equal batches per rank on uneven shards,
rank-split equivalence, resumable positions, exactly-once validation, clear data errors."""
from __future__ import annotations

import io
import json
import shutil
import tarfile

import numpy as np
import pytest
import torch

from hierarchy import SemanticTree
from trainer.data import (DataError, EvalBatches, TrainChunks, TrainPlan, make_loader,
                          rank_batches, read_lane, read_split, shuffle_buffer_order)
from trainer.transforms import SampleTransform



@pytest.fixture(scope="module")
def dataset(trainer_dataset):
    """A dataset whose shards are deliberately uneven (37 samples, the last one fewer)."""
    return trainer_dataset


@pytest.fixture(scope="module")
def num_classes(dataset):
    return SemanticTree.load(dataset / "semantic_tree.json").num_classes


def lane_keys(split, plan, epoch, lane, first=0):
    segments, order, _ = plan.lane(epoch, lane)
    return [key for key, *_ in read_lane(split.files, segments, order, first, len(order))]


def rank_stream(split, plan, world, rank, first=0, workers=0, transform=None):
    """Local batches of one rank for epoch 0 as a list of (images, labels)."""
    per_rank = plan.num_lanes // world
    lanes = list(range(rank * per_rank, (rank + 1) * per_rank))
    chunks = TrainChunks(split, plan, lanes, 0, first, plan.batches_per_epoch,
                         transform or SampleTransform(32), 10**6)
    loader = make_loader(chunks, workers, pin_memory=False)
    return list(rank_batches(loader, per_rank, torch.device("cpu")))


def test_shuffle_buffer_order_is_a_bounded_permutation():
    order = shuffle_buffer_order(500, 16, np.random.default_rng(3))
    assert sorted(order.tolist()) == list(range(500))
    assert all(order[t] < t + 16 for t in range(500))
    assert order.tolist() != list(range(500))


def test_epoch_plan_covers_each_sample_at_most_once(dataset):
    split = read_split(dataset, "train")
    assert len(set(split.lengths)) > 1  # uneven shards
    plan = TrainPlan(split.lengths, seed=5, num_lanes=4, chunk_size=3, shuffle_buffer=10)
    assert plan.batches_per_epoch == split.num_samples // 12
    keys = [k for lane in range(4) for k in lane_keys(split, plan, 0, lane)]
    assert len(keys) == len(set(keys)) == plan.batches_per_epoch * 12
    again = [k for lane in range(4) for k in lane_keys(split, plan, 0, lane)]
    other_epoch = [k for lane in range(4) for k in lane_keys(split, plan, 1, lane)]
    assert keys == again and keys != other_epoch


def test_equal_batches_per_rank_and_rank_split_equivalence(dataset):
    split = read_split(dataset, "train")
    plan = TrainPlan(split.lengths, seed=1, num_lanes=6, chunk_size=8, shuffle_buffer=8)
    single = rank_stream(split, plan, world=1, rank=0, workers=2)
    assert len(single) == plan.batches_per_epoch == split.num_samples // 48
    for world in (2, 3):
        ranks = [rank_stream(split, plan, world, r) for r in range(world)]
        assert [len(batches) for batches in ranks] == [plan.batches_per_epoch] * world
        for b, (images, labels) in enumerate(single):
            torch.testing.assert_close(torch.cat([ranks[r][b][1] for r in range(world)]), labels)
            torch.testing.assert_close(torch.cat([ranks[r][b][0] for r in range(world)]), images)


def test_resuming_mid_epoch_replays_the_same_augmented_samples(dataset):
    split = read_split(dataset, "train")
    plan = TrainPlan(split.lengths, seed=2, num_lanes=2, chunk_size=24, shuffle_buffer=20)
    augment = SampleTransform(32, "rand-m9-mstd0.5", cutout_fraction=0.5)
    full = rank_stream(split, plan, 1, 0, transform=augment, workers=2)
    tail = rank_stream(split, plan, 1, 0, first=5, transform=augment)
    assert len(tail) == plan.batches_per_epoch - 5
    for (a_images, a_labels), (b_images, b_labels) in zip(full[5:], tail):
        assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)
    plain = rank_stream(split, plan, 1, 0)
    assert not torch.equal(plain[0][0], full[0][0])  # augmentation did change the pixels


def test_validation_reads_every_sample_exactly_once(dataset, num_classes):
    split = read_split(dataset, "validation")
    seen = []
    for world in (1, 4):
        labels = []
        for rank in range(world):
            batches = EvalBatches(split, rank, world, 4, SampleTransform(32), num_classes)
            for images, batch_labels in make_loader(batches, 2, pin_memory=False):
                assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
                labels += batch_labels.tolist()
        seen.append(sorted(labels))
    assert seen[0] == seen[1] and len(seen[0]) == split.num_samples


def _rewrite_member(shard, name, data):
    """Replace one member's bytes in a shard (a real tar rewrite)."""
    with tarfile.open(shard) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as archive:
        for member, payload in members:
            payload = data if member.name == name else payload
            member.size = len(payload)
            archive.addfile(member, io.BytesIO(payload))


def test_clear_errors_for_broken_datasets(dataset, num_classes, tmp_path):
    with pytest.raises(DataError, match="_info.json not found"):
        read_split(tmp_path, "train")

    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    split = read_split(broken, "validation")
    with tarfile.open(split.files[0]) as archive:
        first_jpg = next(m.name for m in archive.getmembers() if m.name.endswith(".jpg"))
    _rewrite_member(split.files[0], first_jpg, b"not a jpeg")
    batches = EvalBatches(split, 0, 1, 64, SampleTransform(32), num_classes)
    with pytest.raises(DataError, match=f"sample '{first_jpg[:-4]}': cannot decode JPEG"):
        list(batches)
    with pytest.raises(DataError, match=r"class index \d+ outside \[0, 3\)"):
        list(EvalBatches(read_split(broken, "train"), 0, 1, 64, SampleTransform(32), 3))

    info_path = broken / "_info.json"
    info = json.loads(info_path.read_text())
    length = info["splits"]["train"]["shard_lengths"][0]
    info["splits"]["train"]["shard_lengths"][0] += 5
    info_path.write_text(json.dumps(info))
    with pytest.raises(DataError, match=f"holds {length} samples, _info.json says at least "
                                        f"{length + 5}"):
        list(EvalBatches(read_split(broken, "train"), 0, 1, 64, SampleTransform(32), num_classes))


@pytest.mark.parametrize("cut", ["mid_member", "member_boundary"])
def test_truncated_shard_stops_training_with_a_message_naming_it(dataset, tmp_path, cut):
    """Documented choice: a damaged shard stops the run (no silent skipping) and names the file."""
    import subprocess
    import sys

    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken, ignore=shutil.ignore_patterns("_work"))
    shard = broken / read_split(broken, "train").files[0]
    data = shard.read_bytes()
    if cut == "mid_member":
        shard.write_bytes(data[: len(data) // 2 + 100])
    else:
        with tarfile.open(shard) as archive:
            members = archive.getmembers()
        shard.write_bytes(data[: members[len(members) // 2].offset])
    proc = subprocess.run([sys.executable, "-m", "trainer", "--data", str(broken), "--output", str(tmp_path / "run"),
                           "--model", "test_resnet", "--input-size", "32", "--epochs", "1", "--batch-size", "8",
                           "--workers", "0", "--no-progress", "--randaugment", "none", "--cutout", "0"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(shard) in proc.stderr.strip().splitlines()[-1]
