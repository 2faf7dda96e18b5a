"""pipeline.tables: class rows per wnid, the card's wording, the accounting in stats."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from hierarchy import SemanticTree
from pipeline.members import REJECT_SCHEMA
from pipeline.outputs import write_parquet
from pipeline.tables import build_tables, dataset_card, per_class

COUNTS = pa.schema([("wnid", pa.string()), ("n_images", pa.int64()), ("kept", pa.bool_()), ("drop_reason", pa.string())])


def test_per_class_sums_the_folders_of_a_class():
    rows = pa.Table.from_pylist([
        dict(wnid="n2", n_images=40, kept=True, drop_reason=None),  # train folder
        dict(wnid="n1", n_images=7, kept=False, drop_reason="released_small_class"),
        dict(wnid="n3", n_images=5, kept=False, drop_reason="not_in_wordnet"),  # train folder
        dict(wnid="n3", n_images=2, kept=False, drop_reason="not_in_wordnet"),  # its val folder
    ], schema=COUNTS)
    assert per_class(rows).to_pylist() == [
        dict(wnid="n1", n_images=7, kept=False, drop_reason="released_small_class"),
        dict(wnid="n2", n_images=40, kept=True, drop_reason=None),
        dict(wnid="n3", n_images=7, kept=False, drop_reason="not_in_wordnet")]
    assert per_class(rows).schema == COUNTS


def stats(**over):
    base = dict(num_classes=2, samples={"train": 10, "validation": 4}, shards={"train": 2, "validation": 1},
                classes_in_archive=3, dropped_classes={"too_few_images": 1}, classes_per_level=[1, 1],
                rejects_by_reason={}, accounting=dict(archive_entries=20, in_shards=14, rejected=0,
                                                      in_dropped_classes=6, balanced=True),
                parameters=dict(min_images=5, val_per_class=2, val_rule="first", image_size=224, jpeg_quality=95,
                                samples_per_shard=5, tree_source="wordnet"))
    base.update(over)
    return base


def test_the_card_counts_shards_in_words_and_names_the_tree_source():
    card = dataset_card(stats())
    assert "| train samples | 10 in 2 shards |" in card and "| validation samples | 4 in 1 shard |" in card
    assert "Semantic tree: `wordnet` (WordNet 3.0 hypernyms" in card
    assert "20 = 14 + 0 + 6\n(balanced)" in card
    assert "| dropped classes | 1 (by reason below) |" in card and "| too_few_images | 1 |" in card
    assert "{" not in card.split("## Loading")[0]  # every figure in a table, no JSON


def test_the_card_of_a_build_from_the_download_says_so():
    release = dict(copied=12, resized=2, tree_source="wordnet", val_order={"classes": 2, "first": 1, "first_en_us": 2},
                   vs_timm_w21={"classes": 3, "missing": 1, "extra": 0, "missing_examples": ["n3"],
                                "extra_examples": [], "file": "release_vs_timm_w21.json"})
    params = dict(image_size=224, jpeg_quality=95, samples_per_shard=5, tree_source="wordnet",
                  not_applicable=["min_images", "val_per_class", "val_rule"])
    card = dataset_card(stats(release=release, parameters=params))
    assert "from the official processed ImageNet-21K-P\ndownload" in card and "12 images copied byte for byte" in card
    assert "1 of 2 classes, and the first N as `ls` lists them under en_US.UTF-8 in\n2 of 2" in card
    assert "1 (e.g. n3) missing, 0 extra\n(every wnid: `release_vs_timm_w21.json`)" in card
    assert "| min_images | (does not apply: the download's own split) |" in card and "| min_images | 5" not in card
    assert "rebuild with `--is-a-path wordnet.is_a.txt`" in card


def test_classes_carry_their_imagenet1k_index_or_null(tmp_path, timm_info_dir):
    # tench (ImageNet-1K's 0), goldfish (1), toilet tissue (999) under fish/animal, which ImageNet-1K lacks
    wnids = ["n00015388", "n01440764", "n01443537", "n02512053", "n15075141"]
    parents = {"n01440764": "n02512053", "n01443537": "n02512053", "n02512053": "n00015388"}
    SemanticTree.from_parents(wnids, parents).save(tmp_path / "tree.json")
    plan = pa.table({"key": [f"{w}_1" for w in wnids], "split": ["train"] * 5, "shard": [0] * 5,
                     "class_index": list(range(5)), "wnid": wnids})
    counts = pa.Table.from_pylist([dict(wnid=w, n_images=1, kept=True, drop_reason=None) for w in wnids], schema=COUNTS)
    summary = {"shards": [{"name": "train/imagenet21kp-train-000000.tar", "num_samples": 5}]}

    def classes_file(name):
        built, _ = build_tables(plan, str(tmp_path / "tree.json"), counts, REJECT_SCHEMA.empty_table(), [summary], 5)
        write_parquet(built["classes.parquet"], tmp_path / name)
        return tmp_path / name

    table = pq.read_table(classes_file("classes.parquet"))
    assert table.schema.field("imagenet1k_index").type == pa.int64()
    assert table.column("imagenet1k_index").to_pylist() == [None, 0, 1, None, 999]
    official = (timm_info_dir / "imagenet_synsets.txt").read_text().split()
    for row in table.to_pylist():
        assert row["imagenet1k_index"] == (official.index(row["wnid"]) if row["wnid"] in official else None)
    assert classes_file("again.parquet").read_bytes() == (tmp_path / "classes.parquet").read_bytes()
